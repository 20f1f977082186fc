/**
 * `drawbridge kubeconfig`: print (or write) a kubeconfig that points kubectl at the gateway for one
 * Kubernetes connection. For the lead to wire into cli/drawbridge.ts (`export async function main`).
 */
import { readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { generateKubeconfig } from "./kubeconfig.ts";

const HELP = `Usage: drawbridge kubeconfig --server URL --connection NAME --ca FILE (--token-file FILE | --token TOKEN) [options]

Prints a kubeconfig for kubectl through the Drawbridge gateway.

  --server URL        https://host:port of the gateway's Kubernetes listener
  --connection NAME   Kubernetes Connection name (path prefix /k8s/NAME and context name)
  --ca FILE           PEM of the CA that signed the gateway's serving certificate
  --token-file FILE   file holding the agent's token (kubectl re-reads it: good for projected tokens)
  --token TOKEN       the token itself (written into the kubeconfig)
  --namespace NS      default namespace of the context
  --tls-server-name N TLS server name when it differs from the URL host
  --out FILE          write to FILE (mode 0600) instead of stdout
  -h, --help          this help
`;

export async function main(argv: string[]): Promise<number> {
	let values: Record<string, string | boolean | undefined>;
	try {
		({ values } = parseArgs({
			args: argv,
			options: {
				server: { type: "string" },
				connection: { type: "string" },
				ca: { type: "string" },
				"token-file": { type: "string" },
				token: { type: "string" },
				namespace: { type: "string" },
				"tls-server-name": { type: "string" },
				out: { type: "string" },
				help: { type: "boolean", short: "h" },
			},
			strict: true,
		}));
	} catch (e) {
		process.stderr.write(`drawbridge kubeconfig: ${(e as Error).message}\n${HELP}`);
		return 2;
	}
	if (values["help"]) {
		process.stdout.write(HELP);
		return 0;
	}
	const server = values["server"] as string | undefined;
	const connection = values["connection"] as string | undefined;
	const ca = values["ca"] as string | undefined;
	const tokenFile = values["token-file"] as string | undefined;
	const token = values["token"] as string | undefined;
	if (!server || !connection || !ca || (tokenFile === undefined) === (token === undefined)) {
		process.stderr.write(`drawbridge kubeconfig: --server, --connection, --ca and exactly one of --token-file / --token are required\n${HELP}`);
		return 2;
	}
	if (!/^https:\/\//.test(server)) {
		process.stderr.write("drawbridge kubeconfig: --server must be an https:// URL\n");
		return 2;
	}
	let caPem: string;
	try {
		caPem = readFileSync(ca, "utf8");
	} catch (e) {
		process.stderr.write(`drawbridge kubeconfig: cannot read --ca: ${(e as Error).message}\n`);
		return 1;
	}
	if (!caPem.includes("-----BEGIN CERTIFICATE-----")) {
		process.stderr.write("drawbridge kubeconfig: --ca is not a PEM certificate\n");
		return 1;
	}
	const yaml = generateKubeconfig({
		gatewayUrl: server,
		connection,
		caPem,
		...(tokenFile !== undefined ? { tokenFile } : { token: token! }),
		...(values["namespace"] ? { namespace: values["namespace"] as string } : {}),
		...(values["tls-server-name"] ? { tlsServerName: values["tls-server-name"] as string } : {}),
	});
	const out = values["out"] as string | undefined;
	if (out) writeFileSync(out, yaml, { mode: 0o600 });
	else process.stdout.write(yaml);
	return 0;
}
