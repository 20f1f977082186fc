/**
 * The config bundle every benchmark gateway child runs: one PostgreSQL Connection to the upstream
 * under test, one read-write grant for the bench user, masking and guardrail rules chosen by the
 * caller (so a bench measures its own policy load), and the upstream password.
 */
import { BUNDLE_API_VERSION, type ConfigBundle, type GuardrailRule, type MaskRule } from "../gateway/config/bundle.ts";
import { sealBundle } from "../gateway/config/canonical.ts";

export interface ChildConfig {
	stateFile: string;
	workDir: string;
	upstream: { host: string; port: number; database: string; user: string; password: string; caPem: string };
	tls: { certPem: string; keyPem: string };
	jwk: Record<string, unknown>;
	issuer: string;
	audience: string;
	connection: string;
	user: string;
}

export function benchBundle(cfg: ChildConfig, rules: { mask: MaskRule[]; guardrails: GuardrailRule[] }): ConfigBundle {
	const now = Date.now();
	return sealBundle({
		apiVersion: BUNDLE_API_VERSION,
		version: 1,
		generatedAt: new Date().toISOString(),
		issuers: [{ name: "bench", kind: "oidc", issuer: cfg.issuer, audiences: [cfg.audience], jwks: { keys: [cfg.jwk] }, algorithms: ["EdDSA"] }],
		connections: [
			{
				key: `bench/${cfg.connection}`,
				name: cfg.connection,
				namespace: "bench",
				type: "postgres",
				labels: { env: "bench" },
				host: cfg.upstream.host,
				port: cfg.upstream.port,
				credentialRef: "pg",
				postgres: { database: cfg.upstream.database, credentialMode: "static", sslmode: "verify-full", caPem: cfg.upstream.caPem, serverName: "localhost" },
			},
		],
		grants: [
			{
				key: "bench/bench",
				name: "bench",
				namespace: "bench",
				connection: cfg.connection,
				subjects: [{ kind: "User", name: cfg.user }],
				notBefore: new Date(now - 60_000).toISOString(),
				expiresAt: new Date(now + 24 * 3_600_000).toISOString(),
				postgres: { access: "read-write" },
				approvers: { subjects: [], minApprovals: 1 },
				origin: { commit: "bench" },
			},
		],
		maskingPolicies: [{ key: "bench/mask", selector: { matchLabels: { env: "bench" } }, rules: rules.mask }],
		guardrailPolicies: [{ key: "bench/guard", selector: { matchLabels: { env: "bench" } }, rules: rules.guardrails }],
		credentials: { pg: { type: "password", username: cfg.upstream.user, password: cfg.upstream.password } },
		maskingKey: Buffer.alloc(32, 3).toString("base64"),
	});
}
