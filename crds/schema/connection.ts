import { type Static, Type } from "@sinclair/typebox";
import { Conditions, has, ObjectName, ObservedGeneration, SecretKeyRef, StringEnum, StringList, withRules } from "./kit.ts";

export const CONNECTION_TYPES = ["postgres", "ssh", "kubernetes"] as const;
export const TLS_MODES = ["disable", "require", "verify-ca", "verify-full"] as const;

const Tls = withRules(
	Type.Object(
		{
			mode: Type.Optional(
				StringEnum(TLS_MODES, {
					description:
						"Upstream TLS: `disable`, `require` (encrypt, no verification), `verify-ca` (chain only), `verify-full` (chain and host name).",
					default: "verify-full",
				}),
			),
			caSecretRef: Type.Optional(SecretKeyRef("Secret key holding the PEM CA bundle used to verify the upstream server.", "ca.crt")),
			serverName: Type.Optional(
				Type.String({ description: "Name expected in the server certificate, when it is not `host`.", minLength: 1, maxLength: 253 }),
			),
		},
		{ description: "How the gateway verifies the upstream server. Not for ssh (see ssh.hostKeys)." },
	),
	[
		{
			cel: "self.mode != 'verify-ca' || has(self.caSecretRef)",
			message: "verify-ca needs caSecretRef",
			fieldPath: ".caSecretRef",
			reason: "FieldValueRequired",
			check: (s) => s.mode !== "verify-ca" || has(s, "caSecretRef"),
		},
	],
);

export const ConnectionSpec = withRules(
	Type.Object(
		{
			type: StringEnum(CONNECTION_TYPES, { description: "Protocol of the target: `postgres`, `ssh` or `kubernetes`." }),
			host: Type.String({
				description: "Host name or IP address of the target (the kube-apiserver for kubernetes).",
				minLength: 1,
				maxLength: 253,
				pattern: "^[A-Za-z0-9]([-A-Za-z0-9.:]*[A-Za-z0-9])?$",
			}),
			port: Type.Integer({ description: "TCP port of the target (PostgreSQL 5432, SSH 22, kube-apiserver 6443 or 443).", minimum: 1, maximum: 65535 }),
			description: Type.Optional(Type.String({ description: "What this target is, for people reading the repository.", maxLength: 1024 })),
			credentialSecretRef: Type.Optional(
				Type.Object(
					{ name: ObjectName("Name of the Secret (same namespace), readable only by the gateway and the operator.") },
					{
						description:
							"Secret with the gateway's own backend credential: postgres `username`/`password` (for dynamic mode: a role allowed to CREATE ROLE), ssh `username`/`privateKey`, kubernetes `token` or `tls.crt`/`tls.key`.",
					},
				),
			),
			tls: Type.Optional(Tls),
			postgres: Type.Optional(
				Type.Object(
					{
						database: Type.String({ description: "Database name on the upstream server.", minLength: 1, maxLength: 63 }),
						credentialMode: Type.Optional(
							StringEnum(["static", "dynamic"] as const, {
								description:
									"`static`: sessions use the Secret's role. `dynamic`: the operator creates a role per grant with VALID UNTIL the grant's end and exactly the granted privileges.",
								default: "static",
							}),
						),
					},
					{ description: "PostgreSQL settings. Required for type postgres." },
				),
			),
			ssh: Type.Optional(
				Type.Object(
					{
						hostKeys: StringList(
							"Host public keys the target may present (`ssh-ed25519 AAAA...`). No trust on first use.",
							{
								description: "An OpenSSH public key line.",
								maxLength: 8192,
								pattern: "^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521|rsa-sha2-256|rsa-sha2-512) [A-Za-z0-9+/=]+( .*)?$",
							},
							{ minItems: 1, maxItems: 8 },
						),
						auth: Type.Optional(
							StringEnum(["key", "certificate"] as const, {
								description:
									"Upstream login: `key` (the private key in credentialSecretRef) or `certificate` (a per-session certificate from the operator's SSH CA).",
								default: "key",
							}),
						),
					},
					{ description: "SSH settings. Required for type ssh." },
				),
			),
			kubernetes: Type.Optional(
				Type.Object(
					{
						impersonate: Type.Optional(
							Type.Boolean({ description: "Send requests with Impersonate-User/Group headers for the caller (recommended).", default: true }),
						),
					},
					{ description: "Kubernetes settings. Only for type kubernetes." },
				),
			),
		},
		{ description: "A target agents reach through the gateway. Policies select Connections by metadata.labels (e.g. env: prod)." },
	),
	[
		{
			cel: "self.type == 'postgres' ? has(self.postgres) : !has(self.postgres)",
			message: "postgres settings are required for type postgres and not allowed for other types",
			fieldPath: ".postgres",
			check: (s) => (s.type === "postgres" ? has(s, "postgres") : !has(s, "postgres")),
		},
		{
			cel: "self.type == 'ssh' ? has(self.ssh) : !has(self.ssh)",
			message: "ssh settings are required for type ssh and not allowed for other types",
			fieldPath: ".ssh",
			check: (s) => (s.type === "ssh" ? has(s, "ssh") : !has(s, "ssh")),
		},
		{
			cel: "self.type == 'kubernetes' || !has(self.kubernetes)",
			message: "kubernetes settings are only allowed for type kubernetes",
			fieldPath: ".kubernetes",
			reason: "FieldValueForbidden",
			check: (s) => s.type === "kubernetes" || !has(s, "kubernetes"),
		},
		{
			cel: "self.type != 'ssh' || !has(self.tls)",
			message: "tls does not apply to ssh connections; use ssh.hostKeys",
			fieldPath: ".tls",
			reason: "FieldValueForbidden",
			check: (s) => s.type !== "ssh" || !has(s, "tls"),
		},
		{
			cel: "!has(self.postgres) || self.postgres.credentialMode != 'dynamic' || has(self.credentialSecretRef)",
			message: "dynamic credentials need credentialSecretRef (a role that may create roles)",
			fieldPath: ".credentialSecretRef",
			reason: "FieldValueRequired",
			check: (s) => !has(s, "postgres") || s.postgres.credentialMode !== "dynamic" || has(s, "credentialSecretRef"),
		},
		{
			cel: "!has(self.ssh) || self.ssh.auth != 'key' || has(self.credentialSecretRef)",
			message: "ssh auth `key` needs credentialSecretRef holding the private key",
			fieldPath: ".credentialSecretRef",
			reason: "FieldValueRequired",
			check: (s) => !has(s, "ssh") || s.ssh.auth !== "key" || has(s, "credentialSecretRef"),
		},
	],
);
export type ConnectionSpec = Static<typeof ConnectionSpec>;

export const ConnectionStatus = Type.Object(
	{
		conditions: Type.Optional(Conditions()),
		observedGeneration: Type.Optional(ObservedGeneration()),
		activeGrants: Type.Optional(Type.Integer({ description: "Number of Active grants for this Connection.", minimum: 0 })),
	},
	{ description: "Observed state of the Connection, written by the operator (Ready: credential Secret found and usable)." },
);
export type ConnectionStatus = Static<typeof ConnectionStatus>;
