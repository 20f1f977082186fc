/**
 * Regression: after SIGTERM the leader sometimes kept its Lease until it expired, so the standby took
 * over 7–11 s later instead of at once (test/operator/replicas.test.ts failed now and then with
 * "standby took over 8790 ms after SIGTERM"). Two causes, one test each:
 *
 * 1. `LeaderElector.stop()` did not wait for the acquire/renew round in flight. That round, still
 *    running, either renewed the Lease between the release's read and write (the release then failed
 *    with 409 Conflict) or read the Lease just released and took it back. Reproduced deterministically
 *    with a TCP relay in front of the real kube-apiserver that freezes the round's request until the
 *    release is done.
 * 2. (next commit) slow work in flight at SIGTERM.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { type AddressInfo, type Socket, connect, createServer as createTcpServer } from "node:net";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { printLogsOnFailure } from "../env/index.ts";
import { KubeClient } from "../../operator/kube/client.ts";
import { LeaderElector } from "../../operator/leader.ts";
import { type Env, OP_NS, startEnv, stopEnv, waitFor } from "./helpers.ts";

let env: Env;

before(async () => {
	env = await startEnv();
});
after(async () => {
	await stopEnv(env);
});
printLogsOnFailure(() => [["kube", env?.kube]]);

async function holder(lease: string): Promise<string | null | undefined> {
	const r = await env.kube.request<{ spec: { holderIdentity?: string | null } }>("GET", `/apis/coordination.k8s.io/v1/namespaces/${OP_NS}/leases/${lease}`);
	return r.status === 200 ? (r.body.spec.holderIdentity ?? null) : undefined;
}

/**
 * A TCP relay to the apiserver. `freezeNext()` holds back, from its next byte on, the client → server
 * bytes of whichever connection sends next (its request never reaches the apiserver) until `thaw()`.
 */
async function freezingRelay(port: number): Promise<{ port: number; freezeNext: () => Promise<void>; thaw: () => void; close: () => Promise<void> }> {
	let armed: (() => void) | undefined;
	const conns = new Set<{ client: Socket; upstream: Socket; held: Buffer[] | undefined }>();
	const server = createTcpServer((client) => {
		const upstream = connect(port, "127.0.0.1");
		const c = { client, upstream, held: undefined as Buffer[] | undefined };
		conns.add(c);
		client.on("data", (d: Buffer) => {
			if (!c.held && armed) {
				c.held = [];
				const a = armed;
				armed = undefined;
				a();
			}
			if (c.held) c.held.push(d);
			else upstream.write(d);
		});
		upstream.pipe(client);
		const end = () => {
			conns.delete(c);
			client.destroy();
			upstream.destroy();
		};
		client.on("close", end);
		upstream.on("close", end);
		client.on("error", end);
		upstream.on("error", end);
	});
	await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
	return {
		port: (server.address() as AddressInfo).port,
		freezeNext: () => new Promise<void>((r) => (armed = r)),
		thaw: () => {
			for (const c of conns) {
				const held = c.held;
				if (!held) continue;
				c.held = undefined;
				for (const d of held) c.upstream.write(d);
			}
		},
		close: async () => {
			for (const c of conns) c.client.destroy();
			await new Promise((r) => server.close(r));
		},
	};
}

test("stop() with an acquire/renew round in flight: the Lease is released and stays released", async (t) => {
	const relay = await freezingRelay(env.kube.port);
	t.after(() => relay.close());
	const kubeconfig = join(env.cacheRoot, "relay.kubeconfig");
	writeFileSync(
		kubeconfig,
		JSON.stringify({
			apiVersion: "v1",
			kind: "Config",
			clusters: [{ name: "relay", cluster: { server: `https://127.0.0.1:${relay.port}`, "certificate-authority": env.kube.caFile } }],
			users: [{ name: "admin", user: { token: env.kube.adminToken } }],
			contexts: [{ name: "relay", context: { cluster: "relay", user: "admin" } }],
			"current-context": "relay",
		}),
	);
	const LEASE = "round-in-flight";
	let stoppedLeading = 0;
	const elector = new LeaderElector(await KubeClient.create(kubeconfig), {
		namespace: OP_NS,
		name: LEASE,
		identity: "op-race",
		leaseDurationMs: 8_000,
		renewDeadlineMs: 6_000,
		retryPeriodMs: 1_000,
		onStartedLeading: () => {},
		onStoppedLeading: () => stoppedLeading++,
	});
	elector.start();
	await waitFor("leading", async () => elector.isLeader(), 15_000, 50);
	assert.equal(await holder(LEASE), "op-race");

	// The next renew round's request is held in the relay: the round is in flight when stop() runs.
	await relay.freezeNext();
	await elector.stop();
	assert.equal(await holder(LEASE), null, "released by stop()");
	// Whatever that round had left to do now reaches the apiserver; it must not take the Lease back.
	relay.thaw();
	const end = Date.now() + 3_000;
	while (Date.now() < end) {
		const h = await holder(LEASE);
		assert.notEqual(h, "op-race", "a round that was in flight during stop() took the released Lease back");
		await new Promise((r) => setTimeout(r, 100));
	}
	assert.equal(stoppedLeading, 1);
});
