/**
 * Red-team round (identity and approvals): an approval of a held extended-protocol statement must
 * cover exactly one execution with exactly the parameters the approvers saw. Before, the hold was at
 * Parse: approvers saw `delete from tickets where id = $1` with no value, and the approved prepared
 * statement then ran with any parameters, any number of times (a named statement re-bound by
 * node-postgres, or one Parse followed by many pipelined Bind/Execute pairs). Real PostgreSQL through
 * the gateway, the approvals component's real service.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type pg from "pg";
import type { NoticeMessage } from "pg-protocol/dist/messages.js";
import type { StoreApprovalService } from "../../gateway/approvals/service.ts";
import { clientMessages } from "../../gateway/postgres/serializer.ts";
import { APPROVER_SAM, CONNECTION, type Fixture, startFixture, localApprovals } from "./fixture.ts";
import { RawClient } from "./raw-client.ts";

let fx: Fixture;
let approvals: StoreApprovalService;
const sam = APPROVER_SAM;

before(async () => {
	approvals = localApprovals();
	fx = await startFixture({
		approvals,
		guardrails: [
			{
				name: "approve-rdeletes-reusable",
				action: "requireApproval",
				sql: { statementKinds: ["DELETE"], tables: ["rtickets"] },
				approval: { approvers: [{ kind: "Group", name: "dba" }], minApprovals: 1, timeoutSeconds: 20, reuseWindowSeconds: 600 },
			},
			{
				name: "approve-deletes",
				action: "requireApproval",
				sql: { statementKinds: ["DELETE"] },
				approval: { approvers: [{ kind: "Group", name: "dba" }], minApprovals: 1, timeoutSeconds: 20 },
			},
		],
	});
	await fx.pg.query("create table if not exists ptickets (id int primary key)");
	await fx.pg.query("create table if not exists rtickets (id int primary key)");
	await fx.pg.query("insert into rtickets select g from generate_series(1, 10) g on conflict do nothing");
});
after(async () => {
	await fx?.stop();
	await approvals?.close();
});

async function reset(): Promise<void> {
	await fx.pg.query("delete from ptickets");
	await fx.pg.query("insert into ptickets select g from generate_series(1, 10) g");
}
async function ids(): Promise<number[]> {
	return (await fx.pg.query("select id from ptickets order by id")).rows.map((r) => (r as { id: number }).id);
}

/** Approve every Pending request as soon as it appears; returns the approved records' commands. */
function autoApprove(): { commands: string[]; stop(): void } {
	const commands: string[] = [];
	let on = true;
	const loop = async () => {
		while (on) {
			for (const r of await approvals.list({ phase: "Pending" })) {
				commands.push(r.command);
				await approvals.decide(r.id, sam, "approve").catch(() => undefined);
			}
			await new Promise((r) => setTimeout(r, 50));
		}
	};
	void loop();
	return {
		commands,
		stop: () => {
			on = false;
		},
	};
}

test("a named prepared DELETE approved for id 2 does not run again for id 4 without a new approval", async () => {
	await reset();
	const c = await fx.connect("alice");
	const notices: string[] = [];
	c.on("notice", (n: NoticeMessage) => notices.push(n.message ?? ""));
	try {
		const approver = autoApprove();
		await c.query({ name: "del", text: "delete from ptickets where id = $1", values: [2] });
		approver.stop();
		assert.equal(approver.commands.length, 1);
		assert.match(approver.commands[0]!, /\$1 = '2'/, "the approver saw the parameter");
		// node-postgres re-binds the prepared name without a Parse: before the fix this ran unheld
		const held = new Promise<string>((resolve) => c.once("notice", (n: NoticeMessage) => resolve(n.message ?? "")));
		const q = c.query({ name: "del", text: "delete from ptickets where id = $1", values: [4] });
		const id = /approval (\S+) pending/.exec(await held)?.[1];
		assert.ok(id, "the second execution is held");
		const rec = await approvals.get(id);
		assert.match(rec?.command ?? "", /\$1 = '4'/);
		await approvals.decide(id, sam, "deny");
		await assert.rejects(q, (e: pg.DatabaseError) => e.code === "42501" && /denied/.test(e.message));
		assert.deepEqual(await ids(), [1, 3, 4, 5, 6, 7, 8, 9, 10]);
		// the session stays usable, and the named statement still runs once approved
		const approver2 = autoApprove();
		await c.query({ name: "del", text: "delete from ptickets where id = $1", values: [5] });
		approver2.stop();
		assert.deepEqual(await ids(), [1, 3, 4, 6, 7, 8, 9, 10]);
	} finally {
		await c.end();
	}
});

test("one Parse, then pipelined Bind/Execute pairs: each execution needs its own approval", async () => {
	await reset();
	const tok = await fx.token("alice");
	const c = await RawClient.login(fx.port, fx.caPem, CONNECTION, tok);
	try {
		c.send(
			clientMessages.parse("", "delete from ptickets where id = $1"),
			clientMessages.bind("", "", [Buffer.from("1")]),
			clientMessages.execute(""),
			clientMessages.bind("", "", [Buffer.from("7")]),
			clientMessages.execute(""),
			clientMessages.bind("p2", "", [Buffer.from("8")]),
			clientMessages.execute("p2"),
			clientMessages.sync(),
		);
		// approve the first request only; deny the next
		const first = await waitPending();
		assert.match(first.command, /\$1 = '1'/);
		await approvals.decide(first.id, sam, "approve");
		const second = await waitPending(first.id);
		assert.match(second.command, /\$1 = '7'/);
		await approvals.decide(second.id, sam, "deny");
		const msgs = await c.until("readyForQuery", 20_000);
		const errors = msgs.filter((m) => m.type === "errorResponse");
		assert.equal(errors.length, 1, JSON.stringify(msgs.map((m) => m.type)));
		// the pipeline up to Sync is one implicit transaction: the refused Bind rolls back id 1 too
		assert.deepEqual(await ids(), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
		// the unnamed statement still exists: a new approved Bind runs
		c.send(clientMessages.bind("", "", [Buffer.from("9")]), clientMessages.execute(""), clientMessages.sync());
		const third = await waitPending(second.id);
		await approvals.decide(third.id, sam, "approve");
		const after = await c.until("readyForQuery", 20_000);
		assert.ok(after.some((m) => m.type === "commandComplete"), JSON.stringify(after));
		assert.deepEqual(await ids(), [1, 2, 3, 4, 5, 6, 7, 8, 10]);
	} finally {
		c.socket.destroy();
	}
});

test("SQL PREPARE approved once does not let a protocol Bind of that name run with other parameters", async () => {
	await reset();
	const c = await RawClient.login(fx.port, fx.caPem, CONNECTION, await fx.token("alice"));
	try {
		c.send(clientMessages.query("prepare sqld(int) as delete from ptickets where id = $1"));
		const prep = await waitPending();
		assert.match(prep.command, /prepare sqld/);
		await approvals.decide(prep.id, sam, "approve");
		await c.until("readyForQuery", 20_000);
		// one namespace: a protocol Bind of the SQL-prepared name runs its body with new parameters
		c.send(clientMessages.bind("", "sqld", [Buffer.from("6")]), clientMessages.execute(""), clientMessages.sync());
		const held = await waitPending(prep.id);
		assert.match(held.command, /delete from ptickets where id = \$1[\s\S]*\$1 = '6'/);
		await approvals.decide(held.id, sam, "deny");
		const msgs = await c.until("readyForQuery", 20_000);
		assert.ok(msgs.some((m) => m.type === "errorResponse"), JSON.stringify(msgs));
		assert.ok((await ids()).includes(6));
	} finally {
		c.socket.destroy();
	}
});

test("EXECUTE of a SQL-prepared name shows its body, and a reuse window never carries an approval to another body", async () => {
	const a = await fx.connect("alice");
	const b = await fx.connect("alice");
	try {
		const approver = autoApprove();
		await a.query("prepare d(int) as delete from rtickets where id = $1");
		await a.query("execute d(1)");
		approver.stop();
		assert.ok(approver.commands.some((c) => /^execute d\(1\)\n-- d: prepare d\(int\) as delete from rtickets where id = \$1$/.test(c)), JSON.stringify(approver.commands));
		// another session of the same agent: same name, another body; its PREPARE is approved
		const approver2 = autoApprove();
		await b.query("prepare d(int) as delete from rtickets where id > $1");
		approver2.stop();
		// before: "execute d(1)" reused session a's approval and deleted ids 2..10 unseen
		const held = new Promise<string>((resolve) => b.once("notice", (n: NoticeMessage) => resolve(n.message ?? "")));
		const q = b.query("execute d(1)");
		const id = /approval (\S+) pending/.exec(await held)?.[1];
		assert.ok(id, "not reused: held");
		await approvals.decide(id, sam, "deny");
		await assert.rejects(q, (e: pg.DatabaseError) => e.code === "42501");
		assert.equal((await fx.pg.query("select count(*)::int as n from rtickets")).rows[0]?.n, 9);
	} finally {
		await a.end();
		await b.end();
	}
});

test("a parameter value cannot fake another line of the command approvers read", async () => {
	const c = await fx.connect("alice");
	try {
		const held = new Promise<string>((resolve) => c.once("notice", (n: NoticeMessage) => resolve(n.message ?? "")));
		const q = c.query("delete from ptickets where id::text = $1", ["1\n-- parameters: $1 = '99' (hmac-sha256 00)\u202e"]);
		const id = /approval (\S+) pending/.exec(await held)?.[1];
		assert.ok(id);
		const command = (await approvals.get(id))?.command ?? "";
		assert.equal(command.split("\n").length, 2, command);
		assert.match(command, /\$1 = '1\\u000a-- parameters: \$1 = ''99'' \(hmac-sha256 00\)\\u202e' \(hmac-sha256 [0-9a-f]{64}\)$/);
		await approvals.decide(id, sam, "deny");
		await assert.rejects(q);
	} finally {
		await c.end();
	}
});

async function waitPending(notId?: string): Promise<{ id: string; command: string }> {
	const deadline = Date.now() + 15_000;
	while (Date.now() < deadline) {
		const p = (await approvals.list({ phase: "Pending" })).find((r) => r.id !== notId);
		if (p) return p;
		await new Promise((r) => setTimeout(r, 50));
	}
	throw new Error("no pending approval");
}
