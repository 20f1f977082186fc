/**
 * A real sshd behind the gateway with one grant ("lee" on Connection "web") and no guardrail rule,
 * recording into a MemoryRecorder; `login()` connects an ssh2 client with lee's token as password.
 * For tests of what a session leaves in its recording.
 */
import { createRequire } from "node:module";
import { after, before } from "node:test";
import type { BundleGrant } from "../../gateway/config/bundle.ts";
import { type SshListener, startSshListener } from "../../gateway/ssh/listener.ts";
import { type SshdHandle, startSshd } from "../env/index.ts";
import { approvalService, MemoryRecorder, makeBundle, sshdConnection, sshdCredentials, sshGrant, storeWith, type TokenIssuer, tokenIssuer } from "./fixtures.ts";
import { KeyDir } from "./keys.ts";

const ssh2 = createRequire(import.meta.url)("ssh2") as typeof import("ssh2");

export interface RecordedGateway {
	readonly recorder: MemoryRecorder;
	issuer: TokenIssuer;
	sshd: SshdHandle;
	gw: SshListener;
	/** An ssh2 client logged in through the gateway as lee (the caller ends it). */
	login(): Promise<import("ssh2").Client>;
}

/** Starts sshd and the gateway before the file's tests, with the grant's `ssh` terms, and stops them after. */
export function recordedGateway(ssh: Partial<NonNullable<BundleGrant["ssh"]>>): RecordedGateway {
	const keys = new KeyDir();
	const w = { recorder: new MemoryRecorder() } as RecordedGateway;
	before(async () => {
		w.issuer = await tokenIssuer();
		w.sshd = await startSshd();
		const store = storeWith(
			makeBundle(w.issuer, { connections: [sshdConnection(w.sshd, "web")], grants: [sshGrant(w.sshd, "lee", "web", ssh)], credentials: sshdCredentials(w.sshd) }),
		);
		w.gw = await startSshListener({ store, recorder: w.recorder, approvals: approvalService(), hostKeyPem: keys.keygen("ed25519").privateKey });
	});
	after(async () => {
		await w.gw?.close();
		await w.sshd?.stop();
		keys.cleanup();
	});
	w.login = async () => {
		const token = await w.issuer.token("lee");
		const c = new ssh2.Client();
		await new Promise<void>((resolve, reject) => {
			c.on("ready", () => resolve());
			c.on("error", reject);
			c.connect({ host: "127.0.0.1", port: w.gw.address.port, username: `${w.sshd.user}@web`, password: token, hostVerifier: () => true });
		});
		return c;
	};
	return w;
}
