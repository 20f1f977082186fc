/**
 * Telling an SSH client WHY it was refused. ssh2's `disconnect()` sends an empty description and its
 * server only sends the static configured banner, so a refused agent would just see "Permission
 * denied". We send SSH_MSG_USERAUTH_BANNER (RFC 4252 section 5.4; OpenSSH prints it on stderr) through
 * ssh2's packet writer. This touches ssh2 internals (pinned version 1.17.0): if they are missing the
 * function does nothing and the refusal is still a refusal.
 */
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

const USERAUTH_BANNER = 53;

interface PacketWriter {
	allocStart: number;
	alloc(size: number): Buffer;
	finalize(packet: Buffer): Buffer;
}

interface ProtocolInternals {
	_packetRW?: { write?: PacketWriter };
}

let sendPacket: ((proto: unknown, packet: Buffer) => unknown) | undefined;
try {
	sendPacket = (require("ssh2/lib/protocol/utils.js") as { sendPacket?: typeof sendPacket }).sendPacket;
} catch {
	sendPacket = undefined;
}

/** Send a banner line to the client during authentication. Returns false if ssh2 internals were unavailable. */
export function sendAuthBanner(protocol: unknown, text: string): boolean {
	const w = (protocol as ProtocolInternals | undefined)?._packetRW?.write;
	if (!w || !sendPacket) return false;
	const msg = text.endsWith("\r\n") ? text : `${text.replace(/\n$/, "")}\r\n`;
	const body = Buffer.from(msg, "utf8");
	const p = w.allocStart;
	const packet = w.alloc(1 + 4 + body.length + 4);
	packet[p] = USERAUTH_BANNER;
	packet.writeUInt32BE(body.length, p + 1);
	body.copy(packet, p + 5);
	packet.writeUInt32BE(0, p + 5 + body.length); // empty language tag
	sendPacket(protocol, w.finalize(packet));
	return true;
}
