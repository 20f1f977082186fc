/**
 * Red-team regression (GitOps, round 10): a GitSource read back what any URL the operator can reach
 * answers. isomorphic-git puts the first 256 characters of an answer that is not git's into its error
 * ("Remote did not reply using the "smart" HTTP protocol ... but received: <body>"), and the operator
 * wrote that message into the GitSource's status and a Warning Event, which whoever may create a
 * GitSource in their namespace (a tenant) reads. With `url: http://169.254.169.254/...?x=` the git path
 * becomes a query string, and the cloud metadata service's credentials (or a cluster-internal
 * service's answer) came back in `kubectl get gitsource -o yaml`. Fetch failures now name the kind of
 * failure, an HTTP status or a socket error code, never what the server sent. Real operator and
 * kube-apiserver; a local HTTP server stands in for the internal service.
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import type { Operator } from "../../operator/operator.ts";
import { printLogsOnFailure } from "../env/index.ts";
import { type Env, NS, gitSourceYaml, kubectlOk, pushWebhookWhenKnown, startEnv, startOperator, stopEnv, waitFor } from "./helpers.ts";

const SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY";
let env: Env;
let op: Operator;
let internal: Server;
const asked: string[] = [];

before(async () => {
	internal = createServer((req, res) => {
		asked.push(req.url ?? "");
		// Any path: an internal service (or a metadata endpoint) that ignores the query string.
		res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ Code: "Success", AccessKeyId: "ASIAEXAMPLE", SecretAccessKey: SECRET }));
	});
	await new Promise<void>((r) => internal.listen(0, "127.0.0.1", r));
	env = await startEnv();
	op = await startOperator(env, "op-answer-echo");
	await waitFor("leadership", async () => op.isLeader(), 15_000);
});
after(async () => {
	await op?.stop();
	await stopEnv(env);
	await new Promise<void>((r) => internal.close(() => r()));
});
printLogsOnFailure(() => [["kube", env?.kube]]);

test("issue gitsource-answer-echo: a fetch failure never carries what the server answered", async (t) => {
	const port = (internal.address() as AddressInfo).port;
	const url = `http://127.0.0.1:${port}/latest/meta-data/iam/security-credentials/node-role?x=`;
	const yaml = gitSourceYaml(env, "echo").replace(/url: .*/, `url: "${url}"`);
	await kubectlOk(env.kube, ["apply", "-f", "-"], yaml);
	t.after(() => kubectlOk(env.kube, ["delete", "gitsource", "echo", "-n", NS]).then(() => undefined));
	assert.equal(await pushWebhookWhenKnown(op.port, "echo"), 202);
	const cond = await waitFor(
		"FetchFailed",
		async () => {
			const r = await env.kube.request<{ status?: { conditions?: { type: string; reason: string; message: string }[] } }>("GET", `/apis/access.drawbridge.dev/v1alpha1/namespaces/${NS}/gitsources/echo`);
			return r.body.status?.conditions?.find((c) => c.type === "Ready" && c.reason === "FetchFailed");
		},
		30_000,
	);
	assert.ok(asked.some((u) => u.startsWith("/latest/meta-data/iam/security-credentials/node-role?x=/info/refs")), `the operator asked ${JSON.stringify(asked)}`);
	// Before: "... Expected "001e# service=git-upload-pack" but received: {"Code":"Success",...,"SecretAccessKey":"wJalr..."}".
	assert.ok(!cond.message.includes(SECRET) && !cond.message.includes("AccessKeyId"), cond.message);
	assert.match(cond.message, /did not answer as a git smart-HTTP server/);
	const events = await kubectlOk(env.kube, ["get", "events", "-n", NS, "--field-selector", "involvedObject.name=echo", "-o", "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}"]);
	assert.ok(events.includes("did not answer as a git smart-HTTP server"), events);
	assert.ok(!events.includes(SECRET), events);
});
