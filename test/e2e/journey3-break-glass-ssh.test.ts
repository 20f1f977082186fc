/**
 * Journey 3 (SCENARIOS.md), its SSH half, through the whole chain: the on-call break-glass grant is
 * merged as a pull request; the operator puts the db-primary Connection (`ssh.auth: certificate`), the
 * grant and its upstream SSH CA in the bundle; the target sshd trusts only that CA (fetched from the
 * operator's /ssh/upstream-ca.pub, as an admin would put it in TrustedUserCAKeys); Lee runs OpenSSH
 * `ssh -p <gateway> <login>@db-primary@gateway` with his OIDC token as the password; an allowed
 * command runs on the host with a per-session certificate the gateway signs, a command outside the
 * grant is refused, and the session is recorded with the pull request.
 *
 * The grant is examples/grants/oncall/break-glass.yaml with one change: its logins name the harness
 * sshd's login user (the test machine has no `lee` account), and `hostname` and `sleep *` join the
 * allowed commands. Last, a pull request removing the grant closes Lee's live session with a message.
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { parseAllDocuments } from "yaml";
import { printLogsOnFailure, run, type RunResult, type SshdHandle, startSshd } from "../env/index.ts";
import { drawbridge, GRANTS_NS, logsOf, ROOT, type Stack, startStack, waitFor } from "./stack.ts";

const PR = 2292;
let stack: Stack;
let sshd: SshdHandle;
let token = "";

const example = (path: string) => readFileSync(join(ROOT, "examples", path), "utf8");

before(async () => {
	stack = await startStack({ oidc: true });
	// The operator's upstream CA is what db-primary's sshd trusts for the gateway's per-session certificates.
	const upstreamCa = await waitFor("operator's upstream SSH CA", async () => {
		const r = await fetch(`http://127.0.0.1:${stack.operatorPort}/ssh/upstream-ca.pub`);
		return r.status === 200 ? (await r.text()).trim() : undefined;
	});
	sshd = await startSshd({ trustedUserCaKey: upstreamCa });
	const [, hostKeyType, hostKey] = /^(\S+)\s+(\S+)/.exec(sshd.hostPublicKey) ?? [];
	assert.ok(hostKeyType && hostKey, sshd.hostPublicKey);

	const docs = parseAllDocuments(example("grants/oncall/break-glass.yaml")).map((d) => d.toJS() as { metadata: { name: string }; spec: { ssh?: { logins: string[]; allowedCommands: string[] } } });
	const sshGrant = docs.find((d) => d.metadata.name === "oncall-break-glass-ssh")!;
	sshGrant.spec.ssh!.logins = [sshd.user];
	sshGrant.spec.ssh!.allowedCommands.push("hostname", "sleep *");
	await stack.git.commit("grants", {
		message: "db-primary and production guardrails",
		files: {
			"connections/db-primary.yaml": example("connections/db-primary.yaml")
				.replace("host: db-primary.prod.internal", "host: 127.0.0.1")
				.replace("port: 22", `port: ${sshd.port}`)
				.replace(/- ssh-ed25519 \S+ db-primary host key/, `- ${hostKeyType} ${hostKey} db-primary host key`),
			"policies/guardrails-prod.yaml": example("policies/guardrails-prod.yaml"),
		},
	});
	await stack.git.mergePullRequest("grants", {
		number: PR,
		branch: "inc-2291-ssh",
		org: "platform",
		title: "Break-glass SSH for INC-2291",
		files: { "grants/oncall/break-glass-ssh.yaml": JSON.stringify(sshGrant, null, 2) },
	});
	await stack.applyGitSource();
	await waitFor("ssh grant Active", async () => {
		const r = await stack.kube.request<{ status?: { phase?: string } }>("GET", `/apis/access.drawbridge.dev/v1alpha1/namespaces/${GRANTS_NS}/accessgrants/oncall-break-glass-ssh`);
		return r.status === 200 && r.body.status?.phase === "Active";
	});
	await stack.startGateway();
	token = await stack.oidc!.idToken("lee");
});
after(async () => {
	await stack?.stop();
	await sshd?.stop();
});
printLogsOnFailure(() => [...logsOf(stack), ["sshd", sshd]]);

/** OpenSSH `ssh` to the gateway, the token given as the password through SSH_ASKPASS (no tty). */
function sshViaGateway(command: string): Promise<RunResult> {
	const askpass = join(stack.dir, "askpass.sh");
	const tokenFile = join(stack.dir, "lee.token");
	writeFileSync(tokenFile, token, { mode: 0o600 });
	writeFileSync(askpass, `#!/bin/sh\ncat '${tokenFile}'\n`, { mode: 0o700 });
	const knownHosts = join(stack.dir, "gateway_known_hosts");
	writeFileSync(knownHosts, `${stack.gatewayKnownHosts}\n`);
	return run(
		"ssh",
		[
			"-F", "/dev/null",
			"-o", "StrictHostKeyChecking=yes",
			"-o", `UserKnownHostsFile=${knownHosts}`,
			"-o", "PreferredAuthentications=password",
			"-o", "PubkeyAuthentication=no",
			"-o", "NumberOfPasswordPrompts=1",
			"-o", "ConnectTimeout=20",
			"-p", String(stack.gatewayPorts.ssh),
			`${sshd.user}@db-primary@127.0.0.1`,
			command,
		],
		{ env: { PATH: process.env.PATH ?? "", HOME: stack.dir, SSH_ASKPASS: askpass, SSH_ASKPASS_REQUIRE: "force", DISPLAY: "none" } },
	);
}

test("journey 3 (ssh): Lee's ssh through the gateway runs an allowed command on the host; a command outside the grant is refused", { timeout: 240_000 }, async () => {
	const r = await waitFor("ssh through the gateway", async () => {
		const x = await sshViaGateway("hostname");
		if (x.code !== 0) throw new Error(`exit ${x.code}: ${x.stderr}`);
		return x;
	}, 60_000, 1_000);
	const local = (await run("hostname", [])).stdout.trim();
	assert.equal(r.stdout.trim(), local, "ran on the target host");
	// sshd saw a certificate signed by the operator's upstream CA, not Lee's token.
	assert.match(sshd.logs(), /Accepted publickey for \S+ from 127\.0\.0\.1.*(CERT|cert)/i);

	const refused = await sshViaGateway("cat /etc/shadow");
	assert.notEqual(refused.code, 0);
	assert.match(refused.stderr, /grant "platform\/oncall-break-glass-ssh" does not allow the command "cat \/etc\/shadow"/, refused.stderr);
});

test("journey 4 on this session: recorded with the pull request, the refused command visible", { timeout: 180_000 }, async () => {
	assert.ok(token);
	const env = { DRAWBRIDGE_RECORDINGS_DIR: join(stack.dir, "recordings") };
	const listed = await waitFor("ssh sessions recorded", async () => {
		const r = await drawbridge(["recordings", "list", "--connection", "db-primary", "--json"], env);
		const rows = r.code === 0 ? r.stdout.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as { sessionId: string; pullRequest?: unknown; protocol?: string }) : [];
		return rows.length >= 2 ? rows : undefined;
	}, 60_000, 1_000);
	for (const s of listed) {
		assert.equal(s.protocol, "ssh");
		assert.equal(String(s.pullRequest), String(PR));
	}
	const shows = await Promise.all(listed.map((s) => drawbridge(["recordings", "show", s.sessionId], env)));
	const all = shows.map((s) => s.stdout).join("\n");
	assert.match(all, /EXEC\s+ALLOW\s+hostname/, all);
	assert.match(all, /EXEC\s+BLOCK\s+cat \/etc\/shadow/, all);
	const verify = await drawbridge(["recordings", "verify", "--all", "--connection", "db-primary"], env);
	assert.equal(verify.code, 0, `${verify.stdout}\n${verify.stderr}`);
});

test("revoking in git: a PR removing the grant closes Lee's live ssh session with a message naming it; recorded as grant-revoked", { timeout: 240_000 }, async () => {
	assert.ok(token);
	const live = sshViaGateway("sleep 300");
	await waitFor("sleep running on the target", async () => /\bsleep 300\b/.test((await run("pgrep", ["-a", "-x", "sleep"])).stdout), 60_000, 250);
	await stack.git.mergePullRequest("grants", {
		number: PR + 1,
		branch: "inc-2291-ssh-done",
		org: "platform",
		title: "INC-2291 resolved: remove break-glass SSH",
		files: { "grants/oncall/break-glass-ssh.yaml": null },
	});
	const r = await live;
	assert.notEqual(r.code, 0);
	assert.match(r.stderr, /drawbridge: grant platform\/oncall-break-glass-ssh was revoked; closing the session/, r.stderr);
	const env = { DRAWBRIDGE_RECORDINGS_DIR: join(stack.dir, "recordings") };
	const ended = await waitFor("the cut session's recording", async () => {
		const l = await drawbridge(["recordings", "list", "--connection", "db-primary", "--json"], env);
		if (l.code !== 0) return undefined;
		const ids = l.stdout.trim().split("\n").filter(Boolean).map((x) => String((JSON.parse(x) as { sessionId: string }).sessionId));
		const shows = await Promise.all(ids.map((id) => drawbridge(["recordings", "show", id], env)));
		return shows.find((x) => /Ended\s+grant-revoked/.test(x.stdout));
	}, 60_000, 1_000);
	// The command still running at the cut is in the timeline (it used to be recorded only at its exit,
	// which never came: the session showed no command at all).
	assert.match(ended.stdout, /EXEC\s+ALLOW\s+sleep 300/, ended.stdout);
	const again = await sshViaGateway("hostname");
	assert.notEqual(again.code, 0, "a new session is refused");
});
