/**
 * The policy engineer's bypass corpus (gateway/policy/corpus/sql-bypass.ts) replayed end to end
 * through the real proxy against the seeded database: blocked cases must be refused by the gateway
 * (never run), approval cases must not run without approval (no approval service here: refused),
 * masked cases must run and must not show any original value of the listed columns.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import pg from "pg";
import { CORPUS_GUARDRAILS, CORPUS_MASK_RULES, SQL_BYPASS_CORPUS } from "../../gateway/policy/corpus/sql-bypass.ts";
import { type Fixture, startFixture } from "./fixture.ts";

let fx: Fixture;
/** Cases that need state the corpus cannot express: opened by the superuser in the same session is impossible, so the agent opens it. */
const EXTRA_SETUP: Record<string, string[]> = { "mask-fetch-unknown-cursor": ["select open_refcursor()"] };
const users = { "read-only": "ro", "read-write": "rw", admin: "adm" } as const;

before(async () => {
	fx = await startFixture({
		guardrails: CORPUS_GUARDRAILS,
		maskRules: CORPUS_MASK_RULES,
		grants: [
			{ name: "ro", user: "ro", access: "read-only" },
			{ name: "rw", user: "rw", access: "read-write" },
			{ name: "adm", user: "adm", access: "admin" },
		],
	});
	// the corpus' test-only relations (gateway/policy/corpus/catalog.ts)
	for (const sql of [
		"create table audit_copy (id int, email text, note text)",
		"create view contact_emails as select lower(customer_contacts.email) as contact from customer_contacts",
		"create schema billing",
		"create table billing.customers (id int, email text, iban text)",
		"insert into billing.customers select id, email, iban from public.customers",
		"create materialized view customer_mv as select id, card_number from customers",
		"create function get_email(int) returns text language sql as 'select email from customers where id = $1'",
		"create function public.lower(text) returns text language sql as 'select $1'",
		`create function open_refcursor() returns refcursor language plpgsql as $$
		 declare c refcursor := 'refcursor_from_function';
		 begin open c for select email from customers; return c; end $$`,
	]) {
		await fx.pg.query(sql);
	}
});
after(async () => {
	await fx?.stop();
});

async function direct(id: string, setup: string[] | undefined, sql: string): Promise<unknown[][] | undefined> {
	const c = await fx.pg.connect();
	try {
		await c.query("begin");
		for (const s of [...(EXTRA_SETUP[id] ?? []), ...(setup ?? [])]) await c.query(s);
		const r = await c.query({ text: sql, rowMode: "array" });
		return (Array.isArray(r) ? r.at(-1) : r).rows as unknown[][];
	} catch {
		return undefined;
	} finally {
		await c.query("rollback").catch(() => undefined);
		await c.end();
	}
}

test("bypass corpus end to end", async () => {
	const failures: string[] = [];
	const toCompare: { k: (typeof SQL_BYPASS_CORPUS)[number]; rows: unknown[][] }[] = [];
	for (const k of SQL_BYPASS_CORPUS) {
		if (process.env.CORPUS_DEBUG) console.log("case", k.id);
		const access = k.access ?? "read-only";
		const c = new pg.Client(fx.clientConfig(users[access], await fx.token(users[access])));
		c.on("error", () => undefined);
		await c.connect();
		const timer = setTimeout(() => {
			failures.push(`${k.id}: no answer in 10 s`);
			(c as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
		}, 10_000);
		try {
			await c.query("begin");
			let setupFailed: string | undefined;
			for (const s of [...(EXTRA_SETUP[k.id] ?? []), ...(k.setup ?? [])]) {
				await c.query(s).catch((e: Error) => {
					setupFailed = `${s}: ${e.message}`;
				});
			}
			if (setupFailed && k.expect === "masked") {
				failures.push(`${k.id}: setup failed (${setupFailed})`);
				continue;
			}
			let result: pg.QueryResult | pg.QueryResult[] | undefined;
			let error: pg.DatabaseError | undefined;
			try {
				result = await c.query({ text: k.sql, rowMode: "array" });
			} catch (e) {
				error = e as pg.DatabaseError;
			}
			if (k.expect === "blocked" || k.expect === "approval" || setupFailed) {
				if (!error) failures.push(`${k.id}: ran, expected ${k.expect} (${k.note})`);
				else if (!/^Drawbridge rule/.test(error.detail ?? "") && !setupFailed && !(error.code === "08P01" && /^malformed/.test(error.message))) {
					failures.push(`${k.id}: failed upstream (${error.code} ${error.message}), not refused by the gateway`);
				}
				continue;
			}
			if (error) {
				if (k.scrub) {
					// the statement fails at run time: its error must not print a masked value
					// emails, card and phone digits (a run of 5+ digits, +1-555-...), bytes printed as hex
					const text = `${error.message} ${error.detail ?? ""} ${error.hint ?? ""} ${error.where ?? ""}`;
					if (/@|\d{5,}|\d{3}-\d{4}|0x[0-9a-f]{2}\s+0x/.test(text)) failures.push(`${k.id}: error leaks: ${error.message}`);
					continue;
				}
				// refused by the gateway is conservative, not a leak
				if (!/^Drawbridge rule/.test(error.detail ?? "")) failures.push(`${k.id}: error ${error.code} ${error.message}`);
				continue;
			}
			const last = Array.isArray(result) ? result.at(-1)! : result!;
			if (k.width !== undefined && last.fields.length !== k.width) failures.push(`${k.id}: width ${last.fields.length} != ${k.width}`);
			toCompare.push({ k, rows: last.rows as unknown[][] });
		} finally {
			clearTimeout(timer);
			await c.query("rollback").catch(() => undefined);
			await c.end().catch(() => undefined);
		}
	}
	// compared after the gateway sessions rolled back (their row locks would block the direct run)
	for (const { k, rows } of toCompare) {
		const original = await direct(k.id, k.setup, k.sql);
		if (!original) {
			failures.push(`${k.id}: could not run directly for comparison`);
			continue;
		}
		for (const i of k.masked ?? []) {
			const secrets = new Set(original.map((r) => r[i]).filter((v) => v !== null && v !== "" && v !== undefined).map((v) => JSON.stringify(v)));
			const leaked = rows.find((row) => row[i] !== null && secrets.has(JSON.stringify(row[i])));
			if (leaked) failures.push(`${k.id}: column ${i} leaked ${JSON.stringify(leaked[i]).slice(0, 60)} (${k.note})`);
		}
	}
	assert.deepEqual(failures, [], `${failures.length} of ${SQL_BYPASS_CORPUS.length} corpus cases failed:\n${failures.join("\n")}`);
});
