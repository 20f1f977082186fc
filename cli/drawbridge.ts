/**
 * `drawbridge` — one command, many subcommands. Each subcommand lives in its own module exporting
 * `main(argv): Promise<number>` and is loaded only when used, so `drawbridge validate` in a CI job
 * never loads the gateway.
 */
type Main = (argv: string[]) => Promise<number>;

interface Subcommand {
	summary: string;
	/** Module (relative to this file) exporting `main(argv): Promise<number>`. */
	module: string;
}

const SUBCOMMANDS: Record<string, Subcommand> = {
	validate: {
		summary: "validate a grants repository offline (the pull-request check)",
		module: "./validate.ts",
	},
	dev: {
		summary: "run Drawbridge standalone: local git repo, gateway, embedded PostgreSQL",
		module: "./dev.ts",
	},
	quickstart: {
		summary: "start `dev` on examples/ and walk a scripted agent through it",
		module: "./quickstart.ts",
	},
	gateway: {
		summary: "run the gateway (PostgreSQL, SSH and Kubernetes listeners, admin server)",
		module: "../gateway/main.ts",
	},
	operator: {
		summary: "run the Kubernetes operator",
		module: "../operator/main.ts",
	},
	kubeconfig: {
		summary: "write a kubeconfig that sends kubectl through the gateway's Kubernetes listener",
		module: "../gateway/kube/cli.ts",
	},
	approvals: {
		summary: "list, show, approve or deny just-in-time approval requests",
		module: "./approvals.ts",
	},
	recordings: {
		summary: "list, show, replay, verify and export session recordings",
		module: "./recordings.ts",
	},
};

export function usage(): string {
	const width = Math.max(...Object.keys(SUBCOMMANDS).map((k) => k.length));
	const lines = Object.entries(SUBCOMMANDS).map(([name, s]) => `  ${name.padEnd(width)}  ${s.summary}`);
	return [
		"Usage: drawbridge <command> [options]",
		"",
		"GitOps-driven access operator and identity-aware gateway for PostgreSQL, SSH and Kubernetes.",
		"",
		"Commands:",
		...lines,
		"",
		"Run `drawbridge <command> --help` for a command's options.",
		"",
	].join("\n");
}

export async function run(argv: string[]): Promise<number> {
	const [name, ...rest] = argv;
	if (name === undefined || name === "--help" || name === "-h" || name === "help") {
		process.stdout.write(usage());
		return name === undefined ? 2 : 0;
	}
	if (name === "--version" || name === "version") {
		const pkg = (await import("../package.json", { with: { type: "json" } })).default as { version: string };
		process.stdout.write(`drawbridge ${pkg.version}\n`);
		return 0;
	}
	const sub = SUBCOMMANDS[name];
	if (!sub) {
		process.stderr.write(`drawbridge: unknown command "${name}"\n\n${usage()}`);
		return 2;
	}
	// A computed specifier: each module is loaded only when its command runs.
	const specifier: string = new URL(sub.module, import.meta.url).href;
	const mod = (await import(specifier)) as { main?: Main };
	if (typeof mod.main !== "function") throw new TypeError(`${sub.module} does not export main()`);
	return mod.main(rest);
}

export const SUBCOMMAND_NAMES = Object.keys(SUBCOMMANDS);
