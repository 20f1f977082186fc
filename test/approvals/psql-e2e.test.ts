/**
 * End to end: a held DELETE in psql completes after `drawbridge approvals approve`.
 *
 * Real PostgreSQL + the real gateway PostgreSQL listener (test/postgres/fixture.ts), ApprovalRequests on
 * a real kube-apiserver, two gateway replicas: replica A runs the PostgreSQL data path, replica B serves
 * the approvals REST API the CLI talks to. The approver signs in with a real OIDC ID token (startOidc).
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, test } from "node:test";
import { KubeConfig } from "@kubernetes/client-node";
import Fastify, { type FastifyInstance } from "fastify";
import { main } from "../../cli/approvals.ts";
import { KubeApprovalStore } from "../../gateway/approvals/kube-store.ts";
import { registerApprovalRoutes, verifierAuthenticator } from "../../gateway/approvals/routes.ts";
import { StoreApprovalService } from "../../gateway/approvals/service.ts";
import type { ApprovalRequestRecord } from "../../gateway/approvals/types.ts";
import { TokenVerifier } from "../../gateway/identity/verify.ts";
import { type KubeHandle, type OidcHandle, printLogsOnFailure, run, startKube, startOidc } from "../env/index.ts";
import { CONNECTION, type Fixture, startFixture } from "../postgres/fixture.ts";

const NS = "drawbridge";
let kube: KubeHandle;
let oidc: OidcHandle;
let fx: Fixture;
let replicaA: StoreApprovalService;
let replicaB: StoreApprovalService;
let admin: FastifyInstance;
let base: string;

before(async () => {
	[kube, oidc] = await Promise.all([startKube(), startOidc()]);
	const crd = new URL("../../crds/access.drawbridge.dev_approvalrequests.yaml", import.meta.url).pathname;
	assert.equal((await kube.kubectl(["apply", "-f", crd])).code, 0);
	assert.equal((await kube.kubectl(["wait", "--for=condition=Established", "--timeout=60s", "crd/approvalrequests.access.drawbridge.dev"])).code, 0);
	await kube.createNamespace(NS);
	const replica = () => {
		const kc = new KubeConfig();
		kc.loadFromFile(kube.kubeconfigPath);
		return new StoreApprovalService({ store: new KubeApprovalStore({ kubeConfig: kc, namespace: NS }), sweepIntervalMs: 0 });
	};
	replicaA = replica();
	replicaB = replica();
	fx = await startFixture({
		approvals: replicaA,
		guardrails: [
			{
				name: "delete-needs-approval",
				action: "requireApproval",
				message: "DELETE on production needs a support lead",
				sql: { statementKinds: ["DELETE"] },
				approval: { approvers: [{ kind: "Group", name: "support-leads" }], minApprovals: 1, timeoutSeconds: 60 },
			},
		],
	});
	const verifier = new TokenVerifier([
		{ name: "oidc", kind: "oidc", issuer: oidc.issuer, audiences: ["drawbridge"], jwksUri: oidc.jwksUri, algorithms: ["RS256"], usernameClaim: "email" },
	]);
	admin = Fastify();
	await registerApprovalRoutes(admin, { service: replicaB, authenticate: verifierAuthenticator(verifier), pages: false });
	await admin.listen({ port: 0, host: "127.0.0.1" });
	base = `http://127.0.0.1:${(admin.server.address() as AddressInfo).port}`;
});

after(async () => {
	await admin?.close();
	await fx?.stop();
	await replicaA?.close();
	await replicaB?.close();
	await oidc?.stop();
	await kube?.stop();
});
printLogsOnFailure(() => [
	["kube", kube],
	["oidc", oidc],
	["postgres", fx?.pg],
]);

function psqlEnv(token: string): Record<string, string> {
	return {
		...(process.env as Record<string, string>),
		PGHOST: "localhost",
		PGPORT: String(fx.port),
		PGDATABASE: CONNECTION,
		PGUSER: "agent",
		PGPASSWORD: token,
		PGSSLMODE: "verify-full",
		PGSSLROOTCERT: fx.caFile,
	};
}

async function cli(args: string[], token: string) {
	let stdout = "";
	let stderr = "";
	const code = await main([...args, "--server", base], { env: { DRAWBRIDGE_TOKEN: token, HOME: "/nonexistent" }, stdout: (s) => void (stdout += s), stderr: (s) => void (stderr += s) });
	return { code, stdout, stderr };
}

/** The Pending request for `command`, as seen by replica B (polls: the data path creates it asynchronously). */
async function pendingFor(command: RegExp): Promise<ApprovalRequestRecord> {
	for (let i = 0; i < 200; i++) {
		const found = (await replicaB.list({ phase: "Pending" })).find((r) => command.test(r.command));
		if (found) return found;
		await sleep(100);
	}
	throw new Error(`no pending approval for ${command}`);
}

async function orderExists(id: number): Promise<boolean> {
	const r = await fx.pg.query("select count(*)::int as n from orders where id = $1", [id]);
	return (r.rows[0] as { n: number }).n === 1;
}

test("a held DELETE in psql completes after `drawbridge approvals approve`", async () => {
	assert.equal(await orderExists(11), true);
	const psql = run("/usr/bin/psql", ["-X", "-c", "delete from orders where id = 11"], { env: psqlEnv(await fx.token("alice")), timeoutMs: 90_000 });
	const held = await pendingFor(/delete from orders where id = 11/);
	assert.equal(held.connection, CONNECTION);
	assert.equal(held.requester.username, "alice");
	assert.equal(await orderExists(11), true, "held, not executed");

	const outsider = await cli(["approve", held.id], await oidc.idToken("bob", { groups: ["developers"] }));
	assert.match(outsider.stderr, /HTTP 403, not-an-approver/);
	const ok = await cli(["approve", held.id, "-m", "order 11 was a duplicate"], await oidc.idToken("sam"));
	assert.equal(ok.code, 0, ok.stderr);

	const result = await psql;
	assert.equal(result.code, 0, result.stderr);
	assert.match(result.stdout, /DELETE 1/);
	assert.match(result.stderr, new RegExp(`approval ${held.id} pending`), "psql printed the NOTICE naming the request");
	assert.equal(await orderExists(11), false);
});

test("a denied DELETE fails cleanly in psql and does not run", async () => {
	const psql = run("/usr/bin/psql", ["-X", "-c", "delete from orders where id = 12"], { env: psqlEnv(await fx.token("alice")), timeoutMs: 90_000 });
	const held = await pendingFor(/delete from orders where id = 12/);
	const denied = await cli(["deny", held.id, "-m", "not during the freeze"], await oidc.idToken("sam"));
	assert.equal(denied.code, 0, denied.stderr);
	const result = await psql;
	assert.notEqual(result.code, 0);
	assert.match(result.stderr, new RegExp(held.id));
	assert.equal(await orderExists(12), true);
});

test("psql disconnecting while held cancels the request", async () => {
	const child = spawn("/usr/bin/psql", ["-X", "-c", "delete from orders where id = 13"], { env: psqlEnv(await fx.token("alice")), stdio: "ignore" });
	const held = await pendingFor(/delete from orders where id = 13/);
	child.kill("SIGKILL");
	let phase = "Pending";
	// Up to 30 s: on a loaded 2-core machine the cancel reaches replica B through its watch late.
	for (let i = 0; i < 300 && phase === "Pending"; i++) {
		await sleep(100);
		phase = (await replicaB.get(held.id))?.phase ?? "missing";
	}
	assert.equal(phase, "Cancelled");
	const late = await cli(["approve", held.id], await oidc.idToken("sam"));
	assert.match(late.stderr, /HTTP 409, already-decided/);
	assert.equal(await orderExists(13), true);
});
