/**
 * `drawbridge dev`: Drawbridge standalone, no Kubernetes. The same pieces as in a cluster:
 *
 *   local git repo ──(isomorphic-git, polled)──▶ operator/gitsync loader ──▶ operator/config compile
 *        │                                                                       │ bundle.json
 *        └─ grants' dynamic roles (operator/credentials) ──▶ embedded PostgreSQL  ▼
 *   agent ──token──▶ gateway (startGateway: PostgreSQL/SSH listeners, admin) ──▶ embedded PostgreSQL
 *                      └─ recordings in <state>/recordings (same layout as MinIO), local approvals
 *
 * What differs from a cluster, on purpose:
 * - Every postgres Connection is pointed at the embedded cluster (a database per Connection, seeded
 *   with demo data) and reached with its superuser for static connections; `dynamic` connections
 *   get a real per-grant role with VALID UNTIL, like the operator makes.
 * - Tokens come from a local issuer whose keys live in <state>/issuer: `drawbridge dev token`.
 * - A `duration` grant counts from the later of its approving commit and the moment dev mode first
 *   saw that commit (so an old clone still shows live grants); recorded in <state>/first-seen.json.
 */
import { spawnSync } from "node:child_process";
import { type AddressInfo, createServer } from "node:net";
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { parseArgs } from "node:util";
import * as fs from "node:fs";
import git from "isomorphic-git";
import pg from "pg";
import type { AccessGrant, Connection, GuardrailPolicy, MaskingPolicy } from "../crds/index.ts";
import { grantSubjectsDigest, sealBundle } from "../gateway/config/canonical.ts";
import { FileHighWater } from "../gateway/config/highwater.ts";
import { BUNDLE_API_VERSION, type BackendCredential, type ConfigBundle, type IssuerConfig } from "../gateway/config/bundle.ts";
import { startGateway, type RunningGateway } from "../gateway/main.ts";
import type { GatewayOptions } from "../gateway/options.ts";
import { compileBundleContent, contentHash } from "../operator/config/compile.ts";
import { generateSigningKey, JWT_ALGORITHM, jwksOf, type KeyRing, mintGrantToken, parseKeyRing, serializeKeyRing } from "../operator/credentials/jwt.ts";
import { dropRole, ensureRole, listManagedRoles } from "../operator/credentials/postgres-roles.ts";
import { loadSnapshot } from "../operator/gitsync/load.ts";
import { readSnapshot } from "../operator/gitsync/repo.ts";
import { ANNOTATIONS } from "../operator/reconcile/labels.ts";
import { decideGrant } from "../operator/reconcile/desired/accessgrant.ts";
import { desiredObject } from "../operator/reconcile/desired/gitobject.ts";
import { ensureDatabase, type EmbeddedPostgres, startEmbeddedPostgres } from "./dev/postgres.ts";
import { shopSeedSql, ticketsRestoreSql, ticketsSeedSql } from "./dev/seed.ts";
import { ensureDevTls, type DevTls } from "./dev/tls.ts";
import { SignJWT } from "jose";
import { createPrivateKey, randomBytes } from "node:crypto";

export const DEV_ISSUER = "https://drawbridge.dev.local/operator";
export const DEV_USERS_ISSUER = "https://drawbridge.dev.local/users";
export const DEV_AUDIENCE = "drawbridge";

export interface DevOptions {
	repo: string;
	stateDir: string;
	postgresPort: number;
	upstreamPort: number;
	adminPort: number;
	/** SSH listener (0 = off). */
	sshPort: number;
	/** Kubernetes API listener (0 = off). */
	kubePort: number;
	pollIntervalMs: number;
	/** Print progress lines (to stderr). */
	progress: (line: string) => void;
	logLevel: GatewayOptions["logLevel"];
	/** Bind the gateway's listeners to free ports chosen at start (tests; see `ports`). */
	anyPorts?: boolean;
	/** Recordings into MinIO/S3 instead of <state>/recordings. */
	s3?: { endpoint: string; bucket: string; accessKey: string; secretKey: string };
}

export const DEV_HELP = `Usage: drawbridge dev [options]
       drawbridge dev token (--grant NS/NAME | --user NAME [--group G]...) [--state DIR] [--ttl 1h]

Runs Drawbridge standalone: reads grants from a local git repository (committed state at HEAD,
picked up live on every new commit), compiles the gateway bundle, runs the gateway with an embedded
PostgreSQL as the target of every postgres Connection, and stores recordings under the state
directory in the same layout as MinIO.

Options:
  --repo DIR               grants directory inside a git repository (default: examples)
  --state DIR              state directory (default: .drawbridge-dev)
  --postgres-port N        gateway PostgreSQL listener (default 15432)
  --upstream-port N        embedded PostgreSQL (default 55432)
  --admin-port N           admin server: approvals API, viewer, metrics (default 18080)
  --ssh-port N             gateway SSH listener, 0 = off (default 12222)
  --kube-port N            gateway Kubernetes API listener, 0 = off (default 16443)
  --any-ports              bind the gateway's listeners to free ports (printed at start)
  --s3-endpoint URL        store recordings in MinIO/S3 (with AWS_ACCESS_KEY_ID and
  --s3-bucket NAME           AWS_SECRET_ACCESS_KEY; default bucket drawbridge-recordings)
  --poll-interval-ms N     how often HEAD is checked for new commits (default 1000)
  --log-level LEVEL        gateway log level (default warn)
  -h, --help               show this help

token:
  --grant NS/NAME          a token bound to one grant (what an agent presents)
  --user NAME --group G    a human's token from the dev user issuer (approvers, auditors)
  --ttl DURATION           token lifetime (default 1h, at most 24h; never past the grant's end)
`;

interface FirstSeen {
	[commit: string]: string;
}

export class DevEnvironment {
	gateway: RunningGateway | undefined;
	pg: EmbeddedPostgres | undefined;
	tls: DevTls | undefined;
	ring!: KeyRing;
	usersRing!: KeyRing;
	bundle: ConfigBundle | undefined;
	lastCommit: string | undefined;
	problems: string[] = [];
	/** The gateway's bound ports once started (differ from the options with `anyPorts`). */
	ports = { postgres: 0, ssh: 0, kube: 0, admin: 0 };
	#timer: NodeJS.Timeout | undefined;
	#version = 0;
	#lastContentHash = "";
	#maskingKey = "";
	#busy = false;
	#stopped = false;
	#inflight: Promise<boolean> | undefined;
	#grants: AccessGrant[] = [];
	#connections: Connection[] = [];
	#maskingPolicies: MaskingPolicy[] = [];
	#guardrailPolicies: GuardrailPolicy[] = [];

	constructor(readonly options: DevOptions) {}

	get bundleFile(): string {
		return join(this.options.stateDir, "bundle.json");
	}

	get bundleStateFile(): string {
		return join(this.options.stateDir, "bundle-state.json");
	}

	get recordingsDir(): string {
		return join(this.options.stateDir, "recordings");
	}

	async start(): Promise<void> {
		const { stateDir, progress } = this.options;
		mkdirSync(stateDir, { recursive: true, mode: 0o700 });
		this.ring = loadOrCreateRing(join(stateDir, "issuer", "operator-keys.json"));
		this.usersRing = loadOrCreateRing(join(stateDir, "issuer", "user-keys.json"));
		this.#maskingKey = loadOrCreateSecret(join(stateDir, "masking-key"));
		// Number bundles above the newest the dev gateway accepted before (its high-water mark), so a
		// clock set back between two runs never makes it refuse its own bundle.
		this.#version = (await new FileHighWater(this.bundleStateFile).read())?.version ?? 0;
		this.tls = ensureDevTls(stateDir);
		this.pg = await startEmbeddedPostgres(stateDir, this.options.upstreamPort, progress);
		progress(`reading grants from ${this.options.repo}`);
		await this.sync();
		if (!this.bundle) throw new Error("no bundle could be compiled from the repository");
		progress("starting the gateway");
		// With anyPorts, listeners bind port 0; the admin port (it appears in approval hints before the
		// admin server listens) is asked from the kernel right now, not seconds earlier.
		const any = this.options.anyPorts === true;
		const want = {
			postgres: any ? 0 : this.options.postgresPort,
			ssh: this.options.sshPort === 0 ? 0 : any ? 0 : this.options.sshPort,
			kube: this.options.kubePort === 0 ? 0 : any ? 0 : this.options.kubePort,
			admin: any ? await portNow() : this.options.adminPort,
		};
		const sshOn = this.options.sshPort !== 0;
		const kubeOn = this.options.kubePort !== 0;
		this.gateway = await startGateway({
			bundle: { kind: "file", path: this.bundleFile },
			bundleState: { kind: "file", path: this.bundleStateFile },
			postgresListen: { host: "127.0.0.1", port: want.postgres },
			...(sshOn ? { sshListen: { host: "127.0.0.1", port: want.ssh }, sshHostKeyFile: ensureHostKey(stateDir) } : {}),
			...(kubeOn ? { kubeListen: { host: "127.0.0.1", port: want.kube } } : {}),
			adminListen: { host: "127.0.0.1", port: want.admin },
			tlsCertFile: this.tls.certFile,
			tlsKeyFile: this.tls.keyFile,
			allowInsecurePassword: false,
			recordings: this.options.s3
				? { kind: "s3", ...this.options.s3, region: "us-east-1" }
				: { kind: "dir", path: this.recordingsDir },
			spoolDir: join(stateDir, "spool"),
			spoolMaxBytes: 256 * 1024 * 1024,
			spoolFullPolicy: "failClosed",
			approvals: { kind: "local", dir: join(stateDir, "approvals") },
			publicUrl: `http://127.0.0.1:${want.admin}`,
			auditorGroup: "auditors",
			shutdownGraceMs: 2000,
			instance: "dev",
			logLevel: this.options.logLevel,
		});
		const a = this.gateway.addresses;
		this.ports = { postgres: a.postgres ?? 0, ssh: a.ssh ?? 0, kube: a.kube ?? 0, admin: a.admin };
		this.#timer = setInterval(() => void this.sync().catch((err) => progress(`sync failed: ${String(err)}`)), this.options.pollIntervalMs);
		this.#timer.unref();
	}

	/** Read HEAD, load and validate manifests, reconcile roles, compile and publish the bundle. */
	async sync(): Promise<boolean> {
		if (this.#busy || this.#stopped) return false;
		this.#busy = true;
		this.#inflight = this.#sync();
		try {
			return await this.#inflight;
		} finally {
			this.#busy = false;
			this.#inflight = undefined;
		}
	}

	async #sync(): Promise<boolean> {
		const { root, path, gitdir, commit, branch } = await readHead(this.options.repo);
		const now = new Date();
		if (commit !== this.lastCommit) {
			const snap = await readSnapshot(gitdir, commit, { path, repository: `file://${root}`, branch });
			const loaded = loadSnapshot(snap, "default", { namespaces: "any" }); // one local repository, no tenants
			// A GitSource configures the operator in a cluster; dev mode is its own git source.
			this.problems = loaded.problems.filter((p) => !/kind GitSource cannot be synced/.test(p.message)).map((p) => `${p.path}${p.line ? `:${p.line}` : ""}: ${p.message}`);
			for (const p of this.problems) this.options.progress(`problem: ${p}`);
			const firstSeen = this.#firstSeen(loaded.resources.map((r) => r.origin.sha), now);
			// The same object the operator would server-side apply (annotations carry the approving
			// commit), with the dev-mode start of `duration` grants (see the header).
			const withOrigin = loaded.resources.map((r) => {
				const o = desiredObject(r, { namespace: "dev", name: "local" }) as { metadata: { annotations: Record<string, string> } };
				const seen = firstSeen[r.origin.sha] ?? now.toISOString();
				if (Date.parse(seen) > Date.parse(r.origin.committedAt)) o.metadata.annotations[ANNOTATIONS.committedAt] = seen;
				return { kind: r.kind, object: o };
			});
			this.#connections = withOrigin.filter((r) => r.kind === "Connection").map((r) => r.object as unknown as Connection);
			this.#grants = withOrigin.filter((r) => r.kind === "AccessGrant").map((r) => r.object as unknown as AccessGrant);
			this.#maskingPolicies = withOrigin.filter((r) => r.kind === "MaskingPolicy").map((r) => r.object) as never;
			this.#guardrailPolicies = withOrigin.filter((r) => r.kind === "GuardrailPolicy").map((r) => r.object) as never;
			this.lastCommit = commit;
		}
		const { connectionCredentials, grantCredentials } = await this.#reconcileCredentials(now);
		const issuers: IssuerConfig[] = [
			{ name: "dev-operator", kind: "drawbridge", issuer: DEV_ISSUER, audiences: [DEV_AUDIENCE], jwks: jwksOf(this.ring), algorithms: [JWT_ALGORITHM] },
			{
				name: "dev-users",
				kind: "oidc",
				issuer: DEV_USERS_ISSUER,
				audiences: [DEV_AUDIENCE],
				jwks: jwksOf(this.usersRing),
				algorithms: [JWT_ALGORITHM],
				usernameClaim: "sub",
				groupsClaim: "groups",
			},
		];
		const content = compileBundleContent({
			connections: this.#devConnections(),
			grants: this.#grants,
			maskingPolicies: this.#maskingPolicies,
			guardrailPolicies: this.#guardrailPolicies,
			issuers,
			connectionCredentials,
			grantCredentials,
			maskingKey: this.#maskingKey,
			now,
		});
		const hash = contentHash(content);
		if (hash === this.#lastContentHash) {
			await this.#dropUnwantedRoles();
			return false;
		}
		this.#lastContentHash = hash;
		this.#version = Math.max(this.#version + 1, Math.floor(now.getTime() / 1000));
		const bundle = sealBundle({ ...content, version: this.#version, generatedAt: now.toISOString() });
		const tmp = `${this.bundleFile}.tmp`;
		writeFileSync(tmp, JSON.stringify(bundle), { mode: 0o600 });
		renameSync(tmp, this.bundleFile);
		this.bundle = bundle;
		// The gateway learns first (its sessions end with a message naming the grant), then roles of
		// grants that ended are dropped, as the operator orders it.
		this.gateway?.store.update(bundle);
		await this.#dropUnwantedRoles();
		if (bundle.apiVersion !== BUNDLE_API_VERSION) throw new TypeError("unexpected bundle version");
		return true;
	}

	#unwantedRoles: string[] = [];

	async #dropUnwantedRoles(): Promise<void> {
		const pgh = this.pg;
		if (!pgh || this.#unwantedRoles.length === 0) return;
		const client = new pg.Client({ host: pgh.host, port: pgh.port, user: pgh.superuser, password: pgh.password, database: "postgres" });
		client.on("error", () => {});
		await client.connect();
		try {
			const passwords = loadRolePasswords(this.options.stateDir);
			for (const role of this.#unwantedRoles) {
				await dropRole(client, role);
				delete passwords[role];
			}
			saveRolePasswords(this.options.stateDir, passwords);
			this.#unwantedRoles = [];
		} finally {
			await client.end();
		}
	}

	/**
	 * Puts back the demo tickets of a Connection's database that an earlier quickstart's approved
	 * cleanup deleted, so that the story runs the same every time; false when the Connection is not a
	 * demo tickets database here.
	 */
	restoreDemoTickets(connection: string): boolean {
		const c = this.#connections.find((x) => x.metadata.name === connection && x.spec.type === "postgres");
		if (!c || !this.pg) return false;
		const database = (c.spec as { postgres?: { database?: string } }).postgres?.database ?? c.metadata.name;
		if (!/ticket|support/i.test(database)) return false;
		this.pg.psql(database, ticketsRestoreSql());
		return true;
	}

	/** Connections as declared, but every postgres one pointed at the embedded cluster. */
	#devConnections(): Connection[] {
		return this.#connections.map((c) => {
			if (c.spec.type !== "postgres") return c;
			const copy = structuredClone(c) as Connection;
			const spec = copy.spec as unknown as Record<string, unknown>;
			spec.host = "127.0.0.1";
			spec.port = this.options.upstreamPort;
			spec.tls = { mode: "disable" };
			return copy;
		});
	}

	#firstSeen(commits: string[], now: Date): FirstSeen {
		const file = join(this.options.stateDir, "first-seen.json");
		const seen: FirstSeen = existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as FirstSeen) : {};
		let changed = false;
		for (const c of commits) {
			if (!seen[c]) {
				seen[c] = now.toISOString();
				changed = true;
			}
		}
		if (changed) writeFileSync(file, JSON.stringify(seen, null, 2));
		return seen;
	}

	/** Databases per postgres Connection, and the operator's per-grant dynamic roles. */
	async #reconcileCredentials(now: Date): Promise<{
		connectionCredentials: Record<string, BackendCredential>;
		grantCredentials: Record<string, BackendCredential>;
	}> {
		const pgh = this.pg;
		if (!pgh) throw new TypeError("embedded PostgreSQL not started");
		const connectionCredentials: Record<string, BackendCredential> = {};
		const grantCredentials: Record<string, BackendCredential> = {};
		const byKey = new Map<string, Connection>();
		for (const c of this.#connections) {
			const key = `${c.metadata.namespace ?? "default"}/${c.metadata.name}`;
			byKey.set(key, c);
			if (c.spec.type !== "postgres") continue;
			const database = (c.spec as { postgres?: { database?: string } }).postgres?.database ?? c.metadata.name;
			if (ensureDatabase(pgh, database, seedFor(database))) this.options.progress(`created demo database "${database}" for connection ${c.metadata.name}`);
			connectionCredentials[key] = { type: "password", username: pgh.superuser, password: pgh.password };
		}
		const wanted = new Map<string, { grant: AccessGrant; connection: Connection; expiresAt: Date; database: string; access: "read-only" | "read-write" | "admin" }>();
		for (const g of this.#grants) {
			const ns = g.metadata.namespace ?? "default";
			const connKey = `${ns}/${g.spec.connection}`;
			const conn = byKey.get(connKey);
			const decision = decideGrant(g, conn, now);
			const mode = (conn?.spec as { postgres?: { credentialMode?: string; database?: string } } | undefined)?.postgres;
			if (!conn || decision.phase !== "Active" || mode?.credentialMode !== "dynamic" || !decision.window || !decision.pgRole) continue;
			wanted.set(decision.pgRole.role, {
				grant: g,
				connection: conn,
				expiresAt: decision.window.expiresAt,
				database: mode.database ?? conn.metadata.name,
				access: (g.spec as { postgres?: { access?: "read-only" | "read-write" | "admin" } }).postgres?.access ?? "read-only",
			});
		}
		const client = new pg.Client({ host: pgh.host, port: pgh.port, user: pgh.superuser, password: pgh.password, database: "postgres" });
		client.on("error", () => {});
		await client.connect();
		try {
			const passwords = loadRolePasswords(this.options.stateDir);
			for (const [role, w] of wanted) {
				const password = passwords[role] ?? randomBytes(24).toString("base64url");
				passwords[role] = password;
				const dbClient = new pg.Client({ host: pgh.host, port: pgh.port, user: pgh.superuser, password: pgh.password, database: w.database });
				dbClient.on("error", () => {});
				await dbClient.connect();
				try {
					await ensureRole(dbClient, { role, password, validUntil: w.expiresAt, database: w.database, schemas: ["public"], access: w.access });
				} finally {
					await dbClient.end();
				}
				grantCredentials[`${w.grant.metadata.namespace ?? "default"}/${w.grant.metadata.name}`] = { type: "password", username: role, password };
			}
			saveRolePasswords(this.options.stateDir, passwords);
			this.#unwantedRoles = (await listManagedRoles(client)).filter((role) => !wanted.has(role));
		} finally {
			await client.end();
		}
		return { connectionCredentials, grantCredentials };
	}

	/** A token bound to one grant, as the operator would deliver it. */
	async grantToken(grantKey: string, ttlMs = 3_600_000): Promise<string> {
		const grant = this.bundle?.grants.find((g) => g.key === grantKey);
		if (!grant) throw new Error(`no grant ${grantKey} in the current bundle (grants: ${this.bundle?.grants.map((g) => g.key).join(", ")})`);
		const subject = grant.subjects[0];
		const name =
			subject?.kind === "ServiceAccount" ? `system:serviceaccount:${subject.namespace}:${subject.name}` : subject && "name" in subject ? subject.name : grantKey;
		const minted = await mintGrantToken(this.ring, {
			issuer: DEV_ISSUER,
			audience: [DEV_AUDIENCE],
			subject: name,
			grant: grantKey,
			grantSubjects: grantSubjectsDigest(grant.subjects),
			grantExpiresAt: new Date(grant.expiresAt),
			now: new Date(),
			ttlMs,
		});
		return minted.token;
	}

	/** A human's token from the dev user issuer (approvers, auditors). */
	async userToken(user: string, groups: string[], ttlMs = 3_600_000): Promise<string> {
		return mintUserToken(this.usersRing, user, groups, ttlMs);
	}

	async stop(): Promise<void> {
		this.#stopped = true;
		if (this.#timer) clearInterval(this.#timer);
		await this.#inflight?.catch(() => false);
		await this.gateway?.shutdown("dev stopped");
		await this.pg?.stop();
	}
}

export async function mintUserToken(ring: KeyRing, user: string, groups: string[], ttlMs: number): Promise<string> {
	const signer = ring.keys[0];
	if (!signer) throw new Error("empty key ring");
	const now = Math.floor(Date.now() / 1000);
	return new SignJWT({ groups })
		.setProtectedHeader({ alg: JWT_ALGORITHM, kid: signer.kid, typ: "JWT" })
		.setIssuer(DEV_USERS_ISSUER)
		.setAudience(DEV_AUDIENCE)
		.setSubject(user)
		.setIssuedAt(now)
		.setExpirationTime(now + Math.floor(ttlMs / 1000))
		.sign(createPrivateKey(signer.privateKeyPem));
}

/** A port the kernel says is free now. */
function portNow(): Promise<number> {
	return new Promise((resolvePort, reject) => {
		const srv = createServer();
		srv.once("error", reject);
		srv.listen(0, "127.0.0.1", () => {
			const { port } = srv.address() as AddressInfo;
			srv.close(() => resolvePort(port));
		});
	});
}

/** The gateway's SSH host key, made once with ssh-keygen and kept in the state directory. */
function ensureHostKey(stateDir: string): string {
	const file = join(stateDir, "ssh_host_ed25519_key");
	if (!existsSync(file)) {
		const r = spawnSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "drawbridge-dev", "-f", file], { encoding: "utf8" });
		if (r.status !== 0) throw new Error(`ssh-keygen failed: ${r.stderr}`);
	}
	return file;
}

function seedFor(database: string): string {
	if (/ticket|support/i.test(database)) return ticketsSeedSql();
	return shopSeedSql();
}

export function loadOrCreateRing(file: string): KeyRing {
	if (existsSync(file)) return parseKeyRing(readFileSync(file, "utf8"));
	mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
	const ring: KeyRing = { keys: [generateSigningKey(new Date())] };
	writeFileSync(file, serializeKeyRing(ring), { mode: 0o600 });
	return ring;
}

function loadOrCreateSecret(file: string): string {
	if (existsSync(file)) return readFileSync(file, "utf8").trim();
	const key = randomBytes(32).toString("base64");
	writeFileSync(file, key, { mode: 0o600 });
	return key;
}

function loadRolePasswords(stateDir: string): Record<string, string> {
	const file = join(stateDir, "role-passwords.json");
	return existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as Record<string, string>) : {};
}

function saveRolePasswords(stateDir: string, passwords: Record<string, string>): void {
	writeFileSync(join(stateDir, "role-passwords.json"), JSON.stringify(passwords, null, 2), { mode: 0o600 });
}

/** The git repository holding `dir`, and `dir`'s path inside it. */
export function findRepo(dir: string): { root: string; path: string } {
	let cur = resolve(dir);
	const start = cur;
	for (;;) {
		if (existsSync(join(cur, ".git"))) return { root: cur, path: relative(cur, start) };
		const up = dirname(cur);
		if (up === cur) throw new Error(`${dir} is not inside a git repository (dev mode reads committed grants: git init && git commit)`);
		cur = up;
	}
}

/**
 * Where git keeps the HEAD of the checkout at `root`, and where it keeps refs and objects. A clone has
 * one `.git` directory for both. A `git worktree` checkout has a `.git` file (`gitdir: <main>/.git/
 * worktrees/<name>`) naming a directory that holds its own HEAD and a `commondir` file naming the
 * shared directory with the branches and objects; a submodule's `.git` file names a whole git
 * directory (no `commondir`). isomorphic-git follows the `.git` file but not `commondir`: in a
 * worktree it read the worktree's HEAD, then looked for its branch in the wrong directory.
 */
export function gitDirs(root: string): { headDir: string; commonDir: string } {
	const dotGit = join(root, ".git");
	if (statSync(dotGit).isDirectory()) return { headDir: dotGit, commonDir: dotGit };
	const m = /^gitdir: (.+)$/m.exec(readFileSync(dotGit, "utf8"));
	if (!m) throw new Error(`${dotGit} is neither a git directory nor a "gitdir:" file`);
	const headDir = resolve(root, m[1]!.trim());
	const commonFile = join(headDir, "commondir");
	const commonDir = existsSync(commonFile) ? resolve(headDir, readFileSync(commonFile, "utf8").trim()) : headDir;
	return { headDir, commonDir };
}

/**
 * The committed state dev mode reads for `dir`: its repository's root, `dir`'s path in it, the git
 * directory holding the objects, and HEAD's commit and branch ("HEAD" when detached); in a clone, a
 * `git worktree` checkout or a submodule alike.
 */
export async function readHead(dir: string): Promise<{ root: string; path: string; gitdir: string; commit: string; branch: string }> {
	const { root, path } = findRepo(dir);
	const { headDir, commonDir } = gitDirs(root);
	const head = readFileSync(join(headDir, "HEAD"), "utf8").trim();
	const sym = /^ref: (.+)$/.exec(head);
	if (!sym) {
		if (!/^[0-9a-f]{40}([0-9a-f]{24})?$/.test(head)) throw new Error(`${join(headDir, "HEAD")}: neither a ref nor a commit id`);
		return { root, path, gitdir: commonDir, commit: head, branch: "HEAD" };
	}
	// Branches live in the common directory (loose or packed); only HEAD is per worktree.
	const ref = sym[1]!;
	const commit = await git.resolveRef({ fs, gitdir: commonDir, ref });
	return { root, path, gitdir: commonDir, commit, branch: ref.replace(/^refs\/heads\//, "") };
}

export function parseDevOptions(argv: string[]): DevOptions | "help" {
	const { values } = parseArgs({
		args: argv,
		options: {
			repo: { type: "string" },
			state: { type: "string" },
			"postgres-port": { type: "string" },
			"upstream-port": { type: "string" },
			"admin-port": { type: "string" },
			"ssh-port": { type: "string" },
			"kube-port": { type: "string" },
			"any-ports": { type: "boolean" },
			"s3-endpoint": { type: "string" },
			"s3-bucket": { type: "string" },
			"poll-interval-ms": { type: "string" },
			"log-level": { type: "string" },
			help: { type: "boolean", short: "h" },
		},
		strict: true,
	});
	if (values.help) return "help";
	const int = (v: string | undefined, d: number, flag: string) => {
		if (v === undefined) return d;
		const n = Number(v);
		if (!Number.isSafeInteger(n) || n < 0 || n > 65535 * 1000) throw new Error(`--${flag}: expected a number, got ${v}`);
		return n;
	};
	return {
		repo: values.repo ?? "examples",
		stateDir: resolve(values.state ?? ".drawbridge-dev"),
		postgresPort: int(values["postgres-port"], 15432, "postgres-port"),
		upstreamPort: int(values["upstream-port"], 55432, "upstream-port"),
		adminPort: int(values["admin-port"], 18080, "admin-port"),
		sshPort: int(values["ssh-port"], 12222, "ssh-port"),
		kubePort: int(values["kube-port"], 16443, "kube-port"),
		anyPorts: values["any-ports"] === true,
		pollIntervalMs: int(values["poll-interval-ms"], 1000, "poll-interval-ms"),
		progress: (line) => process.stderr.write(`[drawbridge dev] ${line}\n`),
		logLevel: (values["log-level"] as GatewayOptions["logLevel"] | undefined) ?? "warn",
		...(values["s3-endpoint"] ? { s3: s3Options(values["s3-endpoint"], values["s3-bucket"] ?? "drawbridge-recordings") } : {}),
	};
}

function s3Options(endpoint: string, bucket: string): NonNullable<DevOptions["s3"]> {
	const accessKey = process.env.AWS_ACCESS_KEY_ID;
	const secretKey = process.env.AWS_SECRET_ACCESS_KEY;
	if (!accessKey || !secretKey) throw new Error("--s3-endpoint needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
	return { endpoint, bucket, accessKey, secretKey };
}

async function tokenCommand(argv: string[]): Promise<number> {
	const { values } = parseArgs({
		args: argv,
		options: {
			grant: { type: "string" },
			user: { type: "string" },
			group: { type: "string", multiple: true },
			state: { type: "string" },
			ttl: { type: "string" },
			help: { type: "boolean", short: "h" },
		},
		strict: true,
	});
	if (values.help) {
		process.stdout.write(DEV_HELP);
		return 0;
	}
	const stateDir = resolve(values.state ?? ".drawbridge-dev");
	const { parseDuration } = await import("../crds/index.ts");
	const ttlMs = values.ttl ? parseDuration(values.ttl) : 3_600_000;
	if (ttlMs === undefined) throw new Error(`--ttl: not a duration: ${values.ttl}`);
	// The dev gateway's issuers keep the default lifetime cap: a longer token would only be refused later.
	const { DEFAULT_MAX_TOKEN_LIFETIME_SEC } = await import("../gateway/identity/verify.ts");
	if (ttlMs > DEFAULT_MAX_TOKEN_LIFETIME_SEC * 1000) {
		process.stderr.write(
			`drawbridge dev token: --ttl ${values.ttl} is longer than the dev gateway accepts: its issuers take tokens valid for at most ${DEFAULT_MAX_TOKEN_LIFETIME_SEC / 3600} h (maxTokenLifetimeSec)\n`,
		);
		return 2;
	}
	if (values.user) {
		const ring = loadOrCreateRing(join(stateDir, "issuer", "user-keys.json"));
		process.stdout.write(`${await mintUserToken(ring, values.user, values.group ?? [], ttlMs)}\n`);
		return 0;
	}
	if (!values.grant) {
		process.stderr.write("drawbridge dev token: --grant NS/NAME or --user NAME is required\n");
		return 2;
	}
	const bundleFile = join(stateDir, "bundle.json");
	if (!existsSync(bundleFile)) {
		process.stderr.write(`drawbridge dev token: ${bundleFile} not found: is \`drawbridge dev\` running with --state ${stateDir}?\n`);
		return 1;
	}
	const env = new DevEnvironment({ repo: ".", stateDir, postgresPort: 0, upstreamPort: 0, adminPort: 0, sshPort: 0, kubePort: 0, pollIntervalMs: 0, progress: () => {}, logLevel: "warn" });
	env.ring = loadOrCreateRing(join(stateDir, "issuer", "operator-keys.json"));
	env.bundle = JSON.parse(readFileSync(bundleFile, "utf8")) as ConfigBundle;
	process.stdout.write(`${await env.grantToken(values.grant, ttlMs)}\n`);
	return 0;
}

export function connectionHints(env: DevEnvironment): string[] {
	const o = env.options;
	const port = env.ports.postgres;
	const ca = env.tls?.caFile ?? "";
	const lines: string[] = [];
	for (const g of env.bundle?.grants ?? []) {
		const conn = env.bundle?.connections.find((c) => c.name === g.connection);
		if (conn?.type !== "postgres") continue;
		if (Date.parse(g.expiresAt) <= Date.now() || Date.parse(g.notBefore) > Date.now()) continue;
		lines.push(
			`  psql "host=127.0.0.1 port=${port} dbname=${conn.name} user=agent sslmode=verify-full sslrootcert=${ca} password=$(npm run -s drawbridge -- dev token --state ${o.stateDir} --grant ${g.key})"`,
		);
	}
	return lines;
}

export async function main(argv: string[]): Promise<number> {
	if (argv[0] === "token") return tokenCommand(argv.slice(1));
	const options = parseDevOptions(argv);
	if (options === "help") {
		process.stdout.write(DEV_HELP);
		return 0;
	}
	const env = new DevEnvironment(options);
	await env.start();
	process.stdout.write(
		[
			`Drawbridge dev is running (bundle version ${env.bundle?.version}, commit ${env.lastCommit?.slice(0, 12)}).`,
			`  gateway: PostgreSQL 127.0.0.1:${env.ports.postgres}${env.ports.ssh ? `, SSH 127.0.0.1:${env.ports.ssh}` : ""}${env.ports.kube ? `, Kubernetes https://127.0.0.1:${env.ports.kube}` : ""}   admin: http://127.0.0.1:${env.ports.admin}`,
			`  recordings: ${env.recordingsDir}`,
			"Connect as an agent:",
			...connectionHints(env),
			"Commit changes to the grants repository and they apply within a second. Ctrl-C stops.",
			"",
		].join("\n"),
	);
	return new Promise<number>((resolveExit) => {
		const stop = () => void env.stop().then(() => resolveExit(0));
		process.once("SIGINT", stop);
		process.once("SIGTERM", stop);
	});
}
