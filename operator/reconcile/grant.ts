/**
 * The AccessGrant reconciler: makes credentials, status, Events and the finalizer match
 * `decideGrant(grant, connection, now)`. Level-based and idempotent: every run re-reads the grant,
 * and every credential step is "ensure" or "revoke", safe to repeat after a crash at any point.
 *
 * Credentials per phase:
 * - Active: a token Secret (`drawbridge-token-<grant>`, grant's namespace) when the grant has User or
 *   Group subjects; a dynamic PostgreSQL role + password Secret (operator namespace, read only by the
 *   operator; the password reaches gateways through the bundle) when the Connection is `dynamic`.
 * - any other phase: both revoked (role dropped after its sessions are terminated, Secrets deleted).
 * The finalizer keeps a deleted grant around until its credentials are revoked.
 */

import { createHash, generateKeyPairSync } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import type { Logger } from "pino";
import type { AccessGrant, AccessGrantStatus, Connection } from "../../crds/index.ts";
import { ed25519OpenSshPrivateKey, ed25519PublicKeyLine, signUserCertificate } from "../../crds/ssh-certificate.ts";
import { canonicalJson, grantSubjectsDigest } from "../../gateway/config/canonical.ts";
import { toSubjectMatcher, withoutDuplicateNames } from "../config/compile.ts";
import { type KeyRing, mintGrantToken, tokenRefreshAt } from "../credentials/jwt.ts";
import { dropRole, ensureRole, generatePassword } from "../credentials/postgres-roles.ts";
import { type KubeClient, KubeError, type KubeObject, SECRETS } from "../kube/client.ts";
import type { EventRecorder } from "../kube/events.ts";
import type { OperatorMetrics } from "../metrics.ts";
import type { OperatorOptions } from "../options.ts";
import { type GrantDecision, type WantedPgRole, type WantedToken, decideGrant, grantConditions, tokenSecretName } from "./desired/accessgrant.ts";
import { ANNOTATIONS, GRANT_FINALIZER, LABELS, labelValue } from "./labels.ts";
import { type Secret, type SshCaKey, adminClientConfig, createOrGetSecret, encodeData, managedLabels, putSecret, readConnectionSecrets, secretValue } from "./stores.ts";
import { ACCESSGRANTS, CONNECTIONS, splitKey } from "./types.ts";

export interface GrantReconcilerDeps {
	kube: KubeClient;
	opts: OperatorOptions;
	log: Logger;
	metrics: OperatorMetrics;
	events: EventRecorder;
	connection(key: string): Connection | undefined;
	/** Every Connection known (a name clash across namespaces leaves all but the oldest out of the bundle). */
	connections(): Connection[];
	keyRing(): KeyRing;
	/** The SSH user CA (signs agents' certificates for ssh grants). */
	sshUserCa(): SshCaKey;
	/** Credentials in the bundle changed (role ready/dropped). */
	onCredentialsChanged(): void;
	/**
	 * Aborted when this replica stops leading or shuts down: the revocation grace wait ends and the
	 * PostgreSQL admin connection is closed (its open transaction rolls back; the next leader redoes it).
	 */
	signal?: () => AbortSignal | undefined;
}

/**
 * A grant revoked before its end (file deleted from git, resource deleted): the bundle without it is
 * written first, and gateways get this long to end its sessions themselves — with a message naming
 * the revoked grant — before the role is dropped and PostgreSQL terminates whatever is left. At the
 * grant's natural end no wait is needed: gateways end sessions on their own timer, `VALID UNTIL`
 * refuses new logins.
 */
export const REVOCATION_GRACE_MS = 3000;

export function pgRoleSecretName(role: string): string {
	return `drawbridge-pgrole-${role.replaceAll("_", "-")}`;
}

export class GrantReconciler {
	constructor(private readonly d: GrantReconcilerDeps) {}

	async reconcile(key: string): Promise<{ requeueAt?: Date } | undefined> {
		const [ns, name] = splitKey(key);
		const grant = await this.d.kube.get<AccessGrant & { metadata: { uid?: string } }>(ACCESSGRANTS, ns, name);
		if (!grant) {
			// Gone without our finalizer (force-deleted, or never reconciled): collect what may be left.
			await this.revokeAll(ns, name, undefined);
			return undefined;
		}
		const deleting = Boolean(grant.metadata.deletionTimestamp);
		if (!deleting && !(grant.metadata.finalizers ?? []).includes(GRANT_FINALIZER)) {
			await this.d.kube.mergePatch(ACCESSGRANTS, ns, name, {
				metadata: { finalizers: [...(grant.metadata.finalizers ?? []), GRANT_FINALIZER], resourceVersion: grant.metadata.resourceVersion },
			});
			grant.metadata.finalizers = [...(grant.metadata.finalizers ?? []), GRANT_FINALIZER];
		}
		const connection = await this.connectionFor(`${ns}/${grant.spec.connection}`);
		const now = new Date();
		const decision = decideGrant(grant, connection, now, connection ? this.nameHeldBy(connection) : undefined);
		let credentialError: string | undefined;
		let credential: AccessGrantStatus["credential"] | undefined;
		let refreshAt: Date | undefined;
		if (decision.phase === "Active") {
			try {
				if (decision.token) {
					const t = await this.ensureToken(grant, decision, decision.token, now);
					refreshAt = t.refreshAt;
					credential = { type: "token", secretName: decision.token.secretName, expiresAt: t.expiresAt.toISOString() };
				} else await this.revokeToken(ns, name);
				if (decision.pgRole && connection) {
					// A grant moved to another Connection keeps nothing on the old one: the role minted there
					// (another name, maybe another server) is dropped and its backends terminated, not left
					// with LOGIN until VALID UNTIL.
					await this.revokeRoles(ns, name, REVOCATION_GRACE_MS, decision.pgRole.role);
					await this.ensurePgRole(grant, decision, decision.pgRole, connection);
					credential = {
						type: "postgresRole",
						secretName: pgRoleSecretName(decision.pgRole.role),
						secretNamespace: this.d.opts.namespace,
						username: decision.pgRole.role,
						expiresAt: decision.window!.expiresAt.toISOString(),
					};
				} else await this.revokeRoles(ns, name);
			} catch (e) {
				credentialError = (e as Error).message;
				this.d.metrics.reconcileErrors.inc({ kind: "AccessGrant" });
				this.d.log.warn({ grant: key, err: credentialError }, "issuing credentials failed");
			}
		} else {
			await this.revokeAll(ns, name, grant);
		}

		const prevPhase = grant.status?.phase;
		const status: AccessGrantStatus = {
			phase: decision.phase,
			...(decision.window ? { notBefore: decision.window.notBefore.toISOString(), expiresAt: decision.window.expiresAt.toISOString() } : {}),
			// firstSeenAt kept with the commit it belongs to: the next decision reads it back from here.
			origin: { ...decision.origin, ...(decision.firstSeenAt ? { firstSeenAt: decision.firstSeenAt } : {}) },
			...(credential ? { credential } : {}),
			conditions: grantConditions(grant.status?.conditions, decision, grant.metadata.generation, now, credentialError),
			...(grant.metadata.generation !== undefined ? { observedGeneration: grant.metadata.generation } : {}),
		};
		if (canonicalJson(status) !== canonicalJson(grant.status ?? {})) {
			try {
				// The whole status is replaced: a merge patch would keep stale nested fields (an old PR number
				// in origin, an old credential's username).
				await this.d.kube.jsonPatch(ACCESSGRANTS, ns, name, [{ op: "add", path: "/status", value: status }], "status");
			} catch (e) {
				if (!(deleting && e instanceof KubeError && e.code === "NOT_FOUND")) throw e;
			}
		}
		if (prevPhase !== decision.phase) {
			await this.d.events.record(grant, decision.phase === "Invalid" ? "Warning" : "Normal", decision.phase, `${decision.reason}: ${decision.message}`);
			this.d.log.info({ grant: key, from: prevPhase ?? "", to: decision.phase, reason: decision.reason }, "grant phase changed");
		}
		if (credentialError) throw new Error(`grant ${key}: ${credentialError}`);
		if (deleting) {
			const finalizers = (grant.metadata.finalizers ?? []).filter((f) => f !== GRANT_FINALIZER);
			try {
				await this.d.kube.mergePatch(ACCESSGRANTS, ns, name, { metadata: { finalizers, resourceVersion: undefined } });
			} catch (e) {
				if (!(e instanceof KubeError && e.code === "NOT_FOUND")) throw e;
			}
			return undefined;
		}
		const next = [decision.requeueAt, refreshAt].filter((x): x is Date => x !== undefined).sort((a, b) => a.getTime() - b.getTime())[0];
		return next ? { requeueAt: next } : undefined;
	}

	/** The watch cache first; on a miss a fresh read (a Connection applied in the same sync may not be cached yet). */
	/** The Connection of another namespace that keeps `c`'s name in the bundle, when `c` lost it. */
	private nameHeldBy(c: Connection): string | undefined {
		const holder = withoutDuplicateNames(this.d.connections()).kept.find((k) => k.metadata.name === c.metadata.name);
		return holder && holder.metadata.namespace !== c.metadata.namespace ? `${holder.metadata.namespace}/${holder.metadata.name}` : undefined;
	}

	private async connectionFor(key: string): Promise<Connection | undefined> {
		const cached = this.d.connection(key);
		if (cached) return cached;
		const [ns, name] = splitKey(key);
		return this.d.kube.get<Connection & KubeObject>(CONNECTIONS, ns, name);
	}

	// -------------------------------------------------------------------------------------------
	// Tokens

	private async ensureToken(grant: AccessGrant & { metadata: { uid?: string } }, d: GrantDecision, want: WantedToken, now: Date): Promise<{ expiresAt: Date; refreshAt: Date }> {
		const ns = grant.metadata.namespace!;
		const existing = await this.d.kube.get<Secret>(SECRETS, ns, want.secretName);
		const ring = this.d.keyRing();
		const grantEnd = d.window!.expiresAt;
		// The credential is shared by everyone the grant names: minted again when they change, and the
		// gateway refuses the old one (its digest no longer matches the bundle's subjects).
		const subjectsDigest = grantSubjectsDigest(grant.spec.subjects.map(toSubjectMatcher));
		if (existing && existing.metadata.labels?.[LABELS.managedBy] === undefined) {
			throw new Error(`Secret ${ns}/${want.secretName} exists and is not managed by Drawbridge; refusing to overwrite it`);
		}
		if (existing && existing.metadata.labels?.[LABELS.grant] !== labelValue(ns, grant.metadata.name)) {
			throw new Error(`Secret ${ns}/${want.secretName} holds the credential of another grant; refusing to overwrite it`);
		}
		if (existing) {
			const exp = Date.parse(existing.metadata.annotations?.[ANNOTATIONS.expiresAt] ?? "");
			const iat = Date.parse(existing.metadata.annotations?.[ANNOTATIONS.issuedAt] ?? "");
			const kid = existing.metadata.annotations?.["access.drawbridge.dev/kid"];
			const refreshAt = tokenRefreshAt(new Date(iat), new Date(exp));
			const sameSubject =
				secretValue(existing, "subject") === want.subject &&
				existing.metadata.annotations?.["access.drawbridge.dev/grant-uid"] === (grant.metadata.uid ?? "") &&
				existing.metadata.annotations?.["access.drawbridge.dev/subjects-digest"] === subjectsDigest;
			const sshOk = !grant.spec.ssh || existing.metadata.annotations?.["access.drawbridge.dev/ssh-logins"] === grant.spec.ssh.logins.join(",");
			if (Number.isFinite(exp) && exp <= grantEnd.getTime() && now < refreshAt && ring.keys.some((k) => k.kid === kid) && sameSubject && sshOk) {
				return { expiresAt: new Date(exp), refreshAt };
			}
		}
		const minted = await mintGrantToken(ring, {
			issuer: this.d.opts.issuer,
			audience: this.d.opts.tokenAudiences,
			subject: want.subject,
			groups: want.groups,
			grant: `${ns}/${grant.metadata.name}`,
			grantSubjects: subjectsDigest,
			grantExpiresAt: grantEnd,
			now,
			ttlMs: this.d.opts.tokenTtlMs,
		});
		const ssh = grant.spec.ssh ? this.sshCertificate(grant, want.subject, subjectsDigest, d.window!.notBefore, minted.expiresAt, minted.jti) : undefined;
		await putSecret(this.d.kube, {
			apiVersion: "v1",
			kind: "Secret",
			type: "Opaque",
			metadata: {
				name: want.secretName,
				namespace: ns,
				labels: managedLabels({ [LABELS.grant]: labelValue(ns, grant.metadata.name), [LABELS.credential]: "token" }),
				annotations: {
					[ANNOTATIONS.expiresAt]: minted.expiresAt.toISOString(),
					[ANNOTATIONS.issuedAt]: minted.issuedAt.toISOString(),
					"access.drawbridge.dev/kid": minted.kid,
					"access.drawbridge.dev/jti": minted.jti,
					"access.drawbridge.dev/grant-uid": grant.metadata.uid ?? "",
					"access.drawbridge.dev/subjects-digest": subjectsDigest,
					...(grant.spec.ssh ? { "access.drawbridge.dev/ssh-logins": grant.spec.ssh.logins.join(",") } : {}),
				},
				...(grant.metadata.uid
					? { ownerReferences: [{ apiVersion: grant.apiVersion, kind: grant.kind, name: grant.metadata.name, uid: grant.metadata.uid, blockOwnerDeletion: false }] }
					: {}),
			},
			data: encodeData({
				token: minted.token,
				expiresAt: minted.expiresAt.toISOString(),
				subject: want.subject,
				...(ssh ? { "ssh-privatekey": ssh.privateKey, "ssh-certificate": ssh.certificate } : {}),
			}),
		});
		this.d.metrics.credentialsIssued.inc({ type: "token" });
		return { expiresAt: minted.expiresAt, refreshAt: tokenRefreshAt(minted.issuedAt, minted.expiresAt) };
	}

	/**
	 * A fresh Ed25519 key pair for the agent and a user certificate from the SSH user CA: principals = the
	 * grant's logins, valid no longer than the token (and never past the grant), key id
	 * `sub=<subject>;grant=<namespace/name>;subjects=<digest of the grant's subjects>`, extensions only for what the grant allows.
	 */
	private sshCertificate(grant: AccessGrant, subject: string, subjectsDigest: string, notBefore: Date, validBefore: Date, jti: string): { privateKey: string; certificate: string } {
		const ssh = grant.spec.ssh!;
		const { privateKey } = generateKeyPairSync("ed25519");
		const extensions: Record<string, string> = {};
		if (ssh.allowShell) extensions["permit-pty"] = "";
		if (ssh.allowPortForwarding) extensions["permit-port-forwarding"] = "";
		if (ssh.allowAgentForwarding) extensions["permit-agent-forwarding"] = "";
		const key = `${grant.metadata.namespace}/${grant.metadata.name}`;
		const { line } = signUserCertificate({
			caPrivateKey: this.d.sshUserCa().privateKeyPem,
			publicKey: ed25519PublicKeyLine(privateKey),
			principals: [...ssh.logins],
			validAfter: new Date(Math.max(notBefore.getTime(), Date.now() - 60_000)),
			validBefore,
			keyId: `sub=${subject};grant=${key};subjects=${subjectsDigest}`,
			serial: BigInt(`0x${createHash("sha256").update(jti).digest("hex").slice(0, 15)}`),
			extensions,
		});
		return { privateKey: ed25519OpenSshPrivateKey(privateKey, `${subject}@${key}`), certificate: `${line}\n` };
	}

	private async revokeToken(ns: string, name: string): Promise<void> {
		const secretName = tokenSecretName(name);
		const existing = await this.d.kube.get<Secret>(SECRETS, ns, secretName);
		if (existing?.metadata.labels?.[LABELS.credential] !== "token") return;
		if (existing.metadata.labels?.[LABELS.grant] !== labelValue(ns, name)) return;
		if (await this.d.kube.delete(SECRETS, ns, secretName, existing.metadata.uid)) this.d.metrics.credentialsRevoked.inc({ type: "token" });
	}

	// -------------------------------------------------------------------------------------------
	// Dynamic PostgreSQL roles

	private async withAdmin<T>(connection: Connection, fn: (c: pg.Client) => Promise<T>): Promise<T> {
		const secrets = await readConnectionSecrets(this.d.kube, connection);
		const signal = this.d.signal?.();
		signal?.throwIfAborted();
		const client = new pg.Client(adminClientConfig(connection, secrets));
		client.on("error", () => {});
		const onAbort = () => void client.end().catch(() => {});
		signal?.addEventListener("abort", onAbort, { once: true });
		try {
			await client.connect();
			return await fn(client);
		} finally {
			signal?.removeEventListener("abort", onAbort);
			await client.end().catch(() => {});
		}
	}

	private async ensurePgRole(grant: AccessGrant, d: GrantDecision, want: WantedPgRole, connection: Connection): Promise<void> {
		const ns = grant.metadata.namespace!;
		const secretName = pgRoleSecretName(want.role);
		const validUntil = d.window!.expiresAt;
		const { secret } = await createOrGetSecret(this.d.kube, {
			apiVersion: "v1",
			kind: "Secret",
			type: "Opaque",
			metadata: {
				name: secretName,
				namespace: this.d.opts.namespace,
				labels: managedLabels({ [LABELS.grant]: labelValue(ns, grant.metadata.name), [LABELS.credential]: "postgres-role" }),
				annotations: { "access.drawbridge.dev/grant-key": `${ns}/${grant.metadata.name}`, "access.drawbridge.dev/connection-key": want.connectionKey },
			},
			data: encodeData({ username: want.role, password: generatePassword() }),
		});
		const password = secretValue(secret, "password");
		if (!password) throw new Error(`Secret ${this.d.opts.namespace}/${secretName} has no password`);
		const { created } = await this.withAdmin(connection, (c) =>
			ensureRole(c, {
				role: want.role,
				password,
				validUntil,
				database: connection.spec.postgres!.database,
				schemas: this.d.opts.postgresSchemas,
				access: grant.spec.postgres!.access,
			}),
		);
		if (created) this.d.metrics.credentialsIssued.inc({ type: "postgresRole" });
		const ready = validUntil.toISOString();
		if (secret.metadata.annotations?.[ANNOTATIONS.expiresAt] !== ready) {
			await this.d.kube.mergePatch(SECRETS, this.d.opts.namespace, secretName, { metadata: { annotations: { [ANNOTATIONS.expiresAt]: ready, "access.drawbridge.dev/role-ready": "true" } } });
			this.d.onCredentialsChanged();
		}
	}

	/**
	 * Drops every dynamic role of the grant (looked up by label, so a changed Connection is covered) and
	 * deletes its Secrets; `keep` names the role the grant still holds (its current Connection's).
	 */
	private async revokeRoles(ns: string, name: string, graceMs = 0, keep?: string): Promise<void> {
		const { items } = await this.d.kube.list<Secret>(SECRETS, this.d.opts.namespace, {
			labelSelector: `${LABELS.grant}=${labelValue(ns, name)},${LABELS.credential}=postgres-role`,
		});
		for (const s of items) {
			if (s.metadata.annotations?.["access.drawbridge.dev/grant-key"] !== `${ns}/${name}`) continue;
			const role = secretValue(s, "username");
			if (keep !== undefined && role === keep) continue;
			const connKey = s.metadata.annotations?.["access.drawbridge.dev/connection-key"] ?? "";
			const connection = connKey ? await this.connectionFor(connKey) : undefined;
			// First make sure gateways stop using the credential, then drop the role.
			if (s.metadata.annotations?.["access.drawbridge.dev/role-ready"] === "true") {
				await this.d.kube.mergePatch(SECRETS, this.d.opts.namespace, s.metadata.name, { metadata: { annotations: { "access.drawbridge.dev/role-ready": "false" } } });
				this.d.onCredentialsChanged();
				if (graceMs > 0) await sleep(graceMs, undefined, { signal: this.d.signal?.() });
			}
			if (role && connection) {
				const res = await this.withAdmin(connection, (c) => dropRole(c, role));
				if (res.dropped) {
					this.d.metrics.credentialsRevoked.inc({ type: "postgresRole" });
					this.d.log.info({ grant: `${ns}/${name}`, role, terminated: res.terminated }, "dynamic role dropped");
				}
			} else if (role) {
				this.d.log.warn({ grant: `${ns}/${name}`, role, connection: connKey }, "Connection gone: role not dropped (it expires by VALID UNTIL)");
			}
			await this.d.kube.delete(SECRETS, this.d.opts.namespace, s.metadata.name, s.metadata.uid);
		}
	}

	private async revokeAll(ns: string, name: string, grant: AccessGrant | undefined): Promise<void> {
		await this.revokeToken(ns, name);
		// Revoked early (being deleted) rather than ended: let gateways say so first.
		await this.revokeRoles(ns, name, grant?.metadata.deletionTimestamp ? REVOCATION_GRACE_MS : 0);
	}
}

