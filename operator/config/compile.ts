/**
 * Compiles resources + credentials + issuers into the gateway's ConfigBundle. Pure: no Kubernetes, no
 * clock (time passed in). The operator calls it on every change; `drawbridge dev` calls it with
 * resources loaded from a local repository.
 *
 * - Connections: all of them (the gateway refuses connections without a grant anyway).
 * - Grants: Pending and Active ones, and Expired ones still in the source of truth (so a refused agent
 *   is told "grant X expired at T" rather than "no grant"); Expired grants carry no credential.
 *   Revoked (being deleted) and Invalid grants are left out.
 * - Credentials: static connection secrets under `conn:<ns>/<name>`, dynamic role passwords under
 *   `grant:<ns>/<name>`.
 */

import { createHash } from "node:crypto";
import type { AccessGrant, Connection, GuardrailPolicy, MaskingPolicy, Subject } from "../../crds/index.ts";
import { parseDuration } from "../../crds/index.ts";
import {
	BUNDLE_API_VERSION,
	type BackendCredential,
	type BundleConnection,
	type BundleGrant,
	type BundleGuardrailPolicy,
	type BundleMaskingPolicy,
	type ConfigBundle,
	type GuardrailRule,
	type IssuerConfig,
	type MaskRule,
	type SubjectMatcher,
} from "../../gateway/config/bundle.ts";
import { canonicalJson, sealBundle } from "../../gateway/config/canonical.ts";
import { type GrantDecision, decideGrant } from "../reconcile/desired/accessgrant.ts";

export interface CompileInputs {
	connections: readonly Connection[];
	grants: readonly AccessGrant[];
	maskingPolicies: readonly MaskingPolicy[];
	guardrailPolicies: readonly GuardrailPolicy[];
	issuers: readonly IssuerConfig[];
	/** Static backend credentials by connection key (`ns/name`), read from each Connection's Secret. */
	connectionCredentials: Readonly<Record<string, BackendCredential>>;
	/** PEM CA bundles by connection key (from `tls.caSecretRef`). */
	connectionCaPem?: Readonly<Record<string, string>>;
	/** Dynamic PostgreSQL role credentials by grant key; only grants whose role exists. */
	grantCredentials: Readonly<Record<string, BackendCredential>>;
	maskingKey: string;
	now: Date;
	/** The operator's SSH CAs (public user CA; upstream CA key pair). */
	ssh?: { userCaPublicKey: string; upstreamCa?: { privateKeyPem: string; publicKeyLine: string } };
}

export interface CompileOptions {
	version: number;
	generatedAt: Date;
}

export const connectionCredentialId = (key: string): string => `conn:${key}`;
export const SSH_UPSTREAM_CA_CREDENTIAL = "ssh-upstream-ca";
export const grantCredentialId = (key: string): string => `grant:${key}`;

const keyOf = (o: { metadata: { namespace?: string; name: string } }): string => `${o.metadata.namespace ?? "default"}/${o.metadata.name}`;

function byKey<T extends { metadata: { namespace?: string; name: string } }>(list: readonly T[]): T[] {
	return [...list].sort((a, b) => (keyOf(a) < keyOf(b) ? -1 : keyOf(a) > keyOf(b) ? 1 : 0));
}

export function toSubjectMatcher(s: Subject): SubjectMatcher {
	switch (s.kind) {
		case "User":
			return { kind: "User", name: s.name! };
		case "Group":
			return { kind: "Group", name: s.name! };
		case "ServiceAccount":
			return { kind: "ServiceAccount", namespace: s.namespace!, name: s.name! };
		default:
			return { kind: "Claims", issuer: s.issuer!, claims: { ...(s.claims ?? {}) } };
	}
}

function compileConnection(c: Connection, inputs: CompileInputs): BundleConnection {
	const key = keyOf(c);
	const spec = c.spec;
	const out: BundleConnection = {
		key,
		name: c.metadata.name,
		namespace: c.metadata.namespace ?? "default",
		type: spec.type,
		labels: { ...(c.metadata.labels ?? {}) },
		host: spec.host,
		port: spec.port,
	};
	if (inputs.connectionCredentials[key]) out.credentialRef = connectionCredentialId(key);
	const caPem = inputs.connectionCaPem?.[key];
	if (spec.type === "postgres" && spec.postgres) {
		out.postgres = {
			database: spec.postgres.database,
			credentialMode: spec.postgres.credentialMode ?? "static",
			sslmode: spec.tls?.mode ?? "verify-full",
			...(caPem ? { caPem } : {}),
			...(spec.tls?.serverName ? { serverName: spec.tls.serverName } : {}),
		};
	} else if (spec.type === "ssh" && spec.ssh) {
		out.ssh = { hostKeys: [...spec.ssh.hostKeys], auth: spec.ssh.auth ?? "key" };
	} else if (spec.type === "kubernetes") {
		out.kubernetes = { server: `https://${spec.host.includes(":") ? `[${spec.host}]` : spec.host}:${spec.port}`, ...(caPem ? { caPem } : {}) };
	}
	return out;
}

function compileGrant(g: AccessGrant, d: GrantDecision, inputs: CompileInputs): BundleGrant {
	const key = keyOf(g);
	const spec = g.spec;
	const out: BundleGrant = {
		key,
		name: g.metadata.name,
		namespace: g.metadata.namespace ?? "default",
		connection: spec.connection,
		subjects: spec.subjects.map(toSubjectMatcher),
		notBefore: d.window!.notBefore.toISOString(),
		expiresAt: d.window!.expiresAt.toISOString(),
		approvers: {
			subjects: (spec.approvers?.subjects ?? []).map(toSubjectMatcher),
			minApprovals: spec.approvers?.minApprovals ?? 1,
		},
		origin: { ...d.origin },
	};
	if (spec.postgres) {
		out.postgres = { access: spec.postgres.access };
		if (d.phase !== "Expired" && d.pgRole && inputs.grantCredentials[key]) out.postgres.credentialRef = grantCredentialId(key);
	}
	if (spec.ssh) {
		out.ssh = {
			logins: [...spec.ssh.logins],
			...(spec.ssh.allowedCommands ? { allowedCommands: [...spec.ssh.allowedCommands] } : {}),
			allowShell: spec.ssh.allowShell ?? false,
			allowSftp: spec.ssh.allowSftp ?? false,
			allowPortForwarding: spec.ssh.allowPortForwarding ?? false,
			...(spec.ssh.allowedForwards ? { allowedForwards: [...spec.ssh.allowedForwards] } : {}),
			allowAgentForwarding: spec.ssh.allowAgentForwarding ?? false,
		};
	}
	if (spec.kubernetes) {
		out.kubernetes = {
			namespaces: [...spec.kubernetes.namespaces],
			verbs: [...spec.kubernetes.verbs],
			resources: [...spec.kubernetes.resources],
			...(spec.kubernetes.impersonateGroups ? { impersonateGroups: [...spec.kubernetes.impersonateGroups] } : {}),
		};
	}
	if (spec.ticket) out.ticket = spec.ticket;
	if (spec.justification) out.justification = spec.justification;
	return out;
}

function compileMasking(p: MaskingPolicy): BundleMaskingPolicy {
	const rules: MaskRule[] = p.spec.rules.map((r) => {
		const s = r.strategy;
		const strategy: MaskRule["strategy"] =
			s.type === "redact"
				? { type: "redact", ...(s.replacement !== undefined ? { replacement: s.replacement } : {}) }
				: s.type === "partial"
					? { type: "partial", keepLast: s.keepLast ?? 0, ...(s.keepFirst !== undefined ? { keepFirst: s.keepFirst } : {}) }
					: s.type === "hash"
						? { type: "hash", ...(s.length !== undefined ? { length: s.length } : {}) }
						: { type: "null" };
		return {
			name: r.name,
			...(r.columns ? { columns: [...r.columns] } : {}),
			...(r.detectors ? { detectors: [...r.detectors] } : {}),
			...(r.patterns ? { patterns: [...r.patterns] } : {}),
			strategy,
		};
	});
	return {
		key: keyOf(p),
		selector: { matchLabels: { ...(p.spec.selector.matchLabels ?? {}) } },
		rules,
		...(p.spec.exempt ? { exempt: p.spec.exempt.map(toSubjectMatcher) } : {}),
	};
}

const seconds = (d: string | undefined): number | undefined => {
	const ms = d === undefined ? undefined : parseDuration(d);
	return ms === undefined ? undefined : Math.floor(ms / 1000);
};

function compileGuardrail(p: GuardrailPolicy): BundleGuardrailPolicy {
	const rules: GuardrailRule[] = p.spec.rules.map((r) => {
		const out: GuardrailRule = { name: r.name, action: r.action };
		if (r.message) out.message = r.message;
		if (r.sql) out.sql = structuredClone(r.sql);
		if (r.kubernetes) out.kubernetes = structuredClone(r.kubernetes);
		if (r.ssh) out.ssh = structuredClone(r.ssh);
		if (r.approval) {
			const a = r.approval;
			const timeoutSeconds = seconds(a.timeout);
			const reuseWindowSeconds = seconds(a.reuseWindow);
			out.approval = {
				...(a.approvers ? { approvers: a.approvers.map(toSubjectMatcher) } : {}),
				...(a.minApprovals !== undefined ? { minApprovals: a.minApprovals } : {}),
				...(timeoutSeconds !== undefined ? { timeoutSeconds } : {}),
				...(reuseWindowSeconds !== undefined ? { reuseWindowSeconds } : {}),
			};
		}
		return out;
	});
	return { key: keyOf(p), selector: { matchLabels: { ...(p.spec.selector.matchLabels ?? {}) } }, rules };
}

export type BundleContent = Omit<ConfigBundle, "version" | "hash" | "generatedAt">;

/** Everything but version, time and hash: what decides whether a new bundle is needed. */
export function compileBundleContent(inputs: CompileInputs): BundleContent {
	const connections = withoutDuplicateNames(inputs.connections).kept;
	const connByKey = new Map(connections.map((c) => [keyOf(c), c]));
	const grants: BundleGrant[] = [];
	const credentials: Record<string, BackendCredential> = {};
	for (const g of byKey(inputs.grants)) {
		const conn = connByKey.get(`${g.metadata.namespace ?? "default"}/${g.spec.connection}`);
		const d = decideGrant(g, conn, inputs.now);
		if (d.phase !== "Pending" && d.phase !== "Active" && d.phase !== "Expired") continue;
		const bg = compileGrant(g, d, inputs);
		grants.push(bg);
		const ref = bg.postgres?.credentialRef;
		if (ref) credentials[ref] = structuredClone(inputs.grantCredentials[bg.key]!);
	}
	const bundleConnections = connections.map((c) => compileConnection(c, inputs));
	for (const c of bundleConnections) {
		if (c.credentialRef) credentials[c.credentialRef] = structuredClone(inputs.connectionCredentials[c.key]!);
	}
	let ssh: ConfigBundle["ssh"];
	if (inputs.ssh) {
		ssh = { userCaKeys: [inputs.ssh.userCaPublicKey] };
		// The upstream CA key only travels when some Connection logs in with certificates.
		if (inputs.ssh.upstreamCa && bundleConnections.some((c) => c.ssh?.auth === "certificate")) {
			credentials[SSH_UPSTREAM_CA_CREDENTIAL] = { type: "sshKey", username: "drawbridge-upstream-ca", privateKeyPem: inputs.ssh.upstreamCa.privateKeyPem };
			ssh.upstreamCaCredentialRef = SSH_UPSTREAM_CA_CREDENTIAL;
			ssh.upstreamCaPublicKey = inputs.ssh.upstreamCa.publicKeyLine;
		}
	}
	return {
		...(ssh ? { ssh } : {}),
		apiVersion: BUNDLE_API_VERSION,
		issuers: inputs.issuers.map((i) => structuredClone(i)),
		connections: bundleConnections,
		grants,
		maskingPolicies: byKey(inputs.maskingPolicies).map(compileMasking),
		guardrailPolicies: byKey(inputs.guardrailPolicies).map(compileGuardrail),
		credentials,
		maskingKey: inputs.maskingKey,
	};
}

/**
 * Agents name a Connection by `metadata.name` alone, so names must be unique across namespaces in one
 * bundle (the gateway refuses a bundle with duplicates). The Connection that has the name longest
 * keeps it: the oldest by `metadata.creationTimestamp` (one without it counts as newest), then by
 * `namespace/name`. The others (and their grants) are left out and reported. Before, the first by
 * `namespace/name` won: another team's repository merging a Connection of the same name in a namespace
 * that sorts earlier took the name over, which dropped the first team's Connection and grants from the
 * bundle (their sessions ended as revoked) and sent their agents to the newcomer's server.
 */
export function withoutDuplicateNames(connections: readonly Connection[]): { kept: Connection[]; dropped: Connection[] } {
	const created = (c: Connection): number => {
		const t = Date.parse(c.metadata.creationTimestamp ?? "");
		return Number.isFinite(t) ? t : Number.POSITIVE_INFINITY;
	};
	const ordered = byKey(connections).sort((a, b) => created(a) - created(b) || 0);
	const seen = new Set<string>();
	const keptKeys = new Set<string>();
	const dropped: Connection[] = [];
	for (const c of ordered) {
		if (seen.has(c.metadata.name)) dropped.push(c);
		else {
			seen.add(c.metadata.name);
			keptKeys.add(keyOf(c));
		}
	}
	return { kept: byKey(connections).filter((c) => keptKeys.has(keyOf(c))), dropped: byKey(dropped) };
}

/** SHA-256 of the canonical JSON of the content (no version, no time). */
export function contentHash(content: BundleContent): string {
	return createHash("sha256").update(canonicalJson(content)).digest("hex");
}

/** The pure compile step: `compileBundle(inputs) → ConfigBundle`, sealed with its hash. */
export function compileBundle(inputs: CompileInputs, opts: CompileOptions): ConfigBundle {
	return sealBundle({ ...compileBundleContent(inputs), version: opts.version, generatedAt: opts.generatedAt.toISOString() });
}

/** The next instant a bundle compiled at `now` would differ without any input changing (a grant starting or ending). */
export function nextBundleChange(inputs: Pick<CompileInputs, "grants" | "connections">, now: Date): Date | undefined {
	const conns = new Map(inputs.connections.map((c) => [keyOf(c), c]));
	let next: number | undefined;
	for (const g of inputs.grants) {
		const d = decideGrant(g, conns.get(`${g.metadata.namespace ?? "default"}/${g.spec.connection}`), now);
		if (d.requeueAt && d.requeueAt.getTime() > now.getTime()) next = Math.min(next ?? Number.POSITIVE_INFINITY, d.requeueAt.getTime());
	}
	return next === undefined ? undefined : new Date(next);
}
