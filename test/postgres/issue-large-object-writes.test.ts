// Regression (red-team round 8: guardrails and access levels). Large objects (files an application
// keeps with lo_import/JDBC Blobs) are rows of pg_largeobject, but the functions that remove or
// change them carried no statement kind of the write they make. Through the real gateway to a real
// PostgreSQL, a read-write grant under the example policy's `delete-needs-approval` (requireApproval
// on DELETE) ran SELECT lo_unlink(<oid>) and the document was gone with nobody asked; under a rule
// blocking UPDATE, lo_put and lo_truncate rewrote it. They carry DELETE, UPDATE or INSERT now (and
// name pg_catalog.pg_largeobject for table rules).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type pg from "pg";
import type { NoticeMessage } from "pg-protocol/dist/messages.js";
import type { StoreApprovalService } from "../../gateway/approvals/service.ts";
import { printLogsOnFailure } from "../env/index.ts";
import { APPROVER_SAM, type Fixture, localApprovals, refusedByRule, startFixture } from "./fixture.ts";

describe("large-object writes carry the kind of the write they make", () => {
	let fx: Fixture;
	let approvals: StoreApprovalService;
	let doc = 0;
	before(async () => {
		approvals = localApprovals();
		fx = await startFixture({
			approvals,
			guardrails: [
				{
					name: "delete-needs-approval",
					action: "requireApproval",
					sql: { statementKinds: ["DELETE"] },
					approval: { approvers: [{ kind: "Group", name: "dba" }], minApprovals: 1, timeoutSeconds: 20 },
				},
				{ name: "no-updates", action: "block", sql: { statementKinds: ["UPDATE"] } },
				{ name: "no-large-object-inserts", action: "block", sql: { statementKinds: ["INSERT"], tables: ["pg_catalog.pg_largeobject"] } },
			],
		});
		doc = (await fx.pg.query("SELECT lo_from_bytea(0, 'signed contract')::int AS oid")).rows[0]!.oid as number;
	});
	after(async () => {
		await fx?.stop();
		await approvals?.close();
	});
	printLogsOnFailure(() => [["postgres", fx?.pg]]);
	const content = async (): Promise<string> => (await fx.pg.query(`SELECT convert_from(lo_get(${doc}), 'UTF8') AS t`)).rows[0]!.t as string;

	test("lo_unlink waits for approval like a DELETE", async () => {
		const c = await fx.connect("alice");
		try {
			const held = new Promise<string>((resolve) => c.once("notice", (n: NoticeMessage) => resolve(n.message ?? "")));
			const q = c.query(`SELECT lo_unlink(${doc})`);
			q.catch(() => undefined);
			// ran at once before (nobody was asked): the query settling first fails the test
			const first = await Promise.race([held, q.then(() => "ran unheld", () => "refused unheld")]);
			const id = /approval (\S+) pending/.exec(first)?.[1];
			assert.ok(id, `held for approval: ${first}`);
			await approvals.decide(id, APPROVER_SAM, "deny");
			await assert.rejects(q, (e: pg.DatabaseError) => e.code === "42501" && /denied/.test(e.message));
			assert.equal(await content(), "signed contract");
		} finally {
			await c.end();
		}
	});

	test("lo_put, lo_truncate and lowrite are UPDATEs; creating one is an INSERT into pg_largeobject", async () => {
		const c = await fx.connect("alice");
		try {
			for (const sql of [`SELECT lo_put(${doc}, 0, 'forged')`, `SELECT lo_truncate(lo_open(${doc}, 131072), 0)`, `SELECT lowrite(lo_open(${doc}, 131072), 'forged')`]) {
				await c.query("BEGIN");
				await assert.rejects(c.query(sql), refusedByRule("no-updates"), sql);
				await c.query("ROLLBACK");
			}
			await assert.rejects(c.query("SELECT lo_from_bytea(0, 'x')"), refusedByRule("no-large-object-inserts"));
			assert.equal(await content(), "signed contract");
			// reading it stays allowed
			assert.equal((await c.query(`SELECT convert_from(lo_get(${doc}), 'UTF8') AS t`)).rows[0].t, "signed contract");
		} finally {
			await c.end();
		}
	});
});
