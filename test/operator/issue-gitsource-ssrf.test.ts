/**
 * Red-team regression (GitOps, round 11): GitSource fetches were blind SSRF. The operator's git client
 * followed redirects and connected wherever the URL (or a redirect) pointed, so whoever may create a
 * GitSource (a tenant, in their namespace) made the operator send requests from inside the cluster:
 * to the cloud metadata service (169.254.169.254, fd00:ec2::254, metadata.google.internal), or, through
 * a redirect from an ordinary-looking server, anywhere, with the fetch's result (a synced repository
 * or its failure) telling them what answered. Now a 3xx is a failure (`FetchRefused`), never followed,
 * and no socket goes to a link-local or metadata address unless the operator runs with
 * `--git-allow-link-local`; loopback and private networks stay allowed (tests, `drawbridge dev`, an
 * in-cluster git server). A real git-over-HTTP server (git http-backend), a redirecting HTTP server
 * started here, and a real operator and kube-apiserver for the status.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { Operator } from "../../operator/operator.ts";
import { parseOptions } from "../../operator/options.ts";
import { fetchBranch, GitFetchError, refusedAddress } from "../../operator/gitsync/repo.ts";
import { printLogsOnFailure } from "../env/index.ts";
import { type Env, NS, gitSourceYaml, kubectlOk, pushWebhookWhenKnown, startEnv, startOperator, stopEnv, waitFor } from "./helpers.ts";

let env: Env;
let op: Operator;
let redirector: Server;
let redirectorUrl: string;
const redirected: string[] = [];
let cache: string;

before(async () => {
	env = await startEnv();
	// Answers every request with a redirect to the same path on the real git server.
	redirector = createServer((req, res) => {
		redirected.push(req.url ?? "");
		res.writeHead(301, { location: `${env.git.url}${req.url ?? "/"}` }).end();
	});
	await new Promise<void>((r) => redirector.listen(0, "127.0.0.1", r));
	redirectorUrl = `http://127.0.0.1:${(redirector.address() as AddressInfo).port}`;
	cache = await mkdtemp(join(tmpdir(), "drawbridge-ssrf-"));
	op = await startOperator(env, "op-ssrf");
	await waitFor("leadership", async () => op.isLeader(), 15_000);
});
after(async () => {
	await op?.stop();
	await stopEnv(env);
	await new Promise<void>((r) => redirector?.close(() => r()));
	if (cache) await rm(cache, { recursive: true, force: true });
});
printLogsOnFailure(() => [["kube", env?.kube], ["git", env?.git]]);

async function refusedFetch(url: string, dir: string, opts: { allowLinkLocal?: boolean } = {}): Promise<GitFetchError> {
	const err = await fetchBranch(join(cache, dir), { url, branch: "main", timeoutMs: 5_000, ...opts }).then(
		() => assert.fail(`${url} was fetched`),
		(e: unknown) => e,
	);
	assert.ok(err instanceof GitFetchError, `${url}: ${String(err)}`);
	return err;
}

test("issue gitsource-ssrf: loopback git over HTTP still syncs", async () => {
	const head = await fetchBranch(join(cache, "direct"), { url: env.git.repoUrl("grants"), branch: "main", token: env.git.token, timeoutMs: 30_000 });
	assert.equal(head, await env.git.head("grants"));
});

test("issue gitsource-ssrf: a redirect is not followed, even to a real git server", async () => {
	const err = await fetchBranch(join(cache, "redirect"), { url: `${redirectorUrl}/grants.git`, branch: "main", token: env.git.token, timeoutMs: 5_000 }).then(() => assert.fail("the redirect was followed"), (e: unknown) => e as GitFetchError);
	assert.equal(err.code, "FETCH_REFUSED");
	assert.match(err.message, /HTTP 301 \(a redirect\); redirects are not followed/);
	// Where it pointed is the server's answer: not repeated.
	assert.ok(!err.message.includes(env.git.url), err.message);
	assert.ok(redirected.some((u) => u.startsWith("/grants.git/info/refs")), JSON.stringify(redirected));
});

test("issue gitsource-ssrf: link-local and cloud metadata addresses are refused before connecting", async () => {
	for (const url of [
		"http://169.254.169.254/latest/meta-data/iam/security-credentials/x?y=",
		"http://169.254.170.2/v2/credentials?x=",
		"http://[fd00:ec2::254]/latest/meta-data/?x=",
		"http://[::ffff:169.254.169.254]/?x=",
		"http://[fe80::1]/?x=",
		"http://metadata.google.internal/computeMetadata/v1/?x=",
		"http://METADATA.google.internal./computeMetadata/v1/?x=",
		"http://100.100.100.200/latest/meta-data/?x=",
		"https://169.254.169.254/?x=",
	]) {
		const err = await refusedFetch(url, "metadata");
		assert.equal(err.code, "FETCH_REFUSED", `${url}: ${err.message}`);
		assert.match(err.message, /link-local or (cloud )?metadata|cloud metadata service/, url);
		assert.match(err.message, /--git-allow-link-local allows them/);
	}
	// With the flag, the fetch goes ahead (and fails on the network, not by refusal).
	const allowed = await fetchBranch(join(cache, "allowed"), { url: "http://169.254.169.254:9/x", branch: "main", timeoutMs: 2_000, allowLinkLocal: true }).then(
		() => undefined,
		(e: unknown) => e as GitFetchError,
	);
	assert.notEqual(allowed?.code, "FETCH_REFUSED");
});

test("issue gitsource-ssrf: which addresses are refused (table)", () => {
	const cases: [string, boolean][] = [
		["169.254.169.254", true],
		["169.254.0.1", true],
		["fe80::abcd", true],
		["fd00:ec2::254", true],
		["::ffff:169.254.169.254", true],
		["64:ff9b::a9fe:a9fe", true],
		["100.100.100.200", true],
		["127.0.0.1", false],
		["::1", false],
		["10.0.0.5", false],
		["192.168.1.10", false],
		["fd00:ec2::253", false],
		["140.82.112.3", false],
	];
	for (const [ip, refused] of cases) assert.equal(refusedAddress(ip) !== undefined, refused, ip);
	const opts = parseOptions(["--git-allow-link-local"], {});
	assert.ok(opts !== "help" && opts.gitAllowLinkLocal);
	const dflt = parseOptions([], {});
	assert.ok(dflt !== "help" && !dflt.gitAllowLinkLocal);
});

test("issue gitsource-ssrf: a GitSource pointing at a redirect is FetchRefused and nothing syncs", async (t) => {
	const yaml = gitSourceYaml(env, "ssrf").replace(/url: .*/, `url: "${redirectorUrl}/grants.git"`);
	await kubectlOk(env.kube, ["apply", "-f", "-"], yaml);
	t.after(() => kubectlOk(env.kube, ["delete", "gitsource", "ssrf", "-n", NS]).then(() => undefined));
	assert.equal(await pushWebhookWhenKnown(op.port, "ssrf"), 202);
	const cond = await waitFor(
		"FetchRefused",
		async () => {
			const r = await env.kube.request<{ status?: { lastSyncedCommit?: string; conditions?: { type: string; reason: string; message: string }[] } }>(
				"GET",
				`/apis/access.drawbridge.dev/v1alpha1/namespaces/${NS}/gitsources/ssrf`,
			);
			assert.equal(r.body.status?.lastSyncedCommit, undefined, "the redirect target was synced");
			return r.body.status?.conditions?.find((c) => c.type === "Ready" && c.reason === "FetchRefused");
		},
		30_000,
	);
	assert.match(cond.message, /redirects are not followed/);
});
