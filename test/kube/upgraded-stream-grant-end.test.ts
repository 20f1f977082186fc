/**
 * Upgraded streams (WebSocket: exec, attach, port-forward, watch) end with their grant, like plain
 * watches do (bundle-change-keeps-watches.test.ts, gateway.test.ts): when the grant expires, is removed
 * from the bundle, or is narrowed, the gateway cuts the upgraded connection and the recording names
 * why. Regression: the cut was silent (both sockets destroyed), so `kubectl exec` ended with a bare
 * connection error that did not say the grant had ended; a WebSocket client now gets a Close frame
 * (1008) with the reason first. This control plane has no kubelet to exec into, so the long-lived
 * upgraded stream is the apiserver's own WebSocket watch, through the same upgrade relay as
 * `kubectl exec`. Real kube-apiserver.
 *
 * Second regression: the request of a stream cut this way (upgraded or a plain JSON watch) was recorded
 * when its socket's close came, after the grant's recording had been closed, and the recorder drops
 * events emitted after close (gateway/recording/recorder.ts): the cut watch or exec vanished from the
 * recording. The recorder here keeps that contract (MemoryRecorder alone accepted late events).
 */
import assert from "node:assert/strict";
import https from "node:https";
import type { Socket } from "node:net";
import { after, before, test } from "node:test";
import type { BundleConnection, BundleGrant, ConfigBundle } from "../../gateway/config/bundle.ts";
import { BundleStore } from "../../gateway/config/store.ts";
import { type KubeListener, startKubeListener } from "../../gateway/kube/listener.ts";
import { issueCert, type KubeHandle, startKube } from "../env/index.ts";
import type { SessionMeta, SessionRecorder } from "../../gateway/recording/events.ts";
import { approvalService, MemoryRecorder, makeBundle, type TokenIssuer, tokenIssuer, waitUntil } from "../ssh/fixtures.ts";

/** MemoryRecorder with the real recorder's contract: an event emitted after close() is dropped. */
class ClosingRecorder extends MemoryRecorder {
	override async openSession(meta: SessionMeta): Promise<SessionRecorder> {
		const inner = await super.openSession(meta);
		let closed = false;
		return {
			sessionId: inner.sessionId,
			emit: (e) => {
				if (!closed) inner.emit(e);
			},
			close: async (end) => {
				closed = true;
				await inner.close(end);
			},
		};
	}
}

const NS = "streamed";
const NOT_BEFORE = new Date(Date.now() - 60_000).toISOString();
let kube: KubeHandle;
let gw: KubeListener;
let issuer: TokenIssuer;
let store: BundleStore;
const recorder = new ClosingRecorder();
let credentials: ConfigBundle["credentials"];
let connection: BundleConnection;

function grant(name: string, over: Partial<BundleGrant> = {}): BundleGrant {
	return {
		key: `ops/${name}`,
		name,
		namespace: "ops",
		connection: "cluster",
		subjects: [{ kind: "User", name: "kim" }],
		notBefore: NOT_BEFORE,
		expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
		kubernetes: { namespaces: [NS, "default"], verbs: ["get", "list", "watch"], resources: ["configmaps"] },
		approvers: { subjects: [{ kind: "User", name: "sam" }], minApprovals: 1 },
		origin: {},
		...over,
	};
}

function push(grants: BundleGrant[]): void {
	const version = store.loaded ? store.current.version + 1 : 1;
	assert.ok(store.update(makeBundle(issuer, { connections: [connection], grants, credentials }, version)));
}

before(async () => {
	[issuer, kube] = await Promise.all([tokenIssuer(), startKube()]);
	await kube.createNamespace(NS);
	const rbac = `
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: { name: cm-reader }
rules: [{ apiGroups: [""], resources: [configmaps], verbs: [get, list, watch] }]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: { name: cm-reader-kim }
subjects: [{ kind: User, name: kim, apiGroup: rbac.authorization.k8s.io }]
roleRef: { kind: ClusterRole, name: cm-reader, apiGroup: rbac.authorization.k8s.io }
`;
	const applied = await kube.kubectl(["apply", "-f", "-"], { input: rbac });
	assert.equal(applied.code, 0, applied.stderr);
	credentials = { "kube-cert": { type: "kubernetes", clientCertPem: kube.adminCertPem, clientKeyPem: kube.adminKeyPem } };
	connection = { key: "ops/cluster", name: "cluster", namespace: "ops", type: "kubernetes", labels: {}, host: "127.0.0.1", port: kube.port, credentialRef: "kube-cert", kubernetes: { server: kube.url, caPem: kube.caPem } };
	const cert = await issueCert(kube.ca, { cn: "gateway-upgraded-stream", ips: ["127.0.0.1"], name: "gateway-upgraded-stream" });
	store = new BundleStore();
	push([grant("kim")]);
	gw = await startKubeListener({ store, recorder, approvals: approvalService(), tls: { certPem: cert.certPem, keyPem: cert.keyPem } });
});

after(async () => {
	await gw?.close();
	await kube?.stop();
});

interface WsWatch {
	socket: Socket;
	/** Everything received after the 101, as latin1 text. */
	received: () => string;
	/** The Close frame received, if any. */
	closeFrame: () => { code: number; reason: string } | undefined;
	closed: Promise<void>;
}

/** Server frames (unmasked) in `b`; a truncated last frame is left out. */
function frames(b: Buffer): { opcode: number; payload: Buffer }[] {
	const out: { opcode: number; payload: Buffer }[] = [];
	let i = 0;
	while (i + 2 <= b.length) {
		let len = b[i + 1]! & 0x7f;
		let off = i + 2;
		if (len === 126) {
			len = b.readUInt16BE(off);
			off += 2;
		} else if (len === 127) {
			len = Number(b.readBigUInt64BE(off));
			off += 8;
		}
		if (off + len > b.length) break;
		out.push({ opcode: b[i]! & 0x0f, payload: b.subarray(off, off + len) });
		i = off + len;
	}
	return out;
}

/** A WebSocket watch of configmaps in NS through the gateway: the upgraded socket, and what came over it. */
async function wsWatch(): Promise<WsWatch> {
	const token = await issuer.token("kim");
	return new Promise((resolve, reject) => {
		const req = https.request(`${gw.url}/k8s/cluster/api/v1/namespaces/${NS}/configmaps?watch=1`, {
			ca: kube.caPem,
			agent: false,
			headers: {
				authorization: `Bearer ${token}`,
				connection: "Upgrade",
				upgrade: "websocket",
				"sec-websocket-version": "13",
				"sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
				// The apiserver's WebSocket watch handler refuses a handshake without an Origin (403).
				origin: "https://127.0.0.1",
			},
		});
		req.on("upgrade", (res, socket) => {
			assert.equal(res.statusCode, 101);
			const chunks: Buffer[] = [];
			socket.on("data", (c: Buffer) => chunks.push(c));
			socket.on("error", () => {});
			const closed = new Promise<void>((r) => socket.once("close", () => r()));
			const all = () => Buffer.concat(chunks);
			resolve({
				socket,
				received: () => all().toString("latin1"),
				closeFrame: () => {
					const f = frames(all()).find((x) => x.opcode === 0x8);
					return f ? { code: f.payload.readUInt16BE(0), reason: f.payload.subarray(2).toString("utf8") } : undefined;
				},
				closed,
			});
		});
		req.on("response", (res) => {
			let body = "";
			res.on("data", (c) => (body += c));
			res.on("end", () => reject(new Error(`no upgrade: ${res.statusCode} ${JSON.stringify(res.headers)} ${body}`)));
		});
		req.on("error", reject);
		req.end();
	});
}

let seq = 0;
/** The stream is live: a configmap created on the apiserver comes over it. */
async function live(w: WsWatch): Promise<void> {
	const name = `cm-live-${++seq}`;
	const r = await kube.request("POST", `/api/v1/namespaces/${NS}/configmaps`, { apiVersion: "v1", kind: "ConfigMap", metadata: { name } });
	assert.equal(r.status, 201, r.text);
	await waitUntil(`${name} over the WebSocket watch`, () => w.received().includes(name), 15_000);
}

/** The stream ends within `ms`, and the client is told why: a Close frame, 1008 (policy violation), naming the grant. */
async function cutWithin(w: WsWatch, ms: number, reason: RegExp): Promise<void> {
	const cut = await Promise.race([w.closed.then(() => true), new Promise<false>((r) => setTimeout(() => r(false), ms))]);
	assert.ok(cut, "the upgraded stream outlived its grant");
	const close = w.closeFrame();
	assert.ok(close, "cut without a Close frame: the client cannot tell why");
	assert.equal(close.code, 1008);
	assert.match(close.reason, reason);
}

/** How the grant's recording ended; the cut watch must be in it (recorded before the close). */
async function endOf(grantKey: string): Promise<{ reason: string; message?: string } | undefined> {
	await waitUntil(`recording of ${grantKey} closed`, () => recorder.sessions.some((s) => s.meta.grant === grantKey && s.end), 5_000);
	const s = recorder.sessions.find((x) => x.meta.grant === grantKey && x.end);
	await new Promise((r) => setTimeout(r, 200));
	const watches = (s?.events ?? []).filter((e) => e.type === "kube.request" && (e as { verb?: string }).verb === "watch");
	assert.equal(watches.length, 1, `the cut watch is recorded: ${JSON.stringify(s?.events.map((e) => e.type))}`);
	return s?.end as { reason: string; message?: string } | undefined;
}

test("grant expiry cuts an upgraded (WebSocket) stream; recorded as grant-expired", async () => {
	push([grant("kim-short", { expiresAt: new Date(Date.now() + 4_000).toISOString() })]);
	const w = await wsWatch();
	await live(w);
	await cutWithin(w, 10_000, /^grant ops\/kim-short expired at \d{4}-/);
	assert.equal((await endOf("ops/kim-short"))?.reason, "grant-expired");
	const notices = recorder.sessions.find((s) => s.meta.grant === "ops/kim-short")?.events.filter((e) => e.type === "notice") ?? [];
	assert.ok(notices.some((e) => /grant ops\/kim-short expired at/.test(String((e as { message?: string }).message))), JSON.stringify(notices));
});

test("a grant removed from the bundle cuts an upgraded stream; recorded as grant-revoked", async () => {
	push([grant("kim-rev")]);
	const w = await wsWatch();
	await live(w);
	push([]);
	await cutWithin(w, 5_000, /^grant ops\/kim-rev was revoked/);
	assert.equal((await endOf("ops/kim-rev"))?.reason, "grant-revoked");
});

test("a grant narrowed (its namespace removed) cuts an upgraded stream; recorded as policy, naming the change", async () => {
	push([grant("kim-narrow")]);
	const w = await wsWatch();
	await live(w);
	push([grant("kim-narrow", { kubernetes: { namespaces: ["default"], verbs: ["get", "list", "watch"], resources: ["configmaps"] } })]);
	await cutWithin(w, 5_000, /^grant ops\/kim-narrow changed/);
	assert.equal((await endOf("ops/kim-narrow"))?.reason, "policy");
	const notices = recorder.sessions.find((s) => s.meta.grant === "ops/kim-narrow")?.events.filter((e) => e.type === "notice") ?? [];
	assert.ok(notices.some((e) => /grant ops\/kim-narrow changed/.test(String((e as { message?: string }).message))), JSON.stringify(notices));
});

/** A plain (chunked JSON) watch through the gateway; resolves with its body once the stream ends. */
async function jsonWatch(grantKeyUser: string): Promise<{ ended: Promise<string> }> {
	const token = await issuer.token(grantKeyUser);
	return new Promise((resolve, reject) => {
		const req = https.get(`${gw.url}/k8s/cluster/api/v1/namespaces/${NS}/configmaps?watch=1`, { ca: kube.caPem, agent: false, headers: { authorization: `Bearer ${token}` } }, (res) => {
			assert.equal(res.statusCode, 200);
			let body = "";
			res.setEncoding("utf8");
			const ended = new Promise<string>((r) => {
				res.on("data", (c: string) => (body += c));
				res.on("close", () => r(body));
			});
			resolve({ ended });
		});
		req.on("error", reject);
	});
}

test("a plain JSON watch cut by revocation gets the ERROR Status and stays in the recording", async () => {
	push([grant("kim-json")]);
	const w = await jsonWatch("kim");
	await new Promise((r) => setTimeout(r, 300));
	push([]);
	const body = await Promise.race([w.ended, new Promise<string>((_, rej) => setTimeout(() => rej(new Error("watch outlived its grant")), 5_000))]);
	assert.match(body.trim().split("\n").at(-1) ?? "", /grant ops\/kim-json was revoked/);
	assert.equal((await endOf("ops/kim-json"))?.reason, "grant-revoked");
});

test("gateway shutdown (close after the drain) ends an upgraded stream with Close 1001 saying so", async () => {
	push([grant("kim-last")]);
	const w = await wsWatch();
	await live(w);
	await gw.close();
	await Promise.race([w.closed, new Promise((r) => setTimeout(r, 5_000))]);
	const close = w.closeFrame();
	assert.equal(close?.code, 1001, JSON.stringify(close));
	assert.match(close?.reason ?? "", /shutting down/);
});
