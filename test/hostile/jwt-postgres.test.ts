/**
 * JWT attack corpus through the REAL PostgreSQL listener (node-postgres over TLS, real PostgreSQL
 * behind): every forged or unacceptable token is refused with FATAL 28P01 (token rejected, with the
 * IdentityError code in DETAIL) or 28000 (valid token, no grant here), the message never echoes the
 * token, the attacker's jku/x5u endpoint is never contacted, and the gateway keeps serving.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import { printLogsOnFailure } from "../env/index.ts";
import { type GatewayFixture, OIDC_ISSUER, startGatewayFixture } from "../faults/fixture.ts";
import { JWT_ATTACKS, type JkuTrap, type Minter, startJkuTrap, tokenEchoed } from "./jwt-attacks.ts";

let f: GatewayFixture;
let trap: JkuTrap;
let minter: Minter;

before(async () => {
	[f, trap] = await Promise.all([startGatewayFixture(), startJkuTrap()]);
	minter = {
		token: (sub, o) => f.token(sub, o),
		oidcIssuer: OIDC_ISSUER,
		oidcPublicJwk: f.oidcPublicJwk,
		grantedUser: "alice",
		otherConnectionGrant: "team/carol-reporting",
		thisConnectionGrant: "team/alice-rw",
	};
});
after(async () => {
	await f?.stop();
	await trap?.close();
});
printLogsOnFailure(() => [["postgres", f?.pg]]);

interface Refusal {
	code: string;
	severity: string;
	message: string;
	detail: string;
}

async function attempt(user: string, password: string): Promise<Refusal> {
	const c = new pg.Client(f.clientConfig(user, password));
	c.on("error", () => undefined);
	try {
		await c.connect();
	} catch (e) {
		const x = e as { code?: string; severity?: string; message?: string; detail?: string };
		return { code: x.code ?? "", severity: x.severity ?? "", message: x.message ?? "", detail: x.detail ?? "" };
	} finally {
		await c.end().catch(() => undefined);
	}
	throw new Error("connection was accepted");
}

async function stillServes(): Promise<void> {
	const c = await f.connect("alice");
	try {
		const r = await c.query("SELECT count(*)::int AS n FROM orders");
		assert.equal(r.rows[0].n, 400);
	} finally {
		await c.end();
	}
}

describe("JWT attack corpus through the PostgreSQL listener", () => {
	test("control: a valid token for a granted user connects", async () => {
		await stillServes();
	});

	for (const a of JWT_ATTACKS) {
		test(`${a.id}: ${a.note} → refused (${a.expect})`, async () => {
			const token = await a.make(minter, trap);
			const r = await attempt("alice", token);
			assert.equal(r.severity, "FATAL", JSON.stringify(r));
			const expected = a.expect.split("|");
			if (a.expect === "no-grant") {
				assert.equal(r.code, "28000", JSON.stringify(r));
				assert.match(r.message, /no grant matches|access denied/);
			} else if (r.code === "08P01") {
				assert.ok(expected.includes("oversized"), JSON.stringify(r));
				assert.match(r.message, /too large|exceeds/i);
			} else {
				assert.equal(r.code, "28P01", JSON.stringify(r));
				assert.match(r.message, /^token rejected: /);
				const reason = /reason: ([a-z-]+)/.exec(r.detail)?.[1];
				assert.ok(reason && expected.includes(reason), `expected ${a.expect}, got ${JSON.stringify(r)}`);
			}
			assert.ok(!tokenEchoed(`${r.message} ${r.detail}`, token), "the error message echoes the token");
		});
	}

	test("the attacker's jku/x5u endpoint was never fetched", () => {
		assert.equal(trap.hits, 0);
	});

	test("a 2 MiB password is refused as too large (08P01) before any verification", async () => {
		const r = await attempt("alice", `${await f.token("alice")}${"x".repeat(2 * 1024 * 1024)}`);
		assert.equal(r.code, "08P01", JSON.stringify(r));
		assert.match(r.message, /too large|exceeds|limit/i);
	});

	test("an empty password is refused as malformed", async () => {
		const r = await attempt("alice", "");
		assert.ok(r.code === "28P01" || r.code === "08P01", JSON.stringify(r));
	});

	test("a token for bob (read-only) replayed with user=alice in the startup packet still acts as bob", async () => {
		// The startup user name is not an identity: the token is.
		const c = new pg.Client(f.clientConfig("alice", await f.token("bob")));
		c.on("error", () => undefined);
		await c.connect();
		try {
			await assert.rejects(c.query("DELETE FROM orders WHERE id = -1"), (e: { code?: string }) => e.code === "42501" || e.code === "25006");
		} finally {
			await c.end();
		}
	});

	test("after the whole corpus, the gateway still serves concurrent sessions", async () => {
		await Promise.all([stillServes(), stillServes(), stillServes()]);
		assert.equal(f.gateway.sessionCount, 0);
	});
});
