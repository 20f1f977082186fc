/**
 * `drawbridge operator` entry point: options parsed once (flags, then env), JSON logs (pino), graceful
 * shutdown on SIGTERM/SIGINT, exit 1 when leadership is lost (the Deployment restarts us as a standby,
 * the way controller-runtime does, so no half-stopped state survives).
 */

import { pino } from "pino";
import { KubeClient } from "./kube/client.ts";
import { Operator } from "./operator.ts";
import { HELP, OptionsError, parseOptions } from "./options.ts";

export async function main(argv: string[]): Promise<number> {
	let opts: ReturnType<typeof parseOptions>;
	try {
		opts = parseOptions(argv, process.env);
	} catch (e) {
		process.stderr.write(`drawbridge operator: ${(e as Error).message}\n\n${HELP}`);
		return 2;
	}
	if (opts === "help") {
		process.stdout.write(HELP);
		return 0;
	}
	const log = pino({ level: opts.logLevel, base: { component: "operator", identity: opts.identity } });
	const kube = await KubeClient.create(opts.kubeconfig);
	let exitCode = 0;
	let resolveDone: () => void = () => {};
	const done = new Promise<void>((r) => (resolveDone = r));
	const operator = new Operator(opts, kube, log, {
		defaultMetrics: true,
		onLostLeadership: () => {
			log.error("lost leadership; exiting so a fresh process can campaign again");
			exitCode = 1;
			resolveDone();
		},
	});
	const shutdown = (signal: string) => {
		log.info({ signal }, "shutting down");
		resolveDone();
	};
	process.once("SIGTERM", () => shutdown("SIGTERM"));
	process.once("SIGINT", () => shutdown("SIGINT"));
	try {
		await operator.start();
	} catch (e) {
		log.fatal({ err: (e as Error).message }, "start failed");
		return 1;
	}
	await done;
	await operator.stop();
	return exitCode;
}

if (import.meta.url === `file://${process.argv[1]}`) {
	main(process.argv.slice(2)).then(
		(code) => process.exit(code),
		(e: unknown) => {
			process.stderr.write(`drawbridge operator: ${e instanceof OptionsError ? e.message : (e as Error).stack}\n`);
			process.exit(1);
		},
	);
}
