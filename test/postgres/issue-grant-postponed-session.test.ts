/**
 * Regression: a grant whose window was moved into the future (git gives it a `notBefore` later than
 * now, e.g. "not until the maintenance window"; the operator marks it Pending and the bundle carries
 * the new start) kept its open PostgreSQL sessions running. New connections were refused ("not valid
 * before"), but the session check on a new bundle compared only access level, credential, subjects and
 * connection, so a session opened under the old window went on with a grant not in force. The SSH and
 * Kubernetes paths already ended theirs. Real PostgreSQL behind the gateway.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type pg from "pg";
import { printLogsOnFailure } from "../env/index.ts";
import { DEFAULT_GRANTS, type Fixture, startFixture } from "./fixture.ts";

let fx: Fixture;
before(async () => {
	fx = await startFixture();
});
after(async () => {
	await fx?.stop();
});
printLogsOnFailure(() => [["postgres", fx?.pg]]);

test("a grant postponed to a later start ends the open session with FATAL 57P01 naming the new start; recorded", async () => {
	const c = await fx.connect("alice");
	const ended = new Promise<pg.DatabaseError>((resolve) => c.on("error", (e) => resolve(e as pg.DatabaseError)));
	try {
		assert.equal((await c.query("select 1 as one")).rows[0].one, 1);
		// Same access, subjects and connection; only the window now starts in an hour.
		fx.store.update(fx.makeBundle(2, DEFAULT_GRANTS.map((g) => (g.user === "alice" ? { ...g, notBeforeMs: 3_660_000, expiresInMs: 7_200_000 } : g))));
		const e = await Promise.race([ended, new Promise<undefined>((r) => setTimeout(() => r(undefined), 5_000))]);
		assert.ok(e, "the session outlived a grant that is no longer in force");
		assert.equal(e.code, "57P01");
		assert.match(e.message, /grant team\/alice-rw is not valid before \d{4}-/);
		await assert.rejects(c.query("select 1"));
		const s = fx.recorder.sessions.find((x) => x.meta.grant === "team/alice-rw");
		await new Promise((r) => setTimeout(r, 100));
		assert.equal(s?.end?.reason, "policy");
		assert.match(s?.end?.message ?? "", /not valid before/);
	} finally {
		await c.end().catch(() => undefined);
	}
});

test("a bundle that leaves the grant in force (same terms, start still in the past) keeps the session", async () => {
	fx.store.update(fx.makeBundle(3, DEFAULT_GRANTS));
	const c = await fx.connect("alice");
	c.on("error", () => undefined);
	try {
		fx.store.update(fx.makeBundle(4, DEFAULT_GRANTS.map((g) => (g.user === "alice" ? { ...g, notBeforeMs: 30_000 } : g))));
		await new Promise((r) => setTimeout(r, 300));
		assert.equal((await c.query("select 2 as two")).rows[0].two, 2);
	} finally {
		await c.end().catch(() => undefined);
	}
});
