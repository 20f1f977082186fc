/**
 * Status of Connections (Ready: its Secrets are there and complete; activeGrants) and policies
 * (selectedConnections). Keys: `Connection/<ns>/<name>`, `MaskingPolicy/<ns>/<name>`,
 * `GuardrailPolicy/<ns>/<name>`. Writes only when something changed.
 */

import type { AccessGrant, Connection, GuardrailPolicy, MaskingPolicy } from "../../crds/index.ts";
import { canonicalJson } from "../../gateway/config/canonical.ts";
import { withoutDuplicateNames } from "../config/compile.ts";
import { type KubeClient, KubeError, SECRETS } from "../kube/client.ts";
import { type ConnectionSecretsCheck, connectionStatus, policyStatus } from "./desired/status.ts";
import { type Secret, readConnectionSecrets } from "./stores.ts";
import { CONNECTIONS, GUARDRAILPOLICIES, MASKINGPOLICIES } from "./types.ts";

export interface StatusSources {
	connection(key: string): Connection | undefined;
	connections(): Connection[];
	grants(): AccessGrant[];
	masking(key: string): MaskingPolicy | undefined;
	guardrail(key: string): GuardrailPolicy | undefined;
}

const comparable = (s: unknown) =>
	canonicalJson({ ...(s as object), conditions: ((s as { conditions?: object[] })?.conditions ?? []).map((c) => ({ ...c, lastTransitionTime: undefined })) });

export class StatusReconciler {
	constructor(
		private readonly kube: KubeClient,
		private readonly src: StatusSources,
	) {}

	async reconcile(key: string): Promise<undefined> {
		const [kind, ns, name] = key.split("/") as [string, string, string];
		const now = new Date();
		try {
			if (kind === "Connection") {
				const c = this.src.connection(`${ns}/${name}`);
				if (!c) return undefined;
				const { kept } = withoutDuplicateNames(this.src.connections());
				const holder = kept.find((k) => k.metadata.name === c.metadata.name);
				const heldBy = holder && holder.metadata.namespace !== c.metadata.namespace ? `${holder.metadata.namespace}/${holder.metadata.name}` : undefined;
				const status = connectionStatus(c, this.src.grants(), await this.check(c), c.status?.conditions, now, heldBy);
				if (comparable(status) !== comparable(c.status ?? {})) await this.kube.mergePatch(CONNECTIONS, ns, name, { status }, "status");
			} else {
				const p = kind === "MaskingPolicy" ? this.src.masking(`${ns}/${name}`) : this.src.guardrail(`${ns}/${name}`);
				if (!p) return undefined;
				const status = policyStatus(p, this.src.connections(), p.status?.conditions, now);
				if (comparable(status) !== comparable(p.status ?? {})) await this.kube.mergePatch(kind === "MaskingPolicy" ? MASKINGPOLICIES : GUARDRAILPOLICIES, ns, name, { status }, "status");
			}
		} catch (e) {
			if (e instanceof KubeError && e.code === "NOT_FOUND") return undefined; // deleted meanwhile
			throw e;
		}
		return undefined;
	}

	private async check(c: Connection): Promise<ConnectionSecretsCheck> {
		const out: ConnectionSecretsCheck = {};
		const ns = c.metadata.namespace ?? "default";
		if (c.spec.credentialSecretRef) {
			const s = await this.kube.get<Secret>(SECRETS, ns, c.spec.credentialSecretRef.name);
			if (!s) out.credential = "missing";
			else out.credential = (await readConnectionSecrets(this.kube, { ...c, spec: { ...c.spec, tls: undefined } } as Connection)).credential ? "ok" : "incomplete";
		}
		if (c.spec.tls?.caSecretRef) out.ca = (await readConnectionSecrets(this.kube, c)).caPem ? "ok" : "missing";
		return out;
	}
}
