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
register();
const { run } = await import("../cli/drawbridge.ts");
process.exitCode = await run(process.argv.slice(2));
