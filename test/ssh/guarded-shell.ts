/**
 * The world of the shell-line guard's tests: a real sshd, the gateway in front of it with a grant
 * that allows a shell and a GuardrailPolicy rule blocking `touch *` (so every line's Enter waits for
 * its decision), an agent with a user certificate, and interactive OpenSSH `ssh -tt` sessions.
 * `marker` is the file a `touch` that got through would create.
 */
import { spawn } from "node:child_process";
import { rmSync } from "node:fs";
import { after, before } from "node:test";
import type { BundleGrant } from "../../gateway/config/bundle.ts";
import { type SshListener, startSshListener } from "../../gateway/ssh/listener.ts";
import { type SshdHandle, startSshd } from "../env/index.ts";
import { agentSshFiles, approvalService, MemoryRecorder, makeBundle, sshdConnection, sshdCredentials, sshGrant, storeWith, type TokenIssuer, tokenIssuer, waitUntil } from "./fixtures.ts";
import { KeyDir, type KeyPair } from "./keys.ts";

export interface GuardedShell {
	readonly marker: string;
	readonly recorder: MemoryRecorder;
	readonly keys: KeyDir;
	issuer: TokenIssuer;
	sshd: SshdHandle;
	gw: SshListener;
	agent: KeyPair;
	knownHosts: string;
	certFile: string;
	/** An interactive `ssh -tt` session: `type` writes keystrokes, `waitFor` waits for output. */
	session(): InteractiveSsh;
}

export interface InteractiveSsh {
	output(): string;
	type(keys: string): void;
	waitFor(re: RegExp, orElse?: () => boolean): Promise<void>;
	end(): Promise<void>;
}

/**
 * Starts the world before the file's tests and stops it after. `ssh`: the grant's ssh terms beyond
 * `allowShell`; `sshdConfig`: extra sshd_config lines, read when sshd starts (after the file's own
 * earlier `before` hooks).
 */
export function guardedShell(name: string, o: { ssh?: Partial<NonNullable<BundleGrant["ssh"]>>; sshdConfig?: () => string[] } = {}): GuardedShell {
	const w = { marker: `/tmp/drawbridge-${name}-${process.pid}`, recorder: new MemoryRecorder(), keys: new KeyDir() } as GuardedShell;
	before(async () => {
		w.issuer = await tokenIssuer();
		w.sshd = await startSshd(o.sshdConfig ? { extraConfig: o.sshdConfig() } : {});
		const ca = w.keys.keygen("ed25519");
		w.agent = w.keys.keygen("ed25519");
		const store = storeWith(
			makeBundle(w.issuer, {
				connections: [sshdConnection(w.sshd, "web")],
				grants: [sshGrant(w.sshd, "lee", "web", { allowShell: true, ...o.ssh })],
				guardrailPolicies: [{ key: "ops/web-rules", selector: { matchLabels: { env: "prod" } }, rules: [{ name: "no-touch", action: "block", ssh: { commands: ["touch *"] } }] }],
				ssh: { userCaKeys: [ca.publicKey] },
				credentials: sshdCredentials(w.sshd),
			}),
		);
		w.gw = await startSshListener({ store, recorder: w.recorder, approvals: approvalService(), hostKeyPem: w.keys.keygen("ed25519").privateKey });
		({ knownHosts: w.knownHosts, certFile: w.certFile } = agentSshFiles(w.keys, w.gw, ca, w.agent, w.sshd.user));
	});
	after(async () => {
		rmSync(w.marker, { force: true });
		await w.gw?.close();
		await w.sshd?.stop();
		w.keys.cleanup();
	});
	w.session = () => {
		const args = ["-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", `UserKnownHostsFile=${w.knownHosts}`];
		args.push("-o", "IdentitiesOnly=yes", "-i", w.agent.path, "-o", `CertificateFile=${w.certFile}`, "-tt", "-p", String(w.gw.address.port), "-l", `${w.sshd.user}@web`, "127.0.0.1");
		const child = spawn("ssh", args);
		let out = "";
		child.stdout.on("data", (b: Buffer) => (out += b.toString()));
		child.stderr.on("data", (b: Buffer) => (out += b.toString()));
		const closed = new Promise<void>((resolve) => child.on("close", () => resolve()));
		return {
			output: () => out,
			type: (s: string) => void child.stdin.write(s),
			waitFor: (re: RegExp, orElse: () => boolean = () => false) => waitUntil(`${re} in the terminal`, () => re.test(out) || orElse(), 20_000),
			end: async () => {
				child.stdin.write("\x03exit\n");
				await Promise.race([closed, new Promise((r) => setTimeout(r, 5000))]);
				child.kill();
			},
		};
	};
	return w;
}
