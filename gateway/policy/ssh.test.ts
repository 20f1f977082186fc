import assert from "node:assert/strict";
import { test } from "node:test";
import type { BundleGrant, GuardrailRule } from "../config/bundle.ts";
import { evaluateSshAccess, evaluateSshCommand, forwardAllowed, parseShellCommand } from "./ssh.ts";

type SshGrant = NonNullable<BundleGrant["ssh"]>;
const OPEN: SshGrant = { logins: ["lee"], allowShell: true, allowSftp: false, allowPortForwarding: false, allowAgentForwarding: false };
const RESTRICTED: SshGrant = { ...OPEN, allowShell: false, allowedCommands: ["systemctl status *", "sudo systemctl restart postgresql", "journalctl *"] };
const RULES: GuardrailRule[] = [
	{ name: "no-rm-rf", action: "block", ssh: { commands: ["rm -rf *", "rm -fr *"] } },
	{ name: "approve-restart", action: "requireApproval", ssh: { commands: ["systemctl restart *"] } },
	{ name: "audit-sudo", action: "audit", ssh: { commands: ["sudo *"] } },
];

test("shell parsing: chains, wrappers, substitutions, shells", () => {
	const cmds = (s: string) => parseShellCommand(s).segments.map((x) => x.command);
	assert.deepEqual(cmds("ls -l; echo hi && rm -rf /tmp/x || true | cat &"), ["ls -l", "echo hi", "rm -rf /tmp/x", "true", "cat"]);
	assert.deepEqual(cmds("sudo -u root /bin/rm -rf /"), ["rm -rf /"]);
	assert.deepEqual(cmds("FOO=1 env BAR=2 nohup nice -n 5 timeout 10 rm -rf /"), ["rm -rf /"]);
	assert.deepEqual(cmds("bash -c 'echo a; rm -rf /'"), ["bash -c echo a; rm -rf /", "echo a", "rm -rf /"]);
	assert.deepEqual(cmds(`sh -lc "sudo rm -rf /var"`), ["sh -lc sudo rm -rf /var", "rm -rf /var"]);
	assert.deepEqual(cmds("echo $(rm -rf /) `id`"), ["echo $(rm -rf /) `id`", "rm -rf /", "id"]);
	assert.deepEqual(cmds("r\\m -rf /"), ["rm -rf /"], "backslash inside a word");
	assert.deepEqual(cmds("'rm' \"-rf\" /"), ["rm -rf /"], "quoted words");
	assert.deepEqual(cmds("(cd /; rm -rf x)"), ["cd /", "rm -rf x"]);
	assert.deepEqual(cmds("ls # ; rm -rf /"), ["ls"], "comments end the line");
	assert.equal(parseShellCommand("echo 'unterminated").ok, false);
});

test("rules: denylist catches wrapped and chained commands", () => {
	for (const c of [
		"rm -rf /",
		"ls; rm -rf /",
		"true && sudo rm -rf /",
		"sudo -u root /usr/bin/rm -rf /srv",
		"bash -c 'cd / && rm -rf var'",
		"echo $(rm -rf /)",
		"env X=1 rm -fr /",
		"cat x | xargs rm -rf /tmp",
		"find / -name x -exec rm -rf {} \\;",
		"find /srv -execdir rm -rf {} +",
		"{ rm -rf /; }",
		"ls && { echo a; rm -rf /tmp; }",
	]) {
		const v = evaluateSshCommand(c, OPEN, RULES);
		assert.equal(v.action, "block", c);
		assert.equal(v.rule, "no-rm-rf");
	}
	assert.equal(evaluateSshCommand("sudo systemctl restart postgresql", OPEN, RULES).action, "requireApproval");
	assert.equal(evaluateSshCommand("sudo ls", OPEN, RULES).action, "audit");
	assert.equal(evaluateSshCommand("ls -la /var/log", OPEN, RULES).action, "allow", "control");
});

test("allowedCommands: every segment as written must be allowed", () => {
	assert.equal(evaluateSshCommand("systemctl status postgresql", RESTRICTED, []).action, "allow");
	assert.equal(evaluateSshCommand("sudo systemctl restart postgresql", RESTRICTED, RULES).action, "requireApproval");
	for (const c of [
		"systemctl status x; rm -rf /",
		"systemctl status $(rm -rf /)",
		"sudo systemctl status x",
		"systemctl restart postgresql",
		"journalctl -u x | sh",
		"systemctl status 'unterminated",
	]) {
		const v = evaluateSshCommand(c, RESTRICTED, [], "ops/lee");
		assert.equal(v.action, "block", c);
		assert.equal(v.rule, "grant:ops/lee");
	}
	assert.equal(evaluateSshCommand("ls", undefined, []).action, "block");
});

test("channel access: logins, shell, sftp, forwarding", () => {
	assert.equal(evaluateSshAccess({ login: "lee", request: "shell" }, OPEN).action, "allow");
	assert.equal(evaluateSshAccess({ login: "root", request: "shell" }, OPEN, "ops/lee").action, "block");
	assert.match(evaluateSshAccess({ login: "root", request: "exec" }, OPEN, "ops/lee").message!, /ops\/lee.*root/);
	assert.equal(evaluateSshAccess({ login: "lee", request: "shell" }, RESTRICTED).action, "block");
	assert.equal(evaluateSshAccess({ login: "lee", request: "sftp" }, OPEN).action, "block");
	assert.equal(evaluateSshAccess({ login: "lee", request: "port-forward" }, OPEN).action, "block");
	assert.equal(evaluateSshAccess({ login: "lee", request: "sftp" }, { ...OPEN, allowSftp: true }).action, "allow");
	assert.equal(evaluateSshAccess({ login: "lee", request: "x11" }, OPEN).action, "block");
});

test("port forwarding reaches only the grant's allowedForwards, spelled as listed", () => {
	const fwd = (host: string, port: number, allowedForwards?: string[]) =>
		evaluateSshAccess(
			{ login: "lee", request: "port-forward", destination: { host, port } },
			{ ...OPEN, allowPortForwarding: true, ...(allowedForwards ? { allowedForwards } : {}) },
			"ops/lee",
		);
	// allowPortForwarding without a list (a bundle from before allowedForwards): nothing.
	assert.match(fwd("127.0.0.1", 5432).message!, /ops\/lee" does not allow forwarding to 127\.0\.0\.1:5432 \(allowed: none/);
	assert.equal(evaluateSshAccess({ login: "lee", request: "port-forward" }, { ...OPEN, allowPortForwarding: true, allowedForwards: ["*:*"] }).action, "block");
	const list = ["localhost:5432", "DB.internal:*", "[::1]:6379", "*:8080"];
	assert.equal(fwd("localhost", 5432, list).action, "allow");
	assert.equal(fwd("LocalHost", 5432, list).action, "allow");
	assert.equal(fwd("db.internal", 22, list).action, "allow");
	assert.equal(fwd("::1", 6379, list).action, "allow");
	assert.equal(fwd("10.9.8.7", 8080, list).action, "allow");
	for (const [host, port] of [
		["localhost", 5433],
		["127.0.0.1", 5432], // another spelling of the same address: only as listed
		["localhost.", 5432],
		["127.1", 5432],
		["db.internal.evil.example", 22],
		["x.db.internal", 22],
		["[::1]", 6379],
		["0:0:0:0:0:0:0:1", 6379],
		["localhost\u0000x", 5432],
		["localhost", 70000], // a port over 65535 never matches
		["db.internal", 65558], // 22 + 65536
		["", 5432],
	] as const) {
		assert.equal(fwd(host, port, list).action, "block", `${host}:${port}`);
	}
	assert.equal(forwardAllowed(["*:*"], "anything", 1), "*:*");
	assert.equal(forwardAllowed(["*:*"], "anything", 65536), undefined);
	assert.equal(forwardAllowed(["*:*"], "anything", -1), undefined);
	assert.equal(forwardAllowed(["*:*"], "anything", 1.5), undefined);
	assert.equal(forwardAllowed(["host:022"], "host", 22), "host:022");
	assert.equal(forwardAllowed(["host"], "host", 22), undefined);
	assert.equal(forwardAllowed(["kube.internal:443"], "\u212Aube.internal", 443), undefined); // Kelvin sign: not ASCII K
	assert.equal(forwardAllowed(["kube.internal:443"], "KUBE.Internal", 443), "kube.internal:443");
	assert.equal(forwardAllowed(undefined, "host", 22), undefined);
});
