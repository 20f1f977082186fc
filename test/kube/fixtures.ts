/** Bundle pieces and a raw HTTPS helper shared by the Kubernetes proxy tests that run against a real apiserver. */
import https from "node:https";
import type { BundleConnection, BundleGrant, ConfigBundle } from "../../gateway/config/bundle.ts";
import { type KubeListener, startKubeListener } from "../../gateway/kube/listener.ts";
import { issueCert, type KubeHandle } from "../env/index.ts";
import { approvalService, MemoryRecorder, makeBundle, storeWith, type TokenIssuer } from "../ssh/fixtures.ts";

/** The Connection `ops/cluster-prod` to `kube`, with the admin credential under `kube-gw`. */
export function kubeConnection(kube: KubeHandle): BundleConnection {
	return {
		key: "ops/cluster-prod",
		name: "cluster-prod",
		namespace: "ops",
		type: "kubernetes",
		labels: { env: "prod" },
		host: "127.0.0.1",
		port: kube.port,
		credentialRef: "kube-gw",
		kubernetes: { server: kube.url, caPem: kube.caPem },
	};
}

/** The gateway's own credential for `kube` (its admin client certificate), as `kube-gw`. */
export function kubeCredentials(kube: KubeHandle): ConfigBundle["credentials"] {
	return { "kube-gw": { type: "kubernetes", clientCertPem: kube.adminCertPem, clientKeyPem: kube.adminKeyPem } };
}

/**
 * The gateway's Kubernetes listener in front of `kube`: a bundle of `parts` (grants, policies) with
 * the cluster-prod connection and the gateway's credential, a serving certificate `name` from the
 * cluster's CA, an in-memory recorder and the local approvals service.
 */
export async function kubeGateway(issuer: TokenIssuer, kube: KubeHandle, parts: Partial<ConfigBundle>, name: string): Promise<KubeListener> {
	const cert = await issueCert(kube.ca, { cn: "drawbridge-gateway", ips: ["127.0.0.1"], dns: ["localhost"], name });
	const store = storeWith(makeBundle(issuer, { connections: [kubeConnection(kube)], credentials: kubeCredentials(kube), ...parts }));
	return startKubeListener({ store, recorder: new MemoryRecorder(), approvals: approvalService(), tls: { certPem: cert.certPem, keyPem: cert.keyPem } });
}

/** An active grant `ops/<name>` on cluster-prod for the user `<name>`, approvers user sam. */
export function userGrant(name: string, kubernetes: BundleGrant["kubernetes"]): BundleGrant {
	return {
		namespace: "ops",
		connection: "cluster-prod",
		notBefore: new Date(Date.now() - 60_000).toISOString(),
		expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
		approvers: { subjects: [{ kind: "User", name: "sam" }], minApprovals: 1 },
		origin: { repository: "grants", commit: "abc" },
		key: `ops/${name}`,
		name,
		subjects: [{ kind: "User", name }],
		kubernetes,
	} as BundleGrant;
}

/**
 * One request with node:https options (a path, not a URL: nothing normalises it on the way): status
 * and body text, and whether the body is a Status the gateway itself wrote. An upgrade the server
 * accepts ends at once with its status (an upgrade it refuses is a plain response). With `timeoutMs`,
 * no answer within it is an error naming the request (without, a held request may wait for its approval).
 */
export function httpsText(
	options: https.RequestOptions,
	body?: string | Buffer,
	timeoutMs?: number,
): Promise<{ status: number; text: string; drawbridge: boolean }> {
	return new Promise((resolve, reject) => {
		const req = https.request(options, (res) => {
			let text = "";
			res.on("data", (c: Buffer) => (text += c.toString()));
			res.on("end", () => resolve({ status: res.statusCode ?? 0, text, drawbridge: /"kind":"drawbridge"/.test(text) }));
		});
		req.on("upgrade", (res, socket) => {
			socket.destroy();
			resolve({ status: res.statusCode ?? 101, text: "", drawbridge: false });
		});
		if (timeoutMs !== undefined) req.setTimeout(timeoutMs, () => req.destroy(new Error(`${options.method ?? "GET"} ${options.path}: no answer`)));
		req.on("error", reject);
		req.end(body);
	});
}
