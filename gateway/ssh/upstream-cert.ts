/**
 * Per-session upstream certificates: for Connections with `ssh.auth: certificate` the gateway makes an
 * ephemeral Ed25519 key per session, signs a short-lived user certificate for it with the operator's
 * upstream CA (`bundle.ssh.upstreamCaCredentialRef`; targets trust it with `TrustedUserCAKeys`), and
 * logs in with it — no standing key on targets.
 *
 * ssh2's client cannot present certificates: it writes the key algorithm name as the signature type too,
 * and sshd insists on `ssh-ed25519` inside the signature of an `ssh-ed25519-cert-v01@openssh.com`
 * request (RFC 4252 section 7 / PROTOCOL.certkeys). So for that one key we write the USERAUTH_REQUEST
 * ourselves through ssh2's packet writer (pinned ssh2 1.17.0 internals, like banner.ts).
 */
import { createRequire } from "node:module";
import ssh2 from "ssh2";
import { signUserCertificate } from "../../crds/ssh-certificate.ts";
import { SshGatewayError } from "./errors.ts";
import { writeString } from "./wire.ts";

const require = createRequire(import.meta.url);
const { utils } = ssh2;
const CERT_ALGO = "ssh-ed25519-cert-v01@openssh.com";
const USERAUTH_REQUEST = 50;

interface ParsedKeyLike {
	getPublicSSH(): Buffer;
	sign(data: Buffer): Buffer | Error;
}

interface ProtoInternals {
	authPK: (...args: unknown[]) => unknown;
	_kex?: { sessionID?: Buffer };
	_authsQueue?: string[];
	_packetRW?: { write?: { allocStart: number; alloc(n: number): Buffer; finalize(p: Buffer): Buffer } };
}

let sendPacket: ((proto: unknown, packet: Buffer) => unknown) | undefined;
try {
	sendPacket = (require("ssh2/lib/protocol/utils.js") as { sendPacket?: typeof sendPacket }).sendPacket;
} catch {
	sendPacket = undefined;
}

export interface SessionCertificate {
	/** OpenSSH private key of the ephemeral key, for ssh2's `privateKey`. */
	privateKey: string;
	parsed: ParsedKeyLike;
	certBlob: Buffer;
	serial: bigint;
}

/** How long a session certificate is valid at most: it is only needed for the login itself. */
export const SESSION_CERT_MAX_TTL_MS = 300_000;

/**
 * Mint an ephemeral key and a certificate for `login`, valid from one minute ago (clock skew) until
 * `notAfter` or `SESSION_CERT_MAX_TTL_MS` from `now`, whichever is first. The end is rounded down to
 * the second (certificates count seconds), so it never lies past `notAfter`.
 */
export function mintSessionCertificate(opts: {
	caPrivateKeyPem: string;
	login: string;
	keyId: string;
	/** Latest end of validity: the grant's end (README "Upstream"). */
	notAfter?: Date;
	now?: Date;
}): SessionCertificate {
	const pair = utils.generateKeyPairSync("ed25519");
	const parsed = utils.parseKey(pair.private);
	if (parsed instanceof Error || Array.isArray(parsed)) throw new TypeError("ephemeral key did not parse");
	const now = opts.now ?? new Date();
	const end = Math.min(now.getTime() + SESSION_CERT_MAX_TTL_MS, opts.notAfter?.getTime() ?? Number.POSITIVE_INFINITY);
	if (!(end > now.getTime())) {
		throw new SshGatewayError("upstream", `no upstream session certificate: its validity would end at ${new Date(end).toISOString()}, not after now`);
	}
	let signed: ReturnType<typeof signUserCertificate>;
	try {
		signed = signUserCertificate({
			caPrivateKey: opts.caPrivateKeyPem,
			publicKey: pair.public,
			principals: [opts.login],
			validAfter: new Date(now.getTime() - 60_000),
			validBefore: new Date(end),
			keyId: opts.keyId,
		});
	} catch (e) {
		throw new SshGatewayError("upstream", `cannot sign the upstream session certificate: ${(e as Error).message}`);
	}
	return { privateKey: pair.private, parsed: parsed as unknown as ParsedKeyLike, certBlob: signed.blob, serial: signed.certificate.serial };
}

/**
 * Make `client` (after `connect()`) present `cert` instead of the bare ephemeral key. Other keys and
 * methods go through ssh2 unchanged.
 */
export function presentCertificate(client: unknown, cert: SessionCertificate): void {
	const proto = (client as { _protocol?: ProtoInternals })._protocol;
	if (!proto?._packetRW?.write || !sendPacket) throw new SshGatewayError("upstream", "ssh2 internals unavailable: cannot present a certificate upstream");
	const send = sendPacket;
	const keyBlob = cert.parsed.getPublicSSH();
	const orig = proto.authPK;
	proto.authPK = function (this: ProtoInternals, username: unknown, pubKey: unknown, keyAlgo: unknown, cbSign: unknown) {
		const k = pubKey as Partial<ParsedKeyLike> | undefined;
		if (typeof username !== "string" || typeof k?.getPublicSSH !== "function" || !k.getPublicSSH().equals(keyBlob)) {
			return orig.call(this, username, pubKey, keyAlgo, cbSign);
		}
		const signedRequest = typeof keyAlgo === "function" || typeof cbSign === "function";
		const fields = Buffer.concat([
			Buffer.from([USERAUTH_REQUEST]),
			writeString(username),
			writeString("ssh-connection"),
			writeString("publickey"),
			Buffer.from([signedRequest ? 1 : 0]),
			writeString(CERT_ALGO),
			writeString(cert.certBlob),
		]);
		let payload = fields;
		if (signedRequest) {
			const sessionId = proto._kex?.sessionID;
			if (!sessionId) throw new SshGatewayError("upstream", "no session id for the certificate signature");
			const sig = cert.parsed.sign(Buffer.concat([writeString(sessionId), fields]));
			if (sig instanceof Error) throw new SshGatewayError("upstream", `signing with the session key: ${sig.message}`);
			payload = Buffer.concat([fields, writeString(Buffer.concat([writeString("ssh-ed25519"), writeString(sig)]))]);
		}
		// The writer is replaced after key exchange: read it now, never cache it.
		const w = proto._packetRW?.write;
		if (!w) throw new SshGatewayError("upstream", "ssh2 packet writer unavailable");
		const p = w.allocStart;
		const packet = w.alloc(payload.length);
		payload.copy(packet, p);
		proto._authsQueue?.push("publickey");
		send(proto, w.finalize(packet));
		return undefined;
	};
}
