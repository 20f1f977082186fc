import { type Static, Type } from "@sinclair/typebox";
import { Conditions, Duration, ObservedGeneration, SecretKeyRef, Timestamp, withRules } from "./kit.ts";

/**
 * A branch name as `git check-ref-format --branch` accepts it (the characters the schema pattern
 * refuses aside): no `..` (a name climbing out of `refs/heads/` in the fetch's ref files), `//`, `@{`,
 * component starting with `.` or ending with `.lock`, leading `/` or `-`, trailing `/` or `.`; not `@`
 * or `HEAD`. The apiserver checks the same with CEL.
 */
export function isBranchName(name: string): boolean {
	if (name === "" || name === "@" || name === "HEAD") return false;
	if (/[\s\x00-\x1f\x7f~^:?*[\\]/.test(name)) return false;
	if (name.includes("..") || name.includes("//") || name.includes("@{") || name.includes("/.") || name.includes(".lock/")) return false;
	if (name.startsWith(".") || name.startsWith("/") || name.startsWith("-")) return false;
	return !(name.endsWith("/") || name.endsWith(".") || name.endsWith(".lock"));
}

export const GitSourceSpec = Type.Object(
	{
		url: Type.String({ description: "HTTP(S) URL of the grants repository.", minLength: 8, maxLength: 2048, pattern: "^https?://[^\\s]+$" }),
		branch: Type.Optional(
			withRules(
				Type.String({
					description: "Branch to follow, by its name (`main`; `refs/heads/main` is the same). Only a branch: a tag of the same name is never taken for it.",
					default: "main",
					minLength: 1,
					maxLength: 255,
					pattern: "^[^\\s\\x00-\\x1f\\x7f~^:?*\\[\\\\]+$",
				}),
				[
					{
						cel: "!self.contains('..') && !self.contains('//') && !self.contains('@{') && !self.contains('/.') && !self.startsWith('.') && !self.startsWith('/') && !self.startsWith('-') && !self.endsWith('/') && !self.endsWith('.') && !self.endsWith('.lock') && !self.contains('.lock/') && self != '@' && self != 'HEAD'",
						message: 'must be a branch name git accepts: no "..", "//", "@{", component starting with "." or ending with ".lock", no leading "/" or "-", no trailing "/" or "."',
						check: (self: string) => isBranchName(self),
					},
				],
			),
		),
		path: Type.Optional(Type.String({ description: "Directory inside the repository holding the manifests (`.` for the root).", default: ".", minLength: 1, maxLength: 1024 })),
		interval: Type.Optional(Duration("How often to poll; push webhooks sync at once.", { default: "1m" })),
		secretRef: Type.Optional(SecretKeyRef("Secret key holding the token used for HTTP basic auth to the repository.", "token")),
		webhookSecretRef: Type.Optional(SecretKeyRef("Secret key holding the shared secret that signs push webhooks (GitHub, Gitea).", "secret")),
		trustedKeys: Type.Optional(
			Type.Array(
				Type.Object(
					{
						name: Type.String({ description: "Label for the key (its owner).", minLength: 1, maxLength: 253 }),
						publicKey: Type.String({ description: "ASCII-armored OpenPGP public key.", minLength: 1, maxLength: 65536, pattern: "^-----BEGIN PGP PUBLIC KEY BLOCK-----" }),
					},
					{ description: "A trusted commit-signing key." },
				),
				{
					description: "When set, only commits signed by one of these keys are synced; an unsigned or untrusted head keeps the last good commit.",
					minItems: 1,
					maxItems: 32,
					"x-kubernetes-list-type": "map",
					"x-kubernetes-list-map-keys": ["name"],
				},
			),
		),
		allowForcePush: Type.Optional(
			Type.Boolean({
				description:
					"Accept a branch head that does not descend from the last synced commit (force push, rollback to an older commit). Off by default: such a head is refused and the last synced commit stays in force.",
				default: false,
			}),
		),
		prune: Type.Optional(Type.Boolean({ description: "Delete resources that were removed from git.", default: true })),
		suspend: Type.Optional(Type.Boolean({ description: "Stop syncing (resources stay as they are).", default: false })),
	},
	{ description: "A git repository the operator syncs resources from." },
);
export type GitSourceSpec = Static<typeof GitSourceSpec>;

export const GitSourceStatus = Type.Object(
	{
		lastSyncedCommit: Type.Optional(Type.String({ description: "SHA of the last commit applied.", maxLength: 64 })),
		lastSyncTime: Type.Optional(Timestamp("When the last sync finished.")),
		lastAttemptedCommit: Type.Optional(Type.String({ description: "SHA of the last commit the operator tried (may be rejected).", maxLength: 64 })),
		resources: Type.Optional(Type.Integer({ description: "Resources applied from the last synced commit.", minimum: 0 })),
		errors: Type.Optional(
			Type.Array(
				Type.Object(
					{
						path: Type.String({ description: "File path in the repository.", maxLength: 4096 }),
						line: Type.Optional(Type.Integer({ description: "1-based line of the problem.", minimum: 1 })),
						column: Type.Optional(Type.Integer({ description: "1-based column of the problem.", minimum: 1 })),
						message: Type.String({ description: "What is wrong.", maxLength: 4096 }),
					},
					{ description: "A file that could not be applied." },
				),
				{ description: "Files skipped in the last sync; the rest still applied.", maxItems: 256 },
			),
		),
		conditions: Type.Optional(Conditions()),
		observedGeneration: Type.Optional(ObservedGeneration()),
	},
	{ description: "Sync state, written by the operator." },
);
export type GitSourceStatus = Static<typeof GitSourceStatus>;
