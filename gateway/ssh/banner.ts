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

interface KexPacketWriter extends PacketWriter {
	allocStartKEX: number;
	alloc(size: number, force?: boolean): Buffer;
	finalize(packet: Buffer, force?: boolean): Buffer;
}

const DISCONNECT = 1;

/**
 * SSH_MSG_DISCONNECT with a description (RFC 4253 section 11.1) on an encrypted connection; ssh2's
 * own `disconnect()` sends an empty one. Written like ssh2 writes its DISCONNECT (allowed during a
 * key exchange). The caller ends the socket. Returns false if ssh2 internals were unavailable (then
 * ssh2's description-less DISCONNECT is sent instead).
 */
export function sendDisconnect(protocol: unknown, reason: number, description: string): boolean {
	const w = (protocol as { _packetRW?: { write?: KexPacketWriter } } | undefined)?._packetRW?.write;
	if (!w || !sendPacket || typeof w.allocStartKEX !== "number") {
		(protocol as { disconnect?: (reason: number) => void } | undefined)?.disconnect?.(reason);
		return false;
	}
	const body = Buffer.from(description, "utf8");
	const p = w.allocStartKEX;
	const packet = w.alloc(1 + 4 + 4 + body.length + 4, true);
	packet[p] = DISCONNECT;
	packet.writeUInt32BE(reason, p + 1);
	packet.writeUInt32BE(body.length, p + 5);
	body.copy(packet, p + 9);
	packet.writeUInt32BE(0, p + 9 + body.length); // empty language tag
	(sendPacket as (proto: unknown, packet: Buffer, force?: boolean) => unknown)(protocol, w.finalize(packet, true), true);
	return true;
}

/**
 * Refuse a channel open with SSH_MSG_CHANNEL_OPEN_FAILURE carrying `reason` and `description`
 * (RFC 4254 section 5.1). ssh2's `reject()` frees the channel number it reserved but always sends an
 * empty description (and CONNECT_FAILED once a number was reserved), so its `channelOpenFail` is
 * swapped for the duration of the synchronous `reject()` call. Without the internals: a plain reject.
 */
export function rejectChannelOpen(protocol: unknown, reject: () => void, reason: number, description: string): boolean {
	const proto = protocol as { channelOpenFail?: (remote: number, reason: number, desc: string) => void } | undefined;
	const original = proto?.channelOpenFail;
	if (!proto || typeof original !== "function") {
		reject();
		return false;
	}
	const own = Object.hasOwn(proto, "channelOpenFail");
	proto.channelOpenFail = (remote: number) => original.call(proto, remote, reason, description);
	try {
		reject();
	} finally {
		if (own) proto.channelOpenFail = original;
		else delete proto.channelOpenFail;
	}
	return true;
}
