/**
 * A kubeconfig that points kubectl (or any client-go program) at the gateway for one connection. The
 * agent's token goes in `token` or, better for projected tokens that rotate, `tokenFile`.
 */
import { stringify } from "yaml";
import { PATH_PREFIX } from "./listener.ts";

export interface KubeconfigOptions {
	/** `https://gateway:port` of the kube listener. */
	gatewayUrl: string;
	/** Connection name (becomes the path prefix and the context name). */
	connection: string;
	/** PEM of the CA that signed the gateway's serving certificate. */
	caPem: string;
	/** Exactly one of token / tokenFile. */
	token?: string;
	tokenFile?: string;
	/** Default namespace of the context. */
	namespace?: string;
	/** TLS server name when it differs from the URL host. */
	tlsServerName?: string;
}

export function generateKubeconfig(o: KubeconfigOptions): string {
	if ((o.token === undefined) === (o.tokenFile === undefined)) throw new TypeError("exactly one of token / tokenFile");
	const name = `drawbridge-${o.connection}`;
	const cluster: Record<string, unknown> = {
		server: `${o.gatewayUrl.replace(/\/$/, "")}${PATH_PREFIX}${encodeURIComponent(o.connection)}`,
		"certificate-authority-data": Buffer.from(o.caPem).toString("base64"),
	};
	if (o.tlsServerName) cluster["tls-server-name"] = o.tlsServerName;
	const user: Record<string, unknown> = o.token !== undefined ? { token: o.token } : { tokenFile: o.tokenFile };
	const context: Record<string, unknown> = { cluster: name, user: name };
	if (o.namespace) context["namespace"] = o.namespace;
	return stringify({
		apiVersion: "v1",
		kind: "Config",
		clusters: [{ name, cluster }],
		users: [{ name, user }],
		contexts: [{ name, context }],
		"current-context": name,
		preferences: {},
	});
}
