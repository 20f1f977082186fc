// `drawbridge dev` is GitOps in miniature: a commit adding a grant makes it usable within seconds
// (with the approving pull request recorded), a commit removing it ends the live session and
// refuses new ones; recordings go to a real MinIO when one is configured.
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { promisify } from "node:util";
import { request as httpsRequest } from "node:https";
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import pg from "pg";
import { DevEnvironment } from "../../cli/dev.ts";
import { listSessions, loadStoreKeys } from "../../gateway/recording/catalog.ts";
import { S3Store, parseEndpoint } from "../../gateway/recording/store.ts";
import { verifySession } from "../../gateway/recording/verify.ts";
import { freePort, makeTempDir, type MinioHandle, printLogsOnFailure, startMinio } from "../env/index.ts";

const execFileAsync = promisify(execFile);
const ROOT = join(import.meta.dirname, "..", "..");
let minio: MinioHandle;
let repo: string;
let env: DevEnvironment;
const progress: string[] = [];

function git(...args: string[]): string {
	return execFileSync("git", ["-C", repo, "-c", "user.name=Priya", "-c", "user.email=priya@example.com", ...args], { encoding: "utf8" }).trim();
}

const GRANT = `apiVersion: access.drawbridge.dev/v1alpha1
kind: AccessGrant
metadata:
  name: deployer-ro
spec:
  connection: orders-prod
  subjects:
    - kind: ServiceAccount
      namespace: ci
      name: deployer
  postgres:
    access: read-only
  duration: 2h
  ticket: OPS-142
  justification: deploy checks
  approvers:
    subjects:
      - kind: Group
        name: data-team
`;

async function waitFor<T>(what: string, fn: () => T | undefined | Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
	const deadline = Date.now() + timeoutMs;
	for (;;) {
		const v = await fn();
		if (v !== undefined) return v;
		if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${progress.join("\n")}`);
		await new Promise((r) => setTimeout(r, 100));
	}
}

before(async () => {
	minio = await startMinio();
	repo = makeTempDir("dev-grants-repo");
	mkdirSync(join(repo, "grants"), { recursive: true });
	copyFileSync(join(ROOT, "examples/connections/orders-prod.yaml"), join(repo, "grants", "orders-prod.yaml"));
	copyFileSync(join(ROOT, "examples/policies/masking-customers.yaml"), join(repo, "grants", "masking.yaml"));
	git("init", "-q", "-b", "main");
	git("add", ".");
	git("commit", "-q", "-m", "connections and policies");
	const state = makeTempDir("dev-state");
	env = new DevEnvironment({
		repo: join(repo, "grants"),
		stateDir: state,
		postgresPort: 15432,
		upstreamPort: await freePort(),
		adminPort: 18080,
		sshPort: 12222,
		kubePort: 16443,
		anyPorts: true,
		pollIntervalMs: 200,
		progress: (l) => progress.push(l),
		logLevel: "warn",
		s3: { endpoint: minio.endpoint, bucket: "dev-recordings", accessKey: minio.accessKey, secretKey: minio.secretKey },
	});
	await env.start();
});

after(async () => {
	await env?.stop();
	await minio?.stop();
	if (repo) rmSync(repo, { recursive: true, force: true });
});
printLogsOnFailure(() => [["minio", minio]]);

function connect(token: string): pg.Client {
	const c = new pg.Client({
		host: "127.0.0.1",
		port: env.ports.postgres,
		database: "orders-prod",
		user: "ci-deployer",
		password: token,
		ssl: { ca: readFileSync(env.tls!.caFile, "utf8"), servername: "localhost" },
	});
	c.on("error", () => {});
	return c;
}

test("merging a grant makes it usable within seconds, with the pull request recorded; removing it revokes live sessions", { timeout: 120_000 }, async () => {
	assert.equal(env.bundle?.grants.length, 0, "no grant before the merge");
	// A feature branch merged as a pull request: the merge commit is the approval.
	git("checkout", "-q", "-b", "ci-grant");
	writeFileSync(join(repo, "grants", "deployer-ro.yaml"), GRANT);
	git("add", ".");
	git("commit", "-q", "-m", "grant the deployer read access");
	git("checkout", "-q", "main");
	git("merge", "-q", "--no-ff", "ci-grant", "-m", "Merge pull request #12 from team/ci-grant");
	const merge = git("rev-parse", "HEAD");
	const pushedAt = Date.now();
	const grant = await waitFor("the grant in the bundle", () => env.bundle?.grants.find((g) => g.key === "default/deployer-ro"));
	const applyMs = Date.now() - pushedAt;
	assert.equal(grant.origin.commit, merge);
	assert.equal(grant.origin.pullRequest, 12);
	assert.ok(applyMs < 15_000, `applied after ${applyMs} ms`);

	const c = connect(await env.grantToken("default/deployer-ro"));
	await c.connect();
	const r = await c.query("SELECT email FROM customers ORDER BY id LIMIT 1");
	assert.match(String(r.rows[0].email), /\*/, "email masked by the policy from git");
	const ended = new Promise<{ code?: string; message: string }>((resolve) => c.once("error", (e) => resolve(e as never)));

	// Deleting the file from git revokes: the live session is cut with a message naming the grant.
	git("rm", "-q", join("grants", "deployer-ro.yaml"));
	git("commit", "-q", "-m", "Merge pull request #13 from team/revoke");
	const err = await Promise.race([ended, new Promise<never>((_, rej) => setTimeout(() => rej(new Error("session not ended")), 20_000))]);
	assert.match(err.message, /deployer-ro/);
	assert.match(err.message, /revoked|removed/i);
	await assert.rejects(env.grantToken("default/deployer-ro"), /no grant/);
	await c.end().catch(() => {});

	// The session was recorded into MinIO, verified with the published key.
	await env.gateway!.flushRecordings(20_000);
	const store = new S3Store({ ...parseEndpoint(minio.endpoint), accessKey: minio.accessKey, secretKey: minio.secretKey, bucket: "dev-recordings" });
	const sessions = await listSessions(store, { connection: "orders-prod" });
	assert.equal(sessions.length, 1);
	assert.equal(sessions[0]!.pullRequest, "12");
	const keys = await loadStoreKeys(store);
	const v = await verifySession(store, sessions[0]!.prefix, keys.set);
	assert.ok(v.ok, JSON.stringify(v.problems));
});

test("dev mode runs every data path: the SSH listener presents the state's host key, the Kubernetes listener refuses an anonymous request", { timeout: 60_000 }, async () => {
	// Asynchronously: the gateway runs in this process and must keep answering while ssh-keyscan waits.
	const { stdout: scan } = await execFileAsync("ssh-keyscan", ["-T", "30", "-t", "ed25519", "-p", String(env.ports.ssh), "127.0.0.1"], { encoding: "utf8", timeout: 45_000 });
	const pub = readFileSync(join(env.options.stateDir, "ssh_host_ed25519_key.pub"), "utf8").split(" ").slice(0, 2).join(" ");
	assert.ok(scan.includes(pub), `ssh-keyscan saw:\n${scan}\nexpected ${pub}`);
	const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
		const req = httpsRequest(
			{ host: "127.0.0.1", port: env.ports.kube, path: "/api/v1/namespaces", ca: readFileSync(env.tls!.caFile), servername: "localhost" },
			(r) => {
				let body = "";
				r.on("data", (d: Buffer) => (body += d));
				r.on("end", () => resolve({ status: r.statusCode ?? 0, body }));
			},
		);
		req.on("error", reject);
		req.end();
	});
	assert.equal(res.status, 401);
	assert.equal((JSON.parse(res.body) as { kind?: string }).kind, "Status");
});
