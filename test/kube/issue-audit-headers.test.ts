/**
 * Headers the kube-apiserver takes from its client for its own audit log (red-team round 7, through
 * the real gateway to a real kube-apiserver with an audit log).
 *
 * The apiserver records `sourceIPs` from `X-Forwarded-For` / `X-Real-Ip` (then the peer address), and
 * takes the event's `auditID` from an `Audit-ID` request header when one is sent (and echoes it). The
 * gateway relayed both from the agent, so an agent wrote the source address of its requests in the
 * cluster's audit log (`203.0.113.7` instead of its own) and chose their audit ids (a colleague's
 * request's id, to make two events one when correlated). The gateway is the apiserver's client here:
 * it now drops the agent's `Audit-ID`, `X-Forwarded-For`, `X-Real-Ip` and `Forwarded`, and sends
 * `X-Forwarded-For` with the agent's own address.
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { KubeListener } from "../../gateway/kube/listener.ts";
import { type KubeHandle, startKube } from "../env/index.ts";
import { type TokenIssuer, tokenIssuer } from "../ssh/fixtures.ts";
import { kubeGateway, userGrant } from "./fixtures.ts";

let kube: KubeHandle;
let gw: KubeListener;
let issuer: TokenIssuer;
const auditLog = join(tmpdir(), `drawbridge-audit-${process.pid}.log`);
const policyFile = join(tmpdir(), `drawbridge-audit-policy-${process.pid}.yaml`);

interface AuditEvent {
	auditID: string;
	requestURI: string;
	sourceIPs: string[];
	user: { username: string };
	impersonatedUser?: { username: string };
}

function events(): AuditEvent[] {
	return readFileSync(auditLog, "utf8")
		.split("\n")
		.filter((l) => l.trim() !== "")
		.map((l) => JSON.parse(l) as AuditEvent);
}

async function get(path: string, headers: Record<string, string>): Promise<{ status: number; auditId: string }> {
	const token = await issuer.token("lee", { groups: ["agents"] });
	return new Promise((resolve, reject) => {
		const req = https.request(
			{ hostname: "127.0.0.1", port: gw.address.port, method: "GET", path: `/k8s/cluster-prod${path}`, ca: kube.caPem, headers: { authorization: `Bearer ${token}`, ...headers } },
			(res) => {
				res.resume();
				res.on("end", () => resolve({ status: res.statusCode ?? 0, auditId: String(res.headers["audit-id"] ?? "") }));
			},
		);
		req.on("error", reject);
		req.end();
	});
}

before(async () => {
	writeFileSync(policyFile, "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n  namespaces: [prod]\n");
	writeFileSync(auditLog, "");
	[issuer, kube] = await Promise.all([
		tokenIssuer(),
		startKube({ apiserverArgs: [`--audit-policy-file=${policyFile}`, `--audit-log-path=${auditLog}`, "--audit-log-mode=blocking"] }),
	]);
	await kube.createNamespace("prod");
	const crb = await kube.kubectl(["create", "clusterrolebinding", "agents-admin", "--clusterrole=cluster-admin", "--group=agents"]);
	assert.equal(crb.code, 0, crb.stderr);
	gw = await kubeGateway(
		issuer,
		kube,
		{
			grants: [userGrant("lee", { namespaces: ["prod"], verbs: ["get", "list"], resources: ["configmaps"] })],
		},
		"gateway-kube-audit",
	);
});

after(async () => {
	await gw?.close();
	await kube?.stop();
});

test("the agent's Audit-ID and forwarding headers do not reach the apiserver's audit log; its own address does", async () => {
	const spoofedId = "7f1c9a52-0000-4000-8000-000000000001";
	const r = await get("/api/v1/namespaces/prod/configmaps?limit=1", {
		"audit-id": spoofedId,
		"x-forwarded-for": "203.0.113.7",
		"x-real-ip": "203.0.113.8",
		forwarded: "for=203.0.113.9",
	});
	assert.equal(r.status, 200);
	// On the old code the apiserver answered with (and logged) the agent's id.
	assert.notEqual(r.auditId, spoofedId);
	let hit: AuditEvent | undefined;
	for (let i = 0; i < 50 && !hit; i++) {
		hit = events().find((e) => e.requestURI.startsWith("/api/v1/namespaces/prod/configmaps?limit=1") && e.impersonatedUser?.username === "lee");
		if (!hit) await new Promise((res) => setTimeout(res, 100));
	}
	assert.ok(hit, "the request is in the audit log");
	assert.equal(events().some((e) => e.auditID === spoofedId), false);
	// On the old code sourceIPs began with 203.0.113.7.
	assert.ok(!hit.sourceIPs.some((ip) => ip.startsWith("203.0.113.")), JSON.stringify(hit.sourceIPs));
	assert.equal(hit.sourceIPs[0], "127.0.0.1", JSON.stringify(hit.sourceIPs));
});
