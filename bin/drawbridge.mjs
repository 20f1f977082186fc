#!/usr/bin/env node
// Launcher: loads the TypeScript CLI through tsx, resolved next to this file so it works from any cwd.
import { register } from "tsx/esm/api";

const [major] = process.versions.node.split(".").map(Number);
if (major < 24) {
	process.stderr.write(
		`drawbridge needs Node.js >= 24 (this is ${process.version}); run it through npm (npx drawbridge, npm run drawbridge --) so the pinned Node 24 is used\n`,
	);
	process.exit(1);
}
// Long-running commands re-exec once with --liftoff-only (docs/performance.md): V8's optimising
// tier-up of the libpg-query WASM parser costs a ~530 MiB transient RSS spike and makes parses
// slower, and the flag is only read at isolate start. execve keeps the PID, so signals and
// supervisors see the same process. DRAWBRIDGE_NO_REEXEC=1 opts out.
const LONG_RUNNING = new Set(["gateway", "dev", "quickstart"]);
if (
	LONG_RUNNING.has(process.argv[2] ?? "") &&
	!process.execArgv.includes("--liftoff-only") &&
	!process.env.DRAWBRIDGE_NO_REEXEC &&
	typeof process.execve === "function"
) {
	process.execve(process.execPath, [process.execPath, "--liftoff-only", ...process.execArgv, ...process.argv.slice(1)], process.env);
}
register();
const { run } = await import("../cli/drawbridge.ts");
process.exitCode = await run(process.argv.slice(2));
