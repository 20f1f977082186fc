/**
 * Red-team findings on the operator's git sync (commit bf70d27), through a real operator, git server
 * and kube-apiserver:
 * - rollback: with trustedKeys, the server serving an older *signed* commit again brought back a grant
 *   removed since; a force push without trustedKeys rewrote what had been approved. A head that does not
 *   descend from the last synced commit is now refused (`NotFastForward`) unless spec.allowForcePush.
 * - stall: a git server that answers the headers and then nothing held the sync forever; every fetch
 *   now has a deadline (`FetchTimeout`), and grant expiry never waited for git.
 * - flood: a pack larger than --git-max-fetch-size is refused while it streams in (`FetchTooLarge`).
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { type IncomingMessage, type Server, type ServerResponse, createServer, request } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { Operator } from "../../operator/operator.ts";
import { makeTempDir, printLogsOnFailure, runOk } from "../env/index.ts";
import { type Env, NS, connectionYaml, getGrant, gitSourceYaml, grantYaml, kubectlOk, pushWebhook, pushWebhookWhenKnown, startEnv, startOperator, stopEnv, waitFor } from "./helpers.ts";

let env: Env;
let op: Operator;

before(async () => {
	env = await startEnv();
	op = await startOperator(env, "op-gitsync", ["--git-timeout", "2s", "--git-max-fetch-size", "1Mi"]);
	await waitFor("leadership", async () => op.isLeader(), 15_000);
});
after(async () => {
	await op?.stop();
	await stopEnv(env);
});
printLogsOnFailure(() => [["kube", env?.kube], ["git", env?.git]]);

interface GsStatus {
	lastSyncedCommit?: string;
	lastAttemptedCommit?: string;
	conditions?: { type: string; status: string; reason: string; message: string }[];
}

async function gitSource(name: string): Promise<GsStatus> {
	const r = await env.kube.request<{ status?: GsStatus }>("GET", `/apis/access.drawbridge.dev/v1alpha1/namespaces/${NS}/gitsources/${name}`);
	return r.body.status ?? {};
}

const ready = async (name: string, reason: string) => {
	const s = await gitSource(name);
	return s.conditions?.find((c) => c.type === "Ready" && c.reason === reason) ? s : undefined;
};

function sourceFor(name: string, repo: string, extra = ""): string {
	return gitSourceYaml(env, name).replace("/grants.git", `/${repo}.git`) + extra;
}

/** What the git server serves as main, set directly in its bare repository (a rollback or force push). */
async function serveAsMain(repo: string, sha: string): Promise<void> {
	await runOk("git", ["--git-dir", env.git.bareDir(repo), "update-ref", "refs/heads/main", sha]);
}

async function events(reason: string, name: string): Promise<string[]> {
	const out = await kubectlOk(env.kube, ["get", "events", "-n", NS, "--field-selector", `involvedObject.name=${name},reason=${reason}`, "-o", 'jsonpath={range .items[*]}{.message}{"\\n"}{end}']);
	return out.trim().split("\n").filter(Boolean);
}

test("rollback with signed commits: an older signed commit served again does not bring back a removed grant", async (t) => {
	const dir = makeTempDir("pgp-rollback");
	const home = join(dir, "gnupg");
	mkdirSync(home, { mode: 0o700 });
	const genv = { ...process.env, GNUPGHOME: home, GIT_AUTHOR_NAME: "Merge Bot", GIT_AUTHOR_EMAIL: "merge@example.com", GIT_COMMITTER_NAME: "Merge Bot", GIT_COMMITTER_EMAIL: "merge@example.com" };
	await runOk("gpg", ["--batch", "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key", "Merge Bot <merge@example.com>", "ed25519", "sign", "never"], { env: genv });
	const armored = (await runOk("gpg", ["--armor", "--export", "merge@example.com"], { env: genv })).stdout;
	await env.git.createRepo("rollback");
	const work = join(dir, "work");
	await runOk("git", ["clone", "-q", env.git.authedRepoUrl("rollback"), work], { env: genv });
	const g = async (...args: string[]) => (await runOk("git", ["-C", work, "-c", "gpg.program=gpg", ...args], { env: genv })).stdout.trim();
	mkdirSync(join(work, "grants"), { recursive: true });
	writeFileSync(join(work, "grants", "keep.yaml"), grantYaml("keep", { subject: "carol" }));
	writeFileSync(join(work, "grants", "temp.yaml"), grantYaml("temp-access", { subject: "dave" }));
	await g("add", ".");
	await g("commit", "-q", "-Smerge@example.com", "-m", "Merge pull request #80 from org/temp-access");
	await g("push", "-q", "origin", "main");
	const old = await g("rev-parse", "HEAD");

	const keys = `  trustedKeys:\n    - name: merge-bot\n      publicKey: |\n${armored.trim().split("\n").map((l) => `        ${l}`).join("\n")}\n`;
	await kubectlOk(env.kube, ["apply", "-f", "-"], sourceFor("rollback", "rollback", keys));
	t.after(() => kubectlOk(env.kube, ["delete", "gitsource", "rollback", "-n", NS]).then(() => undefined));
	assert.equal(await pushWebhookWhenKnown(op.port, "rollback"), 202);
	await waitFor("temp-access applied", async () => (await getGrant(env, "temp-access")) !== undefined, 30_000);

	// The grant is removed by a reviewed, signed merge: the operator prunes (revokes) it.
	await g("rm", "-q", "grants/temp.yaml");
	await g("commit", "-q", "-Smerge@example.com", "-m", "Merge pull request #81 from org/remove-temp-access");
	await g("push", "-q", "origin", "main");
	const current = await g("rev-parse", "HEAD");
	assert.equal(await pushWebhook(op.port, "rollback"), 202);
	await waitFor("temp-access revoked", async () => (await getGrant(env, "temp-access")) === undefined, 30_000);
	await waitFor("synced to the removal", async () => (await gitSource("rollback")).lastSyncedCommit === current);

	// The server serves the older, validly signed commit again.
	await serveAsMain("rollback", old);
	assert.equal(await pushWebhook(op.port, "rollback"), 202);
	const s = await waitFor("NotFastForward", () => ready("rollback", "NotFastForward"), 30_000);
	const cond = s.conditions!.find((c) => c.type === "Ready")!;
	assert.equal(cond.status, "False");
	assert.ok(cond.message.includes(old) && cond.message.includes(current), cond.message);
	assert.equal(s.lastSyncedCommit, current, "the last good commit stays in force");
	assert.equal(s.lastAttemptedCommit, old);
	const ev = await waitFor("NotFastForward Event", async () => {
		const e = await events("NotFastForward", "rollback");
		return e.length ? e : undefined;
	});
	assert.ok(ev[0]!.includes(old) && ev[0]!.includes(current));
	await op.idle();
	assert.equal(await getGrant(env, "temp-access"), undefined, "a revoked grant stays revoked");
	assert.ok(await getGrant(env, "keep"), "nothing was pruned either");

	// The server moves on from the last synced commit: a fast-forward syncs again.
	await serveAsMain("rollback", current);
	writeFileSync(join(work, "grants", "next.yaml"), grantYaml("next-access", { subject: "erin" }));
	await g("add", ".");
	await g("commit", "-q", "-Smerge@example.com", "-m", "Merge pull request #82 from org/next");
	await g("push", "-q", "origin", "main");
	assert.equal(await pushWebhook(op.port, "rollback"), 202);
	await waitFor("next-access applied", async () => (await getGrant(env, "next-access")) !== undefined, 30_000);
	await waitFor("Ready again", async () => (await gitSource("rollback")).conditions?.find((c) => c.type === "Ready")?.status === "True");
});

test("a force push without trustedKeys is refused by default and accepted with spec.allowForcePush", async (t) => {
	await env.git.createRepo("forced");
	const first = await env.git.commit("forced", { files: { "grants/a.yaml": grantYaml("fp-a") }, message: "a" });
	// A branch from `first` that main never merges: what a force push will put in place.
	const rewritten = await env.git.commit("forced", { branch: "rewrite", files: { "grants/r.yaml": grantYaml("fp-r") }, message: "rewritten history" });
	await kubectlOk(env.kube, ["apply", "-f", "-"], sourceFor("forced", "forced"));
	t.after(() => kubectlOk(env.kube, ["delete", "gitsource", "forced", "-n", NS]).then(() => undefined));
	assert.equal(await pushWebhookWhenKnown(op.port, "forced"), 202);
	await waitFor("synced first", async () => (await gitSource("forced")).lastSyncedCommit === first, 30_000);
	const second = await env.git.commit("forced", { files: { "grants/b.yaml": grantYaml("fp-b") }, message: "b" });
	assert.equal(await pushWebhook(op.port, "forced"), 202);
	await waitFor("fp-b applied", async () => (await getGrant(env, "fp-b")) !== undefined, 30_000);

	await serveAsMain("forced", rewritten);
	assert.equal(await pushWebhook(op.port, "forced"), 202);
	const s = await waitFor("NotFastForward", () => ready("forced", "NotFastForward"), 30_000);
	assert.match(s.conditions!.find((c) => c.type === "Ready")!.message, new RegExp(`${rewritten}.*${second}`));
	await op.idle();
	assert.equal(await getGrant(env, "fp-r"), undefined, "nothing from the rewritten history is applied");
	assert.ok(await getGrant(env, "fp-b"), "nothing the rewrite dropped is pruned");

	await kubectlOk(env.kube, ["patch", "gitsource", "forced", "-n", NS, "--type=merge", "-p", '{"spec":{"allowForcePush":true}}']);
	assert.equal(await pushWebhook(op.port, "forced"), 202);
	await waitFor("fp-r applied", async () => (await getGrant(env, "fp-r")) !== undefined, 30_000);
	await waitFor("fp-b pruned", async () => (await getGrant(env, "fp-b")) === undefined, 30_000);
	assert.equal((await gitSource("forced")).lastSyncedCommit, rewritten);
});

/** A proxy to the test git server that can be told to answer the headers and then nothing. */
async function stallableProxy(): Promise<{ url: string; stall: (on: boolean) => void; close: () => Promise<void> }> {
	let stalled = false;
	const sockets = new Set<Socket>();
	const target = new URL(env.git.url);
	const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
		if (stalled) {
			res.writeHead(200, { "content-type": "application/x-git-upload-pack-advertisement" });
			res.write("001e# service=git-upload-pack\n");
			return; // and never another byte
		}
		const up = request({ host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers }, (ur) => {
			res.writeHead(ur.statusCode ?? 502, ur.headers);
			ur.pipe(res);
		});
		up.on("error", () => res.destroy());
		req.pipe(up);
	});
	server.on("connection", (s) => {
		sockets.add(s);
		s.on("close", () => sockets.delete(s));
	});
	await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
	return {
		url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
		stall: (on) => {
			stalled = on;
		},
		close: async () => {
			for (const s of sockets) s.destroy();
			await new Promise((r) => server.close(r));
		},
	};
}

test("a stalled git server: the fetch times out, the queue carries on, and grants still expire on time", async (t) => {
	const proxy = await stallableProxy();
	t.after(() => proxy.close());
	await env.git.createRepo("stall");
	await env.git.commit("stall", { files: { "grants/orders.yaml": connectionYaml(env), "grants/short.yaml": grantYaml("short-lived", { duration: "20s", subject: "frank" }) }, message: "short grant" });
	const source = sourceFor("stall", "stall").replace(env.git.url, proxy.url);
	await kubectlOk(env.kube, ["apply", "-f", "-"], source);
	t.after(() => kubectlOk(env.kube, ["delete", "gitsource", "stall", "-n", NS]).then(() => undefined));
	assert.equal(await pushWebhookWhenKnown(op.port, "stall"), 202);
	await waitFor("short-lived Active", async () => (await getGrant(env, "short-lived"))?.status?.phase === "Active", 30_000);

	proxy.stall(true);
	assert.equal(await pushWebhook(op.port, "stall"), 202);
	const s = await waitFor("FetchTimeout", () => ready("stall", "FetchTimeout"), 15_000);
	assert.match(s.conditions!.find((c) => c.type === "Ready")!.message, /within 2000 ms/);
	// The git queue is not held by the stalled source: another GitSource still syncs.
	await env.git.createRepo("other");
	const otherHead = await env.git.commit("other", { files: { "grants/o.yaml": grantYaml("other-grant") }, message: "o" });
	await kubectlOk(env.kube, ["apply", "-f", "-"], sourceFor("other", "other"));
	t.after(() => kubectlOk(env.kube, ["delete", "gitsource", "other", "-n", NS]).then(() => undefined));
	assert.equal(await pushWebhookWhenKnown(op.port, "other"), 202);
	await waitFor("other synced", async () => (await gitSource("other")).lastSyncedCommit === otherHead, 15_000);
	// Expiry is the grant's own timer: it happens while git is unreachable.
	await waitFor("short-lived Expired", async () => (await getGrant(env, "short-lived"))?.status?.phase === "Expired", 40_000);
	assert.ok((await events("FetchTimeout", "stall")).length >= 1);
});

test("a fetch larger than --git-max-fetch-size is refused as it streams in and reported", async (t) => {
	await env.git.createRepo("huge");
	const good = await env.git.commit("huge", { files: { "grants/g.yaml": grantYaml("huge-before") }, message: "small" });
	await kubectlOk(env.kube, ["apply", "-f", "-"], sourceFor("huge", "huge"));
	t.after(() => kubectlOk(env.kube, ["delete", "gitsource", "huge", "-n", NS]).then(() => undefined));
	assert.equal(await pushWebhookWhenKnown(op.port, "huge"), 202);
	await waitFor("synced small", async () => (await gitSource("huge")).lastSyncedCommit === good, 30_000);
	// 3 MiB of random data does not compress below the 1 MiB cap.
	await env.git.commit("huge", { files: { "grants/blob.yaml": `data: ${randomBytes(3 * 1024 * 1024).toString("base64")}\n` }, message: "huge" });
	assert.equal(await pushWebhook(op.port, "huge"), 202);
	const s = await waitFor("FetchTooLarge", () => ready("huge", "FetchTooLarge"), 30_000);
	assert.match(s.conditions!.find((c) => c.type === "Ready")!.message, /1048576-byte fetch limit/);
	assert.equal(s.lastSyncedCommit, good, "the last good commit stays in force");
	assert.ok(await getGrant(env, "huge-before"));
});
