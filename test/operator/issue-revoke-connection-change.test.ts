/**
 * Red team (revocation): a grant moved to another Connection must not leave the dynamic PostgreSQL
 * role minted on the old one behind. Before the fix the old role kept LOGIN, its privileges and its
 * server-side backends until the old window's VALID UNTIL: a credential minted for terms git no longer
 * grants, still working.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type pg from "pg";
import type { Operator } from "../../operator/operator.ts";
import { printLogsOnFailure } from "../env/index.ts";
import {
	type Env,
	OP_NS,
	connectionYaml,
	getGrant,
	getSecret,
	gitSourceYaml,
	grantYaml,
	kubectlOk,
	pushWebhook,
	roleCount,
	sqlstate,
	startEnv,
	startOperator,
	stopEnv,
	waitFor,
} from "./helpers.ts";

let env: Env;
let op: Operator;
let admin: pg.Client;

before(async () => {
	env = await startEnv();
	admin = await env.pg.connect();
	op = await startOperator(env, "op-revoke");
	await waitFor("leadership", async () => op.isLeader(), 15_000);
});
after(async () => {
	await op?.stop();
	await admin?.end();
	await stopEnv(env);
});
printLogsOnFailure(() => [["kube", env?.kube], ["postgres", env?.pg], ["git", env?.git]]);

test("a grant moved to another Connection drops the role minted on the old one and ends its backends", async () => {
	await env.git.mergePullRequest("grants", {
		number: 1,
		branch: "add",
		title: "Grant alice read-write on orders",
		files: {
			"grants/orders.yaml": connectionYaml(env, "orders"),
			"grants/orders-replica.yaml": connectionYaml(env, "orders-replica"),
			"grants/alice.yaml": grantYaml("alice", { access: "read-write", connection: "orders" }),
		},
	});
	await kubectlOk(env.kube, ["apply", "-f", "-"], gitSourceYaml(env));
	const first = await waitFor("grant Active on orders", async () => {
		const x = await getGrant(env, "alice");
		return x?.status?.phase === "Active" && x.status.credential?.username ? x : undefined;
	});
	const oldRole = first.status!.credential!.username!;
	const oldSecret = await getSecret(env, OP_NS, first.status!.credential!.secretName!);
	// A backend logged in as the old role (what a gateway's upstream session is).
	const backend = await env.pg.connect({ user: oldRole, password: oldSecret!.password! });
	backend.on("error", () => {});
	assert.equal(await sqlstate(backend.query("UPDATE customers SET name = name WHERE id = 1")), "ok");

	await env.git.mergePullRequest("grants", {
		number: 2,
		branch: "move",
		title: "Move alice to the replica",
		files: { "grants/alice.yaml": grantYaml("alice", { access: "read-write", connection: "orders-replica" }) },
	});
	assert.equal(await pushWebhook(op.port), 202);
	const moved = await waitFor("grant Active on orders-replica", async () => {
		const x = await getGrant(env, "alice");
		return x?.status?.phase === "Active" && x.status.credential?.username && x.status.credential.username !== oldRole ? x : undefined;
	});
	assert.ok(moved.status!.credential!.username);
	await waitFor("old role dropped", async () => (await roleCount(admin, oldRole)).length === 0, 15_000, 100);
	assert.notEqual(await sqlstate(backend.query("SELECT 1")), "ok", "the old role's backend was terminated");
	await backend.end().catch(() => {});
	assert.notEqual(await sqlstate(env.pg.connect({ user: oldRole, password: oldSecret!.password! })), "ok", "the old role no longer logs in");
	assert.equal(await getSecret(env, OP_NS, first.status!.credential!.secretName!), undefined, "the old role's Secret is deleted");
	// The role of the current Connection is untouched and works.
	const newSecret = await getSecret(env, OP_NS, moved.status!.credential!.secretName!);
	const fresh = await env.pg.connect({ user: moved.status!.credential!.username!, password: newSecret!.password! });
	assert.equal(await sqlstate(fresh.query("SELECT 1")), "ok");
	await fresh.end();
});
