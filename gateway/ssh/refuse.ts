/**
 * Refusing an SSH connection before key exchange, with a reason the client prints.
 *
 * RFC 4253 section 4.2 lets the server send its identification line at once, and section 11.1 lets
 * either side send SSH_MSG_DISCONNECT at any time. Before the first NEWKEYS the binary packet
 * protocol runs with the "none" cipher and MAC (section 6: block size 8, no MAC), so a refusal is the
 * identification line followed by one plaintext packet. OpenSSH's packet layer handles a DISCONNECT
 * before KEXINIT like any other (`ssh_packet_read_poll2`) and prints
 * `Received disconnect from HOST port PORT:12: <description>` on stderr, exit 255.
 *
 * Why not ssh2: its `Protocol.disconnect(reason)` sends an empty description, and only after ssh2
 * has built a protocol object, sent its KEXINIT and started work for the connection. Refusing here
 * costs one write and no key exchange (no DH, no host-key signature), which is the point when the
 * gateway is at its cap. An identification-line "banner" (lines before `SSH-2.0-`) is not printed by
 * OpenSSH (only at debug level), so it would not tell the agent anything.
 */

/** SSH_MSG_DISCONNECT reason codes (RFC 4253 section 11.1) used by the gateway. */
// biome-ignore lint/suspicious/noConstEnum: STYLE 3 wants const enums for wire codes; tsx emits them as objects
export const enum DisconnectReason {
	ByApplication = 11, // SSH_DISCONNECT_BY_APPLICATION
	TooManyConnections = 12, // SSH_DISCONNECT_TOO_MANY_CONNECTIONS
	NoMoreAuthMethodsAvailable = 14, // SSH_DISCONNECT_NO_MORE_AUTH_METHODS_AVAILABLE
}

/** SSH_MSG_CHANNEL_OPEN_FAILURE reason codes (RFC 4254 section 5.1) used by the gateway. */
// biome-ignore lint/suspicious/noConstEnum: STYLE 3 wants const enums for wire codes; tsx emits them as objects
export const enum ChannelOpenFailure {
	AdministrativelyProhibited = 1, // SSH_OPEN_ADMINISTRATIVELY_PROHIBITED
	ResourceShortage = 4, // SSH_OPEN_RESOURCE_SHORTAGE
}

const SSH_MSG_DISCONNECT = 1;

/** The identification line (RFC 4253 section 4.2) the refusal starts with; ssh2's server sends the same. */
export const IDENTIFICATION = "SSH-2.0-Drawbridge\r\n";

/**
 * One unencrypted binary packet (RFC 4253 section 6) carrying SSH_MSG_DISCONNECT with `reason`
 * and `description` (UTF-8, no language tag). Padding is zeros: before key exchange it protects nothing.
 */
export function disconnectPacket(reason: DisconnectReason, description: string): Buffer {
	const text = Buffer.from(description, "utf8");
	const payloadLength = 1 + 4 + 4 + text.length + 4;
	// packet_length (4) + padding_length (1) + payload + padding is a multiple of 8, padding at least 4.
	let padding = 8 - ((4 + 1 + payloadLength) % 8);
	if (padding < 4) padding += 8;
	const packetLength = 1 + payloadLength + padding;
	const out = Buffer.alloc(4 + packetLength);
	let p = 0;
	p = out.writeUInt32BE(packetLength, p);
	p = out.writeUInt8(padding, p);
	p = out.writeUInt8(SSH_MSG_DISCONNECT, p);
	p = out.writeUInt32BE(reason, p);
	p = out.writeUInt32BE(text.length, p);
	p += text.copy(out, p);
	out.writeUInt32BE(0, p); // empty language tag; padding stays zero
	return out;
}

/** Identification line + DISCONNECT: everything a refused connection is sent. */
export function refusalBytes(reason: DisconnectReason, description: string): Buffer {
	return Buffer.concat([Buffer.from(IDENTIFICATION, "latin1"), disconnectPacket(reason, description)]);
}
