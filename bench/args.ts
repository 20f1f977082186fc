/**
 * The command line of every runnable bench script: node:util `parseArgs` in strict mode, so an unknown
 * or mistyped option is an error instead of a word nobody reads (bench/recording-pgbench.ts once ran a
 * whole benchmark when asked for `--help`). `--help` / `-h` prints the usage and exits 0; a wrong
 * command line (unknown option, missing value, stray argument, or a value the script's `fail` refuses)
 * exits 2 with the error. Both happen before the script starts anything.
 *
 * The usage is the script's header comment, which holds a `Usage:` line and says what it prints,
 * followed by the options as parsed here with their defaults, so the two cannot disagree.
 *
 * Node built-ins only: bench/pg-cpu.ts copies this file, with pg-gateway-child.ts, into a worktree of
 * an older ref.
 */
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { fileURLToPath } from "node:url";
import { type ParseArgsConfig, parseArgs } from "node:util";

type Options = NonNullable<ParseArgsConfig["options"]>;

export interface BenchArgsConfig<O extends Options> {
	options: O;
	/** Positional arguments: their names for the usage (`["CONFIG.json", "MODE"]`), all required. None by default. */
	positionals?: string[];
	/**
	 * String options whose value may start with `-` as a separate word (`--node-flags --liftoff-only`);
	 * parseArgs alone would take such a value for a forgotten one and ask for `--node-flags=--liftoff-only`.
	 */
	dashValues?: string[];
}

/** The script's header comment, without the comment markers. */
function header(file: string): string {
	const m = /^\/\*\*\n([\s\S]*?)\n\s*\*\//.exec(readFileSync(file, "utf8"));
	return (m?.[1] ?? "").replace(/^ ?\* ?/gm, "");
}

function optionsText(options: Options, positionals: string[]): string {
	const rows: [string, string][] = positionals.map((p) => [p, "(required)"]);
	for (const [name, o] of Object.entries(options)) {
		const flag = `${o.short ? `-${o.short}, ` : ""}--${name}${o.type === "string" ? " <value>" : ""}`;
		rows.push([flag, o.default !== undefined && o.default !== false ? `default: ${JSON.stringify(o.default)}` : ""]);
	}
	rows.push(["-h, --help", "this text, then exit (nothing is started)"]);
	const w = Math.max(...rows.map(([f]) => f.length));
	return rows.map(([f, d]) => `  ${f.padEnd(w)}  ${d}`.trimEnd()).join("\n");
}

/** `--name value` → `--name=value` for the options named in `dashValues`. */
function joinDashValues(argv: string[], dashValues: string[]): string[] {
	const out: string[] = [];
	for (let i = 0; i < argv.length; i++) {
		const a = argv[i]!;
		if (a === "--") {
			out.push(...argv.slice(i));
			break;
		}
		if (dashValues.includes(a.replace(/^--/, "")) && a.startsWith("--") && i + 1 < argv.length) out.push(`${a}=${argv[++i]}`);
		else out.push(a);
	}
	return out;
}

const isParseError = (e: unknown): e is Error => e instanceof Error && String((e as { code?: unknown }).code).startsWith("ERR_PARSE_ARGS_");

/**
 * Parses `process.argv` for the script at `scriptUrl` (its `import.meta.url`). Returns the values and
 * positionals, and `fail(message)`, which exits 2 with the message (for values the script refuses,
 * checked before it starts anything).
 */
export function benchArgs<O extends Options>(scriptUrl: string, config: BenchArgsConfig<O>) {
	const file = fileURLToPath(scriptUrl);
	const name = `bench/${basename(file)}`;
	const positionalNames = config.positionals ?? [];
	const usage = () => `${header(file)}\n\nOptions:\n${optionsText(config.options, positionalNames)}\n`;
	const fail = (message: string): never => {
		process.stderr.write(`${name}: ${message}\n${name} --help prints the usage.\n`);
		process.exit(2);
	};
	let parsed: ReturnType<typeof parseArgs<{ options: O & { help: { type: "boolean"; short: "h" } }; strict: true; allowPositionals: true }>>;
	try {
		parsed = parseArgs({
			args: joinDashValues(process.argv.slice(2), config.dashValues ?? []),
			options: { ...config.options, help: { type: "boolean", short: "h" } } as O & { help: { type: "boolean"; short: "h" } },
			strict: true,
			allowPositionals: true,
		});
	} catch (e) {
		// parseArgs goes on about positionals after an unknown option; none of our scripts wants one.
		if (isParseError(e)) fail(e.message.replace(/\. To specify a positional argument[\s\S]*$/, ""));
		throw e;
	}
	if ((parsed.values as { help?: boolean }).help) {
		process.stdout.write(usage());
		process.exit(0);
	}
	if (parsed.positionals.length !== positionalNames.length) {
		fail(
			positionalNames.length === 0
				? `unexpected argument '${parsed.positionals[0]}': this script takes options only`
				: `expected ${positionalNames.join(" ")}, got ${parsed.positionals.length === 0 ? "nothing" : parsed.positionals.map((p) => `'${p}'`).join(" ")}`,
		);
	}
	return { values: parsed.values, positionals: parsed.positionals, fail };
}
