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
 * 2. `Operator.stop()` waited up to 10 s for running reconciles before releasing the Lease; a reconcile
 *    blocked on a git server that stalls (or a slow apiserver, or PostgreSQL) held the Lease for those
 *    10 s. Now running work gets `--shutdown-grace`, is then aborted, and the Lease is released.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { type IncomingMessage, type Server, type ServerResponse, createServer } from "node:http";
import { type AddressInfo, type Socket, connect, createServer as createTcpServer } from "node:net";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { freePort, printLogsOnFailure } from "../env/index.ts";
import { KubeClient } from "../../operator/kube/client.ts";
import { LeaderElector } from "../../operator/leader.ts";
import { type Env, NS, OP_NS, gitSourceYaml, kubectlOk, spawnOperator, startEnv, stopEnv, waitFor } from "./helpers.ts";

let env: Env;
const procs: ChildProcess[] = [];
const outputs: (() => string)[] = [];

before(async () => {
	env = await startEnv();
});
after(async () => {
	for (const p of procs) if (p.exitCode === null) p.kill("SIGKILL");
	await stopEnv(env);
});
printLogsOnFailure(() => [["kube", env?.kube], ["operators", { logs: () => outputs.map((o) => o()).join("\n-----\n") }]]);

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

/** An HTTP server that answers every git request with headers and a first line, then nothing. */
async function stalledGitServer(): Promise<{ url: string; requested: Promise<void>; close: () => Promise<void> }> {
	const sockets = new Set<Socket>();
	let seen: () => void = () => {};
	const requested = new Promise<void>((r) => (seen = r));
	const server: Server = createServer((_req: IncomingMessage, res: ServerResponse) => {
		res.writeHead(200, { "content-type": "application/x-git-upload-pack-advertisement" });
		res.write("001e# service=git-upload-pack\n");
		seen();
	});
	server.on("connection", (s) => {
		sockets.add(s);
		s.on("close", () => sockets.delete(s));
	});
	await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
	return {
		url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
		requested,
		close: async () => {
			for (const s of sockets) s.destroy();
			await new Promise((r) => server.close(r));
		},
	};
}

test("SIGTERM while the leader's git fetch is stalled: the fetch is aborted after --shutdown-grace, the Lease released, the standby takes over before it could expire", { timeout: 120_000 }, async (t) => {
	const git = await stalledGitServer();
	t.after(() => git.close());
	// Lease 8 s, retry 1 s (spawnOperator); the git deadline stays at its 60 s default.
	const extra = ["--shutdown-grace", "1s"];
	const ports = { a: await freePort(), b: await freePort() };
	const a = await spawnOperator(env, "op-a", ports.a, extra);
	procs.push(a.proc);
	outputs.push(a.output);
	const b = await spawnOperator(env, "op-b", ports.b, extra);
	procs.push(b.proc);
	outputs.push(b.output);
	const leader = await waitFor("a leader", async () => (await holder("drawbridge-operator")) ?? undefined, 15_000);
	const [leaderProc, leaderOut] = leader === "op-a" ? [a.proc, a.output] : [b.proc, b.output];

	await kubectlOk(env.kube, ["apply", "-f", "-"], gitSourceYaml(env, "stalled").replace(env.git.url, git.url));
	t.after(() => kubectlOk(env.kube, ["delete", "gitsource", "stalled", "-n", NS, "--wait=false"]).then(() => undefined));
	await git.requested; // the leader's sync is now blocked in the fetch, for up to 60 s

	const exited = new Promise<number | null>((r) => leaderProc.once("exit", (code) => r(code)));
	const t0 = Date.now();
	leaderProc.kill("SIGTERM");
	const takeover = await waitFor("takeover", async () => {
		const h = await holder("drawbridge-operator");
		return h && h !== leader ? Date.now() : undefined;
	}, 20_000, 100);
	// Guaranteed: the Lease is released within the grace (1 s) + 1 s for aborted work to unwind + the
	// release request; the standby takes it at its next round (1 s). Expiry would need at least
	// 8 s - 1 s (the last renewal was at most one retry period before SIGTERM), and the old stop()
	// waited 10 s for the fetch first.
	assert.ok(takeover - t0 < 7_000, `standby took over ${takeover - t0} ms after SIGTERM`);
	assert.equal(await exited, 0);
	assert.match(leaderOut(), /reconciles still running at the end of the shutdown grace; aborting them/);
	assert.match(leaderOut(), /"released":true/);
});
