/**
 * Shared fixtures for the SSH and Kubernetes data-path tests: a sealed bundle in a real BundleStore,
 * a token issuer (jose, inline JWKS, exactly what the gateway's TokenVerifier accepts), the real
 * approvals service over its in-memory store, and an in-memory Recorder that keeps events so tests
 * can replay them (the on-disk recorder has its own tests in test/recording).
 */
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { LocalApprovalStore } from "../../gateway/approvals/local-store.ts";
import { StoreApprovalService } from "../../gateway/approvals/service.ts";
import { BUNDLE_API_VERSION, type BundleConnection, type BundleGrant, type ConfigBundle, type Identity } from "../../gateway/config/bundle.ts";
import { grantSubjectsDigest, sealBundle } from "../../gateway/config/canonical.ts";
import { BundleStore } from "../../gateway/config/store.ts";
import type { Recorder, RecordingEvent, SessionEnd, SessionMeta, SessionRecorder } from "../../gateway/recording/events.ts";
import type { SshdHandle } from "../env/sshd.ts";
import type { KeyDir, KeyPair } from "./keys.ts";

export const ISSUER = "https://issuer.drawbridge.test";
export const AUDIENCE = "drawbridge";

export interface TokenIssuer {
	jwks: { keys: Record<string, unknown>[] };
	token(sub: string, opts?: { groups?: string[]; ttlSec?: number; grant?: string }): Promise<string>;
}

export async function tokenIssuer(): Promise<TokenIssuer> {
	const { publicKey, privateKey } = await generateKeyPair("ES256");
	const jwk = { ...(await exportJWK(publicKey)), kid: "k1", alg: "ES256", use: "sig" };
	return {
		jwks: { keys: [jwk as Record<string, unknown>] },
		async token(sub, opts = {}) {
			const claims: Record<string, unknown> = { groups: opts.groups ?? [] };
			if (opts.grant) claims["grant"] = opts.grant;
			return new SignJWT(claims)
				.setProtectedHeader({ alg: "ES256", kid: "k1" })
				.setIssuer(ISSUER)
				.setAudience(AUDIENCE)
				.setSubject(sub)
				.setIssuedAt()
				.setExpirationTime(Math.floor(Date.now() / 1000) + (opts.ttlSec ?? 600))
				.sign(privateKey);
		},
	};
}

export function makeBundle(issuer: TokenIssuer, parts: Partial<ConfigBundle>, version = 1): ConfigBundle {
	const { hash: _hash, version: _version, ...rest } = parts;
	return sealBundle({
		apiVersion: BUNDLE_API_VERSION,
		generatedAt: new Date().toISOString(),
		issuers: [
			{ name: "test", kind: "oidc", issuer: ISSUER, audiences: [AUDIENCE], jwks: issuer.jwks, algorithms: ["ES256"] },
		],
		connections: [],
		grants: [],
		maskingPolicies: [],
		guardrailPolicies: [],
		credentials: {},
		maskingKey: randomBytes(32).toString("base64"),
		...rest,
		version,
	});
}

/** An SSH Connection `ops/<name>` to the harness's sshd; the gateway logs in with credential "ssh-gw" (sshdCredentials). */
export function sshdConnection(sshd: SshdHandle, name: string, labels: Record<string, string> = { env: "prod" }): BundleConnection {
	return {
		key: `ops/${name}`,
		name,
		namespace: "ops",
		type: "ssh",
		labels,
		host: sshd.host,
		port: sshd.port,
		credentialRef: "ssh-gw",
		ssh: { hostKeys: [sshd.hostPublicKey], auth: "key" },
	};
}

/** The gateway's own key for the harness's sshd, as credential "ssh-gw". */
export function sshdCredentials(sshd: SshdHandle): ConfigBundle["credentials"] {
	return { "ssh-gw": { type: "sshKey", username: sshd.user, privateKeyPem: readFileSync(sshd.clientKeyFile, "utf8") } };
}

/**
 * A grant `ops/<name>` on `connection` for User lee, valid from a minute ago for an hour, approved by
 * sam: logging in as the sshd's user, everything else off unless `ssh` turns it on.
 */
/**
 * Key id of an operator-style certificate of lee for grant `key` (whose subjects are `User lee`, as
 * `sshGrant` makes them): the operator writes the digest of the grant's subjects into it.
 */
export function leeCertId(key: string): string {
	return `sub=lee;grant=${key};subjects=${grantSubjectsDigest([{ kind: "User", name: "lee" }])}`;
}

/**
 * The OpenSSH client files of lee's agent for gateway `gw`: `known_hosts` pinning the gateway's host
 * key, and `agent`'s certificate from `ca` for grant `grant` (the operator's key id), logging in as
 * `login`, valid for an hour.
 */
export function agentSshFiles(
	keys: KeyDir,
	gw: { address: { port: number }; hostPublicKey: string },
	ca: KeyPair,
	agent: KeyPair,
	login: string,
	grant = "ops/lee",
): { knownHosts: string; certFile: string } {
	const knownHosts = join(keys.dir, "known_hosts");
	writeFileSync(knownHosts, `[127.0.0.1]:${gw.address.port} ${gw.hostPublicKey}\n`);
	const certFile = join(keys.dir, "agent-cert.pub");
	writeFileSync(certFile, `${keys.sign(ca, agent, { id: leeCertId(grant), principals: [login], validity: "-5m:+1h" })}\n`);
	return { knownHosts, certFile };
}

export function sshGrant(sshd: SshdHandle, name: string, connection: string, ssh: Partial<NonNullable<BundleGrant["ssh"]>> = {}, extra: Partial<BundleGrant> = {}): BundleGrant {
	return {
		key: `ops/${name}`,
		name,
		namespace: "ops",
		connection,
		subjects: [{ kind: "User", name: "lee" }],
		notBefore: new Date(Date.now() - 60_000).toISOString(),
		expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
		ssh: { logins: [sshd.user], allowShell: false, allowSftp: false, allowPortForwarding: false, allowAgentForwarding: false, ...ssh },
		approvers: { subjects: [{ kind: "User", name: "sam" }], minApprovals: 1 },
		origin: {},
		...extra,
	};
}

export function storeWith(bundle: ConfigBundle): BundleStore {
	const store = new BundleStore();
	store.update(bundle);
	return store;
}

export function approvalService(): StoreApprovalService {
	return new StoreApprovalService({ store: new LocalApprovalStore(), sweepIntervalMs: 0, waitPollIntervalMs: 200 });
}

/** An approver identity as the approvals API would build it from a verified token. */
export function approver(name: string): Identity {
	return {
		issuer: ISSUER,
		issuerKind: "oidc",
		subject: name,
		username: name,
		groups: [],
		tokenExpiresAt: new Date(Date.now() + 600_000),
		claims: {},
	};
}

export interface RecordedSession {
	meta: SessionMeta;
	events: (RecordingEvent & { offsetMs: number })[];
	end?: SessionEnd;
}

export class MemoryRecorder implements Recorder {
	readonly sessions: RecordedSession[] = [];

	async openSession(meta: SessionMeta): Promise<SessionRecorder> {
		const s: RecordedSession = { meta, events: [] };
		this.sessions.push(s);
		const t0 = performance.now();
		return {
			sessionId: meta.sessionId,
			emit: (e) => {
				s.events.push({ ...e, offsetMs: performance.now() - t0 });
			},
			close: async (end) => {
				s.end = end;
			},
		};
	}

	events<T extends RecordingEvent["type"]>(type: T): Extract<RecordingEvent, { type: T }>[] {
		return this.sessions.flatMap((s) => s.events.filter((e) => e.type === type)) as unknown as Extract<RecordingEvent, { type: T }>[];
	}
}

/** asciicast v2 from terminal events (what the viewer plays): header line + [time, code, data] lines. */
export function toAsciicast(s: RecordedSession, width = 80, height = 24): string {
	const lines = [JSON.stringify({ version: 2, width, height, timestamp: Math.floor(Date.parse(s.meta.startedAt) / 1000) })];
	for (const e of s.events) {
		if (e.type === "terminal") lines.push(JSON.stringify([Number((e.offsetMs / 1000).toFixed(6)), e.stream, e.data]));
	}
	return `${lines.join("\n")}\n`;
}

export async function waitUntil(what: string, fn: () => boolean, timeoutMs = 10_000): Promise<void> {
	const end = Date.now() + timeoutMs;
	while (!fn()) {
		if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
		await new Promise((r) => setTimeout(r, 50));
	}
}
