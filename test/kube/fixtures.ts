/** Bundle pieces shared by the Kubernetes proxy tests that run against a real apiserver. */
import type { BundleConnection, BundleGrant } from "../../gateway/config/bundle.ts";
import type { KubeHandle } from "../env/index.ts";

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
