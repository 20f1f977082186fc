// `drawbridge gateway` option parsing for the PostgreSQL and SSH connection caps: flag, env twin,
// validation, and the --help text that documents them.
import assert from "node:assert/strict";
import { test } from "node:test";
import { GATEWAY_HELP, OptionsError, parseGatewayOptions } from "../../gateway/options.ts";

const BASE = ["--bundle-file", "/b.json", "--recordings-dir", "/r", "--postgres-listen", "127.0.0.1:5432", "--allow-insecure-password"];

function parse(argv: string[], env: NodeJS.ProcessEnv = {}) {
	const o = parseGatewayOptions([...BASE, ...argv], env, "host");
	assert.notEqual(o, "help");
	return o as Exclude<typeof o, "help">;
}

test("--postgres-max-connections: default 1000, flag, env twin, flag wins", () => {
	assert.equal(parse([]).postgresMaxConnections, 1000);
	assert.equal(parse(["--postgres-max-connections", "25"]).postgresMaxConnections, 25);
	assert.equal(parse([], { DRAWBRIDGE_POSTGRES_MAX_CONNECTIONS: "7" }).postgresMaxConnections, 7);
	assert.equal(parse(["--postgres-max-connections", "3"], { DRAWBRIDGE_POSTGRES_MAX_CONNECTIONS: "7" }).postgresMaxConnections, 3);
});

test("--postgres-max-connections must be a positive integer", () => {
	for (const bad of ["0", "-1", "1.5", "many"]) {
		assert.throws(() => parse([`--postgres-max-connections=${bad}`]), OptionsError, bad);
		assert.throws(() => parse([], { DRAWBRIDGE_POSTGRES_MAX_CONNECTIONS: bad }), OptionsError, bad);
	}
});

test("--help documents the cap and the drain refusal", () => {
	assert.match(GATEWAY_HELP, /--postgres-max-connections N\s+concurrent PostgreSQL connections at most; more are refused with\s+FATAL 53300 \(default 1000\)/);
	assert.match(GATEWAY_HELP, /--shutdown-grace-ms N[\s\S]*FATAL 57P03/);
});

test("--ssh-max-connections: default 1000, flag, env twin, flag wins", () => {
	assert.equal(parse([]).sshMaxConnections, 1000);
	assert.equal(parse(["--ssh-max-connections", "25"]).sshMaxConnections, 25);
	assert.equal(parse([], { DRAWBRIDGE_SSH_MAX_CONNECTIONS: "7" }).sshMaxConnections, 7);
	assert.equal(parse(["--ssh-max-connections", "3"], { DRAWBRIDGE_SSH_MAX_CONNECTIONS: "7" }).sshMaxConnections, 3);
});

test("--ssh-max-connections must be a positive integer", () => {
	for (const bad of ["0", "-1", "1.5", "many"]) {
		assert.throws(() => parse([`--ssh-max-connections=${bad}`]), OptionsError, bad);
		assert.throws(() => parse([], { DRAWBRIDGE_SSH_MAX_CONNECTIONS: bad }), OptionsError, bad);
	}
});

test("--help documents the SSH cap and what each protocol gets while draining", () => {
	assert.match(GATEWAY_HELP, /--ssh-max-connections N\s+concurrent SSH connections at most; more are disconnected before key\s+exchange with "connection limit was reached" \(default 1000\)/);
	assert.match(GATEWAY_HELP, /--shutdown-grace-ms N[\s\S]*57P03[\s\S]*SSH connections a\s+"shutting down" disconnect[\s\S]*Kubernetes requests 503 \+ Retry-After/);
});

test("--ssh-max-sessions / --ssh-max-auth-tries / --ssh-max-pending-approvals: defaults 10, 6, 3, flag, env twin, validated", () => {
	const d = parse([]);
	assert.deepEqual([d.sshMaxSessions, d.sshMaxAuthTries, d.sshMaxPendingApprovals], [10, 6, 3]);
	const f = parse(["--ssh-max-sessions", "4", "--ssh-max-auth-tries", "2", "--ssh-max-pending-approvals", "1"]);
	assert.deepEqual([f.sshMaxSessions, f.sshMaxAuthTries, f.sshMaxPendingApprovals], [4, 2, 1]);
	const e = parse([], { DRAWBRIDGE_SSH_MAX_SESSIONS: "5", DRAWBRIDGE_SSH_MAX_AUTH_TRIES: "3", DRAWBRIDGE_SSH_MAX_PENDING_APPROVALS: "2" });
	assert.deepEqual([e.sshMaxSessions, e.sshMaxAuthTries, e.sshMaxPendingApprovals], [5, 3, 2]);
	for (const flag of ["ssh-max-sessions", "ssh-max-auth-tries", "ssh-max-pending-approvals"]) {
		for (const bad of ["0", "-1", "1.5", "many"]) assert.throws(() => parse([`--${flag}=${bad}`]), OptionsError, `${flag}=${bad}`);
		assert.match(GATEWAY_HELP, new RegExp(`--${flag} N`));
	}
});
