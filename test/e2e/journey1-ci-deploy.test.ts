/**
 * Journey 1 (SCENARIOS.md) end to end, and the auditor's view of it (journey 4):
 * a grant file merged as pull request #142 → the operator (a `drawbridge operator` process with
 * deploy/base's RBAC) syncs it → `kubectl get accessgrants` shows it Active, status names the merge
 * commit and PR → the CI job connects through the gateway (a `drawbridge gateway` process reading
 * the operator's bundle Secret) with psql, sslmode=verify-full and its own projected
 * service-account token → rows come back, customers.email masked, UPDATE refused with 42501 naming
 * the grant → the grant's end passes: the live session gets a FATAL naming the expiry, a new
 * connection is refused, the grant shows Expired and the dynamic role is gone → the recordings in
 * MinIO list, show (with the PR) and verify.
 *
 * The repository holds the example files of examples/ unchanged except the database address. The
 * grant says `duration: 2h` like the story; the merge commit is dated 2 h minus WINDOW_S ago, so
 * "two hours later" arrives WINDOW_S seconds into the test.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type pg from "pg";
import { printLogsOnFailure, run, seedRows } from "../env/index.ts";
import { drawbridge, GRANTS_NS, logsOf, psql, ROOT, type Stack, startStack, waitFor } from "./stack.ts";

const WINDOW_S = 120;
const GRANT = "ci-deployer-orders-ro";
const GRANT_KEY = `${GRANTS_NS}/${GRANT}`;
const PR = 142;

let stack: Stack;
let admin: pg.Client;
let mergeSha = "";
let expiresAt = 0;
let token = "";
let roleName = "";
const day = new Date().toISOString().slice(0, 10);

const example = (path: string) => readFileSync(join(ROOT, "examples", path), "utf8");

before(async () => {
	stack = await startStack({ minio: true });
	admin = await stack.pg.connect();
	// The platform team's repository: the Connection (pointing at this PostgreSQL) and the policies.
	await stack.git.commit("grants", {
		message: "orders-prod connection and production policies",
		files: {
			"connections/orders-prod.yaml": example("connections/orders-prod.yaml")
				.replace("host: orders-db.prod.internal", "host: 127.0.0.1")
				.replace("port: 5432", `port: ${stack.pg.port}`),
			"policies/masking-customers.yaml": example("policies/masking-customers.yaml"),
			"policies/guardrails-prod.yaml": example("policies/guardrails-prod.yaml"),
		},
	});
	await stack.applyGitSource();
	await waitFor("Connection orders-prod synced", async () => (await stack.kube.request("GET", `/apis/access.drawbridge.dev/v1alpha1/namespaces/${GRANTS_NS}/connections/orders-prod`)).status === 200);
	await stack.startGateway();
});
after(async () => {
	await admin?.end().catch(() => {});
	await stack?.stop();
});
printLogsOnFailure(() => logsOf(stack));

interface Grant {
	status?: { phase?: string; expiresAt?: string; origin?: { commit?: string; pullRequest?: number }; credential?: { type?: string; username?: string } };
}
async function grant(): Promise<Grant | undefined> {
	const r = await stack.kube.request<Grant>("GET", `/apis/access.drawbridge.dev/v1alpha1/namespaces/${GRANTS_NS}/accessgrants/${GRANT}`);
	return r.status === 200 ? r.body : undefined;
}

const asDeployer = (args: string[]) => psql(stack, { dbname: "orders-prod", user: "ci-deployer", password: token, args });

test("journey 1.1-1.2: the PR passes drawbridge validate; merged, it becomes an Active grant; kubectl shows it; status names the merge commit and PR", { timeout: 180_000 }, async () => {
	// Merged two hours minus WINDOW_S ago (git dates have second precision).
	const merged = new Date(Math.floor((Date.now() - 2 * 3600_000 + WINDOW_S * 1000) / 1000) * 1000);
	expiresAt = merged.getTime() + 2 * 3600_000;
	({ sha: mergeSha } = await stack.git.mergePullRequest("grants", {
		number: PR,
		branch: "ci-deployer-orders-ro",
		org: "platform",
		title: "CI deployer: read-only on orders-prod for the release checks (OPS-142)",
		author: { name: "Priya", email: "priya@example.com" },
		date: merged.toISOString().replace(/\.\d{3}Z$/, "Z"),
		files: { "grants/ci/deployer-orders-ro.yaml": example("grants/ci/deployer-orders-ro.yaml") },
	}));
	// The pull request check: `drawbridge validate` on the PR branch, as examples/.github/workflows runs it.
	const checkout = join(stack.dir, "pr-142");
	const clone = await run("git", ["clone", "-q", "--branch", "ci-deployer-orders-ro", stack.git.authedRepoUrl("grants"), checkout]);
	assert.equal(clone.code, 0, clone.stderr);
	const check = await drawbridge(["validate", checkout]);
	assert.equal(check.code, 0, `${check.stdout}${check.stderr}`);
	// The push webhook triggers the sync; no poll interval is involved (the GitSource polls hourly).
	const g = await waitFor("grant Active with its dynamic role", async () => {
		const x = await grant();
		return x?.status?.phase === "Active" && x.status.credential?.username ? x : undefined;
	});
	roleName = g.status!.credential!.username!;
	assert.equal(g.status!.origin?.commit, mergeSha, "status names the merge commit");
	assert.equal(g.status!.origin?.pullRequest, PR, "status names the pull request");
	assert.equal(Date.parse(g.status!.expiresAt!), expiresAt, "duration 2h counted from the merge");

	const table = await stack.kubectl(["get", "accessgrants", "-n", GRANTS_NS]);
	const [header, ...rows] = table.trim().split("\n");
	assert.deepEqual(header!.split(/\s+/), ["NAME", "SUBJECT", "CONNECTION", "PHASE", "EXPIRES", "AGE"]);
	const row = rows.find((r) => r.startsWith(`${GRANT} `))?.split(/\s+/);
	assert.deepEqual(row?.slice(0, 4), [GRANT, "deployer", "orders-prod", "Active"], table);
	assert.equal(Date.parse(row![4]!), expiresAt, table);
	const origin = await stack.kubectl(["get", "ag", GRANT, "-n", GRANTS_NS, "-o", "jsonpath={.status.origin.commit} {.status.origin.pullRequest}"]);
	assert.equal(origin, `${mergeSha} ${PR}`);
	assert.deepEqual((await admin.query("SELECT rolname FROM pg_roles WHERE rolname = $1", [roleName])).rows.length, 1, "dynamic role exists");
});

test("journey 1.3: the deploy job's own service-account token through the gateway: rows, masked email, UPDATE → 42501", { timeout: 180_000 }, async () => {
	assert.ok(roleName, "the previous step made the grant Active");
	// What the kubelet projects into the job's pod at /var/run/secrets/tokens/drawbridge.
	token = await stack.kube.serviceAccountToken("ci", "deployer", { audiences: ["drawbridge-gateway"], expirationSeconds: 3600 });
	// The gateway learns the grant from the bundle Secret it watches: retry until it has it.
	const count = await waitFor("psql through the gateway", async () => {
		const r = await asDeployer(["-c", "SELECT count(*) FROM orders"]);
		if (r.code !== 0) throw new Error(r.stderr);
		return r.stdout.trim();
	}, 60_000, 500);
	assert.equal(count, String(seedRows().orders.length));
	assert.ok(Date.now() < expiresAt - 5_000, `machine too slow: grant ends in ${expiresAt - Date.now()} ms`);

	const real = seedRows().customers[0]!.email;
	const r = await asDeployer(["-c", "SELECT id, name, email FROM customers ORDER BY id LIMIT 1"]);
	assert.equal(r.code, 0, r.stderr);
	const [id, , email] = r.stdout.trim().split("|");
	assert.equal(id, "1");
	assert.notEqual(email, real, "customers.email is masked");
	assert.ok(!email!.includes(real.split("@")[0]!), `local part hidden: ${email}`);
	assert.ok(email!.endsWith("@example.com"), `partial mask keeps the last 12 characters: ${email}`);

	const upd = await asDeployer(["-c", "UPDATE customers SET name = 'x' WHERE id = 1"]);
	assert.notEqual(upd.code, 0);
	assert.match(upd.stderr, /ERROR:\s+42501:/, upd.stderr);
	assert.match(upd.stderr, new RegExp(GRANT), "the error names the grant");
	assert.equal((await admin.query("SELECT name FROM customers WHERE id = 1")).rows[0].name, seedRows().customers[0]!.name, "nothing written");
});

test("journey 1.4: the grant's end: live session cut with a FATAL naming the expiry, new connection refused, Expired, role dropped", { timeout: 240_000 }, async () => {
	assert.ok(token, "the previous step got a token");
	assert.ok(Date.now() < expiresAt - 2_000, `machine too slow: grant ends in ${expiresAt - Date.now()} ms`);
	// A long-running statement in a live session when the end passes.
	const live = await asDeployer(["-c", "SELECT 'live session'", "-c", "SELECT pg_sleep(600)"]);
	const endedAt = Date.now();
	assert.notEqual(live.code, 0);
	assert.match(live.stdout, /live session/, "the session was working before the end");
	assert.match(live.stderr, new RegExp(`FATAL:.*grant ${GRANT_KEY} expired at`), live.stderr);
	assert.ok(endedAt >= expiresAt - 1_000, `cut ${expiresAt - endedAt} ms before the end`);
	assert.ok(endedAt - expiresAt < 10_000, `cut ${endedAt - expiresAt} ms after the end`);

	const again = await asDeployer(["-c", "SELECT 1"]);
	assert.notEqual(again.code, 0, "a new connection is refused");
	assert.match(again.stderr, new RegExp(`grant ${GRANT_KEY} expired at`), again.stderr);

	await waitFor("grant Expired", async () => (await grant())?.status?.phase === "Expired", 30_000);
	const row = (await stack.kubectl(["get", "accessgrants", "-n", GRANTS_NS])).split("\n").find((l) => l.startsWith(`${GRANT} `));
	assert.match(row ?? "", new RegExp(`^${GRANT}\\s+deployer\\s+orders-prod\\s+Expired\\s`));
	await waitFor("dynamic role dropped", async () => (await admin.query("SELECT 1 FROM pg_roles WHERE rolname = $1", [roleName])).rows.length === 0, 30_000);
});

test("journey 4 on these sessions: recordings list/show/verify over MinIO, each session linked to PR #142", { timeout: 180_000 }, async () => {
	assert.ok(stack.gateway, "gateway started");
	const env = stack.recordingsEnv();
	const since = day;
	const until = new Date(Date.parse(day) + 86_400_000).toISOString().slice(0, 10);
	// Sessions: count(*), the masked SELECT, the UPDATE, the live one cut at the end (refused
	// connections are not sessions). Sessions upload once closed.
	const listed = await waitFor("recordings uploaded", async () => {
		const r = await drawbridge(["recordings", "list", "--connection", "orders-prod", "--since", since, "--until", until, "--json"], env);
		if (r.code !== 0) throw new Error(`${r.stdout}${r.stderr}`);
		const rows = r.stdout.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
		return rows.length >= 4 ? rows : undefined;
	}, 60_000, 1_000);
	assert.equal(listed.length, 4, JSON.stringify(listed));
	for (const s of listed) {
		assert.equal(s.grant, GRANT_KEY);
		assert.equal(String(s.pullRequest), String(PR), "every session links to the pull request");
		assert.equal(s.commit, mergeSha);
	}
	const table = await drawbridge(["recordings", "list", "--connection", "orders-prod", "--since", since, "--until", until], env);
	assert.equal(table.code, 0, table.stderr);
	assert.match(table.stdout, /orders-prod/);
	const empty = await drawbridge(["recordings", "list", "--connection", "orders-prod", "--since", "2027-03-01", "--until", "2027-04-01", "--json"], env);
	assert.equal(empty.stdout.trim(), "", "the time filter excludes these sessions");

	const shows = await Promise.all(listed.map((x) => drawbridge(["recordings", "show", String(x.sessionId)], env)));
	for (const s of shows) {
		assert.equal(s.code, 0, s.stderr);
		assert.match(s.stdout, new RegExp(`Grant\\s+${GRANT_KEY}\\s+approved by commit ${mergeSha}\\s+PR #${PR}`));
		assert.match(s.stdout, /Identity\s+\S*deployer/);
	}
	const cut = shows.find((s) => /Ended\s+grant-expired/.test(s.stdout));
	assert.ok(cut, shows.map((s) => s.stdout).join("\n"));
	assert.match(cut.stdout, /pg_sleep/);
	const all = shows.map((s) => s.stdout).join("\n");
	assert.match(all, /UPDATE customers/, "the refused UPDATE is in a timeline");
	assert.ok(!all.includes(seedRows().customers[0]!.email), "no unmasked email in any timeline");

	const verify = await drawbridge(["recordings", "verify", "--all", "--connection", "orders-prod"], env);
	assert.equal(verify.code, 0, `${verify.stdout}\n${verify.stderr}`);
});
