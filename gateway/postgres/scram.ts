/**
 * SCRAM-SHA-256 client (RFC 5802 / RFC 7677, PostgreSQL docs 55.3.1 "SCRAM-SHA-256 Authentication")
 * with node:crypto. The gateway authenticates to the real server with its own secret; the client's
 * authentication is a separate exchange, so there is no channel binding to relay (we send gs2 flag
 * `n`, which PostgreSQL accepts when the connection allows SCRAM-SHA-256 without -PLUS).
 */
import { createHash, createHmac, pbkdf2, randomBytes, timingSafeEqual } from "node:crypto";
import { PgGatewayError } from "./errors.ts";

export const SCRAM_MECHANISM = "SCRAM-SHA-256";

const saltedCache = new Map<string, Buffer>();

function pbkdf2Async(password: string, salt: Buffer, iterations: number): Promise<Buffer> {
	const key = createHash("sha256").update(password).update("\0").update(salt).update(String(iterations)).digest("hex");
	const hit = saltedCache.get(key);
	if (hit) return Promise.resolve(hit);
	return new Promise((resolve, reject) =>
		pbkdf2(password.normalize("NFKC"), salt, iterations, 32, "sha256", (err, out) => {
			if (err) reject(err);
			else {
				if (saltedCache.size > 256) saltedCache.clear();
				saltedCache.set(key, out);
				resolve(out);
			}
		}),
	);
}

const hmac = (key: Buffer, data: string): Buffer => createHmac("sha256", key).update(data).digest();

export class ScramClient {
	private readonly nonce = randomBytes(18).toString("base64");
	private readonly clientFirstBare = `n=,r=${this.nonce}`;
	private expectedServerSignature: Buffer | undefined;

	constructor(private readonly password: string) {}

	/** SASLInitialResponse data. */
	initial(): Buffer {
		return Buffer.from(`n,,${this.clientFirstBare}`);
	}

	/** Answer to AuthenticationSASLContinue. */
	async continue(serverFirst: Buffer): Promise<Buffer> {
		const text = serverFirst.toString("utf8");
		const attrs = parseAttributes(text);
		const r = attrs.get("r");
		const s = attrs.get("s");
		const i = Number(attrs.get("i"));
		if (!r || !s || !Number.isSafeInteger(i) || i < 1) {
			throw new PgGatewayError("upstream_protocol", "upstream SCRAM server-first-message is malformed");
		}
		if (!r.startsWith(this.nonce) || r.length === this.nonce.length) {
			throw new PgGatewayError("upstream_protocol", "upstream SCRAM nonce does not extend ours");
		}
		const salted = await pbkdf2Async(this.password, Buffer.from(s, "base64"), i);
		const clientKey = hmac(salted, "Client Key");
		const storedKey = createHash("sha256").update(clientKey).digest();
		const withoutProof = `c=biws,r=${r}`;
		const authMessage = `${this.clientFirstBare},${text},${withoutProof}`;
		const signature = hmac(storedKey, authMessage);
		const proof = Buffer.alloc(clientKey.length);
		for (let k = 0; k < proof.length; k++) proof[k] = clientKey[k]! ^ signature[k]!;
		this.expectedServerSignature = hmac(hmac(salted, "Server Key"), authMessage);
		return Buffer.from(`${withoutProof},p=${proof.toString("base64")}`);
	}

	/** Check AuthenticationSASLFinal: the server proves it knew the verifier too. */
	final(serverFinal: Buffer): void {
		const attrs = parseAttributes(serverFinal.toString("utf8"));
		if (attrs.has("e")) throw new PgGatewayError("upstream_unavailable", `upstream SCRAM error: ${attrs.get("e")}`);
		const v = attrs.get("v");
		const got = v ? Buffer.from(v, "base64") : Buffer.alloc(0);
		const want = this.expectedServerSignature;
		if (!want || got.length !== want.length || !timingSafeEqual(got, want)) {
			throw new PgGatewayError("upstream_unavailable", "upstream server signature does not verify (not the real server?)");
		}
	}
}

function parseAttributes(text: string): Map<string, string> {
	const m = new Map<string, string>();
	for (const part of text.split(",")) {
		const eq = part.indexOf("=");
		if (eq === 1) m.set(part[0]!, part.slice(2));
	}
	return m;
}
