/**
 * Red-team regression (approvals): an SSH approval was for the command text only, not for the login
 * it runs as. A grant with several logins (`app`, `root`) let the agent get `echo deploy-1` approved as
 * the unprivileged login and, inside the rule's reuse window, run the same command as root without
 * asking; approvers were never shown which login a held command would run as. The command approvers
 * see (and reuse compares) now starts with the login. Also: a block rule merged while a command
 * waited did not stop it once approved; now it wins. Real OpenSSH server behind the real gateway,
 * ssh2 as the agent's client, the approvals service the gateway uses.
 */
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { after, before, test } from "node:test";
import type { ConfigBundle } from "../../gateway/config/bundle.ts";
import type { BundleStore } from "../../gateway/config/store.ts";
import type { ApprovalRequestRecord } from "../../gateway/approvals/types.ts";
import { type SshListener, startSshListener } from "../../gateway/ssh/listener.ts";
import { type SshdHandle, startSshd } from "../env/index.ts";
import {
	approvalService,
	approver,
	makeBundle,
	MemoryRecorder,
	sshdConnection,
	sshdCredentials,
	sshGrant,
	storeWith,
	type TokenIssuer,
	tokenIssuer,
	waitUntil,
} from "../ssh/fixtures.ts";
import { KeyDir } from "../ssh/keys.ts";

const ssh2 = createRequire(import.meta.url)("ssh2") as typeof import("ssh2");
type Client = InstanceType<typeof ssh2.Client>;

const keys = new KeyDir();
const SECOND_LOGIN = "root";
let sshd: SshdHandle;
let issuer: TokenIssuer;
let gw: SshListener;
let store: BundleStore;
let bundleParts: Partial<ConfigBundle>;
const approvals = approvalService();
const recorder = new MemoryRecorder();

before(async () => {
	issuer = await tokenIssuer();
	sshd = await startSshd();
	assert.notEqual(sshd.user, SECOND_LOGIN, "the test needs two different logins");
	const connection = sshdConnection(sshd, "db-primary");
	bundleParts = {
			connections: [connection],
			grants: [
				sshGrant(sshd, "lee", "db-primary", { logins: [sshd.user, SECOND_LOGIN] }),
			],
			guardrailPolicies: [
				{
					key: "ops/ssh-prod",
					selector: { matchLabels: { env: "prod" } },
					rules: [
						{
							name: "approve-deploy",
							action: "requireApproval",
							ssh: { commands: ["echo deploy-*"] },
							approval: { approvers: [{ kind: "User", name: "sam" }], minApprovals: 1, timeoutSeconds: 30, reuseWindowSeconds: 600 },
						},
					],
				},
			],
			credentials: sshdCredentials(sshd),
		};
	store = storeWith(makeBundle(issuer, bundleParts));
	gw = await startSshListener({ store, recorder, approvals, hostKeyPem: keys.keygen("ed25519").privateKey });
});

after(async () => {
	await gw?.close();
	await approvals.close();
	await sshd?.stop();
	keys.cleanup();
});

async function connect(login: string): Promise<Client> {
	const token = await issuer.token("lee");
	return new Promise((resolve, reject) => {
		const c = new ssh2.Client();
		c.on("ready", () => resolve(c));
		c.on("error", reject);
		c.connect({ host: "127.0.0.1", port: gw.address.port, username: `${login}@db-primary`, password: token, hostVerifier: () => true });
	});
}

/** Exec `command`; approve or deny the request it raises. Returns the request (undefined if none was made) and the output. */
async function exec(c: Client, command: string, seen: Set<string>, decision: "approve" | "deny"): Promise<{ held?: ApprovalRequestRecord; out: string; code?: number }> {
	return new Promise((resolve, reject) => {
		c.exec(command, (err, stream) => {
			if (err) return reject(err);
			let out = "";
			let closed = false;
			let held: ApprovalRequestRecord | undefined;
			stream.on("data", (d: Buffer) => (out += d.toString()));
			stream.stderr.on("data", (d: Buffer) => (out += d.toString()));
			stream.on("close", (code: number | undefined) => {
				closed = true;
				resolve({ ...(held ? { held } : {}), out, ...(code !== undefined ? { code } : {}) });
			});
			void (async () => {
				await waitUntil(`${command} held or finished`, () => closed || /approval \S+ pending/.test(out), 15_000);
				const id = /approval (\S+) pending/.exec(out)?.[1];
				if (closed || !id || seen.has(id)) return;
				seen.add(id);
				held = await approvals.get(id);
				await approvals.decide(id, approver("sam"), decision);
			})().catch(reject);
		});
	});
}

test("an approval given for one login is neither shown as nor reused for another", async () => {
	const seen = new Set<string>();
	const app = await connect(sshd.user);
	try {
		const first = await exec(app, "echo deploy-1", seen, "approve");
		assert.ok(first.held, "held the first time");
		assert.equal(first.held.command, `as login "${sshd.user}": echo deploy-1`, "the approver sees the login");
		assert.match(first.out, /deploy-1/);
		// the same login inside the window: reused, as the rule says
		const again = await exec(app, "echo deploy-1", seen, "deny");
		assert.equal(again.held, undefined, "reused for the same login");
		assert.match(again.out, /deploy-1/);
	} finally {
		app.end();
	}
	const root = await connect(SECOND_LOGIN);
	try {
		const other = await exec(root, "echo deploy-1", seen, "deny");
		assert.ok(other.held, `the same command as ${SECOND_LOGIN} is asked for again: ${other.out}`);
		assert.match(other.held.command, new RegExp(`^as login "${SECOND_LOGIN}": echo deploy-1$`));
		assert.equal(other.code, 1);
		assert.match(other.out, /denied/);
	} finally {
		root.end();
	}
});

test("a block rule merged while a command waits for approval wins over the approval", async () => {
	const c = await connect(sshd.user);
	try {
		const out = await new Promise<{ out: string; code?: number }>((resolve, reject) => {
			c.exec("echo deploy-blocked", (err, stream) => {
				if (err) return reject(err);
				let text = "";
				stream.on("data", (d: Buffer) => (text += d.toString()));
				stream.stderr.on("data", (d: Buffer) => (text += d.toString()));
				stream.on("close", (code: number | undefined) => resolve({ out: text, ...(code !== undefined ? { code } : {}) }));
				void (async () => {
					await waitUntil("held", () => /approval \S+ pending/.test(text), 15_000);
					const id = /approval (\S+) pending/.exec(text)![1]!;
					const policies = bundleParts.guardrailPolicies!;
					const blocking = [{ ...policies[0]!, rules: [{ name: "no-deploys", action: "block" as const, ssh: { commands: ["echo deploy-*"] } }, ...policies[0]!.rules] }];
					assert.ok(store.update(makeBundle(issuer, { ...bundleParts, guardrailPolicies: blocking }, store.current.version + 1)));
					await approvals.decide(id, approver("sam"), "approve");
				})().catch(reject);
			});
		});
		assert.equal(out.code, 1, out.out);
		assert.match(out.out, /no-deploys|does not override/);
		assert.doesNotMatch(out.out, /^deploy-blocked$/m, "the command did not run");
	} finally {
		c.end();
	}
});
