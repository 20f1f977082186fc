/**
 * The JWT attack corpus through the REAL SSH listener (token as the SSH password, ssh2 client):
 * every forged or unacceptable token is refused at authentication, the listener reports why (its
 * `auth` event, which never carries the token), nothing is opened upstream, and the listener keeps
 * accepting. The control case authenticates with a valid token. Authentication happens before any
 * upstream connection, so no sshd is needed here (test/ssh/ covers the data path with a real one).
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import ssh2 from "ssh2";
import { StoreApprovalService } from "../../gateway/approvals/service.ts";
import { LocalApprovalStore } from "../../gateway/approvals/local-store.ts";
import { BUNDLE_API_VERSION, type BundleConnection, type BundleGrant } from "../../gateway/config/bundle.ts";
import { sealBundle } from "../../gateway/config/canonical.ts";
import { BundleStore } from "../../gateway/config/store.ts";
import { type SshListener, startSshListener } from "../../gateway/ssh/listener.ts";
import { freePort } from "../env/index.ts";
import { MemoryRecorder } from "../faults/fixture.ts";
import { JWT_ATTACKS, type JkuTrap, type Minter, startJkuTrap, tokenEchoed } from "./jwt-attacks.ts";

const OIDC = "https://oidc.ssh.drawbridge.test";
const OPERATOR = "https://operator.ssh.drawbridge.test";
const AUD = "drawbridge-gateway";

let gw: SshListener;
let trap: JkuTrap;
let minter: Minter;
const authEvents: { ok: boolean; user: string; method: string; reason?: string }[] = [];

before(async () => {
	trap = await startJkuTrap();
	const oidc = await generateKeyPair("EdDSA", { crv: "Ed25519", extractable: true });
	const op = await generateKeyPair("ES256", { extractable: true });
	const oidcJwk = { ...(await exportJWK(oidc.publicKey)), kid: "k1", alg: "EdDSA", use: "sig" };
	const opJwk = { ...(await exportJWK(op.publicKey)), kid: "op1", alg: "ES256", use: "sig" };
	const targetKey = ssh2.utils.generateKeyPairSync("ed25519");
	const deadPort = await freePort();
	const conn = (name: string): BundleConnection => ({
		key: `ops/${name}`,
		name,
		namespace: "ops",
		type: "ssh",
		labels: { env: "prod" },
		host: "127.0.0.1",
		port: deadPort,
		credentialRef: "ssh-gw",
		ssh: { hostKeys: [targetKey.public], auth: "key" },
	});
	const now = Date.now();
	const grant = (name: string, connection: string, user: string): BundleGrant => ({
		key: `ops/${name}`,
		name,
		namespace: "ops",
		connection,
		subjects: [{ kind: "User", name: user }],
		notBefore: new Date(now - 60_000).toISOString(),
		expiresAt: new Date(now + 3_600_000).toISOString(),
		ssh: { logins: ["deploy"], allowShell: true, allowSftp: false, allowPortForwarding: false, allowAgentForwarding: false },
		approvers: { subjects: [], minApprovals: 1 },
		origin: { commit: "hostile" },
	});
	const store = new BundleStore();
	store.update(
		sealBundle({
			apiVersion: BUNDLE_API_VERSION,
			version: 1,
			generatedAt: new Date().toISOString(),
			issuers: [
				{ name: "oidc", kind: "oidc", issuer: OIDC, audiences: [AUD], jwks: { keys: [oidcJwk] }, algorithms: ["EdDSA"] },
				{ name: "operator", kind: "drawbridge", issuer: OPERATOR, audiences: [AUD], jwks: { keys: [opJwk] }, algorithms: ["ES256"] },
			],
			connections: [conn("db-primary"), conn("db-other")],
			grants: [grant("lee-db", "db-primary", "lee"), grant("other-db", "db-other", "someone")],
			maskingPolicies: [],
			guardrailPolicies: [],
			credentials: { "ssh-gw": { type: "sshKey", username: "deploy", privateKeyPem: targetKey.private } },
			maskingKey: randomBytes(32).toString("base64"),
		}),
	);
	gw = await startSshListener({
		store,
		recorder: new MemoryRecorder(),
		approvals: new StoreApprovalService({ store: new LocalApprovalStore(), sweepIntervalMs: 0, waitPollIntervalMs: 200 }),
		hostKeyPem: ssh2.utils.generateKeyPairSync("ed25519").private,
		upstreamTimeoutMs: 2_000,
	});
	gw.on("auth", (e) => authEvents.push(e));
	gw.on("error", () => undefined);
	minter = {
		token: async (sub, o = {}) => {
			const operator = o.issuer === "operator";
			const t = Math.floor(Date.now() / 1000);
			const jwt = new SignJWT({ ...o.claims })
				.setProtectedHeader({ alg: o.alg ?? (operator ? "ES256" : "EdDSA"), kid: operator ? "op1" : "k1", ...o.header })
				.setIssuer(o.iss ?? (operator ? OPERATOR : OIDC))
				.setAudience(o.aud ?? AUD)
				.setSubject(sub)
				.setIssuedAt(t + (o.iatSec ?? 0))
				.setExpirationTime(t + (o.expSec ?? 600));
			if (o.nbfSec !== undefined) jwt.setNotBefore(t + o.nbfSec);
			return jwt.sign(o.key ?? (operator ? op.privateKey : oidc.privateKey));
		},
		oidcIssuer: OIDC,
		oidcPublicJwk: oidcJwk,
		grantedUser: "lee",
		otherConnectionGrant: "ops/other-db",
		thisConnectionGrant: "ops/lee-db",
	};
});
after(async () => {
	await gw?.close();
	await trap?.close();
});

/** Password authentication with `token`; resolves "ready" or the client error level/message. */
function login(token: string): Promise<string> {
	return start(token).result;
}

function start(token: string): { result: Promise<string>; destroy(): void } {
	const c = new ssh2.Client();
	const result = new Promise<string>((resolve) => {
		const done = (r: string) => {
			c.end();
			resolve(r);
		};
		c.on("ready", () => done("ready"));
		c.on("error", (e: Error & { level?: string }) => done(`${e.level ?? "error"}: ${e.message}`));
		c.on("close", () => done("closed"));
		c.connect({ host: "127.0.0.1", port: gw.address.port, username: "deploy@db-primary", password: token, tryKeyboard: false, readyTimeout: 60_000 });
	});
	return { result, destroy: () => c.destroy() };
}

describe("JWT attack corpus through the SSH listener (token as password)", () => {
	test("control: a valid token authenticates", async () => {
		assert.equal(await login(await minter.token("lee")), "ready");
	});

	for (const a of JWT_ATTACKS.filter((x) => !x.expect.includes("oversized"))) {
		test(`${a.id}: ${a.note} → refused`, async () => {
			const token = await a.make(minter, trap);
			const before = authEvents.length;
			const r = await login(token);
			assert.match(r, /client-authentication|All configured authentication methods failed|Authentication failure/i, r);
			// ssh2 clients try the "none" method first; the password attempt carries the verdict.
			const failures = authEvents.slice(before).filter((e) => !e.ok && e.method === "password");
			assert.ok(failures.length > 0 || token.length > 30_000, "the listener reported no failed authentication");
			for (const f of failures) {
				assert.ok(!tokenEchoed(JSON.stringify(f), token), "the auth event echoes the token");
				if (a.expect === "no-grant") assert.match(f.reason ?? "", /grant|access denied/i);
				else assert.match(f.reason ?? "", /token|JWT|issuer|algorithm|signature|expired|valid|audience|key|credential/i);
			}
		});
	}

	for (const a of JWT_ATTACKS.filter((x) => x.expect.includes("oversized"))) {
		test(`${a.id}: ${a.note} → never authenticates, and does not stall other logins`, async () => {
			// A password larger than an SSH packet: the exchange may stall in the transport (ssh2), so the
			// property is that it never authenticates and that other agents log in meanwhile.
			const big = start(await a.make(minter, trap));
			const outcome = await Promise.race([big.result, login(await minter.token("lee")).then((r) => `control ${r}`)]);
			assert.ok(outcome === "control ready" || /authentication|closed|error/i.test(outcome), outcome);
			big.destroy();
			assert.notEqual(await big.result, "ready");
		});
	}

	test("the attacker's jku/x5u endpoint was never fetched; the listener still authenticates", async () => {
		assert.equal(trap.hits, 0);
		assert.equal(await login(await minter.token("lee")), "ready");
	});
});
