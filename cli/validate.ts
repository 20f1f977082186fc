/**
 * `drawbridge validate [options] <dir|file>...` — the pull-request check for a grants repository.
 *
 * Offline: schema and cross-field rules (the same as the CRDs' OpenAPI + CEL), references between
 * resources, and organisation lints from `.drawbridge.yaml`. Prints compiler-style diagnostics
 * (`file:line:col: error: field: message`) or JSON, and exits 1 when there is any error.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { isManifestPath } from "../crds/gitops.ts";
import { type Diagnostic, LINT_CONFIG_FILE, type LintConfig, parseLintConfig, validateRepository } from "../crds/repo.ts";

export const EXIT_OK = 0;
export const EXIT_INVALID = 1;
export const EXIT_USAGE = 2;

const HELP = `Usage: drawbridge validate [options] [<dir|file>...]

Validate Drawbridge resources (access.drawbridge.dev/v1alpha1) offline, as a pull-request check.
Directories are searched recursively for the files the operator syncs: *.yaml and *.yml in
any case, except hidden files and directories (.github/, .drawbridge.yaml). With no paths, the
current directory is validated; \`-\` reads manifests from standard input (e.g.
\`kustomize build . | drawbridge validate -\`).

Checks:
  schema       types, enums, patterns, required fields, unknown fields, defaults (as the CRDs)
  rules        cross-field rules (the CRDs' CEL rules): exactly one of duration/expiresAt,
               expiresAt after notBefore, at most 90 days, one access block per grant, ...
  references   a grant's Connection exists and has the grant's type; approvers are set where a
               GuardrailPolicy with requireApproval selects the grant's Connection
  lints        .drawbridge.yaml: maxDuration per Connection label, requireTicket, ticketPattern
  sync         what the operator refuses or skips (the operator's own code): files over 1 MiB or not
               UTF-8, kinds git cannot declare (ApprovalRequest), access.drawbridge.dev/ labels and
               annotations, control or invisible characters, metadata.namespace outside the
               GitSource's (.drawbridge.yaml gitSource.namespace)

Options:
  --format text|json   output format (default text); json is for bots
  --config FILE        lint configuration (default: .drawbridge.yaml in the first directory
                       given, else in the current directory)
  --no-config          do not read a lint configuration
  -q, --quiet          print errors only, no warnings or summary
  -h, --help           show this help

Exit status: 0 valid, 1 invalid, 2 usage error.
`;

interface Options {
	format: "text" | "json";
	config?: string;
	noConfig: boolean;
	quiet: boolean;
	paths: string[];
}

function parseArgs(argv: string[]): Options | string {
	const o: Options = { format: "text", noConfig: false, quiet: false, paths: [] };
	for (let i = 0; i < argv.length; i++) {
		const a = argv[i]!;
		const value = (name: string): string | undefined => {
			if (a.startsWith(`${name}=`)) return a.slice(name.length + 1);
			const v = argv[i + 1];
			i++;
			return v;
		};
		if (a === "-h" || a === "--help") return "help";
		else if (a === "--format" || a.startsWith("--format=")) {
			const v = value("--format");
			if (v !== "text" && v !== "json") return `--format must be text or json (got ${v ?? "nothing"})`;
			o.format = v;
		} else if (a === "--config" || a.startsWith("--config=")) {
			const v = value("--config");
			if (!v) return "--config needs a file";
			o.config = v;
		} else if (a === "--no-config") o.noConfig = true;
		else if (a === "-q" || a === "--quiet") o.quiet = true;
		else if (a === "--") {
			o.paths.push(...argv.slice(i + 1));
			break;
		}
		else if (a.startsWith("-") && a !== "-") return `unknown option ${a}`;
		else o.paths.push(a);
	}
	if (o.paths.length === 0) o.paths.push(".");
	return o;
}

/**
 * Files under `root` the operator would sync if `root` were a GitSource's path: the operator's own rule
 * (crds/gitops.ts `isManifestPath`: `.yaml`/`.yml` in any case, nothing hidden). A file it syncs is
 * never left out of the check (`x.YAML` or `node_modules/` were: their grants escaped the lints).
 */
function collect(path: string, out: string[], root = path): void {
	const st = statSync(path);
	if (st.isFile()) {
		out.push(path);
		return;
	}
	if (!st.isDirectory()) return;
	for (const entry of readdirSync(path, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
		const p = join(path, entry.name);
		if (entry.name.startsWith(".")) continue;
		if (entry.isDirectory()) collect(p, out, root);
		else if (entry.isFile() && isManifestPath(relative(root, p).split(sep).join("/"))) out.push(p);
	}
}

function display(path: string): string {
	const rel = relative(process.cwd(), path);
	return rel === "" || rel.startsWith("..") ? path : rel;
}

/** Where output goes (tests pass their own). */
export interface Io {
	stdout: (text: string) => void;
	stderr: (text: string) => void;
	/** Reads all of standard input (for the path `-`). */
	stdin: () => string;
}

const PROCESS_IO: Io = {
	stdout: (t) => process.stdout.write(t),
	stderr: (t) => process.stderr.write(t),
	stdin: () => readFileSync(0, "utf8"),
};

export async function main(argv: string[], io: Io = PROCESS_IO): Promise<number> {
	const parsed = parseArgs(argv);
	if (parsed === "help") {
		io.stdout(HELP);
		return EXIT_OK;
	}
	if (typeof parsed === "string") {
		io.stderr(`drawbridge validate: ${parsed}\n(see drawbridge validate --help)\n`);
		return EXIT_USAGE;
	}
	const files: string[] = [];
	let stdinText: string | undefined;
	for (const p of parsed.paths) {
		if (p === "-") {
			stdinText ??= io.stdin();
			continue;
		}
		try {
			collect(resolve(p), files);
		} catch (e) {
			io.stderr(`drawbridge validate: ${p}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file or directory" : (e as Error).message}\n`);
			return EXIT_USAGE;
		}
	}
	const diagnostics: Diagnostic[] = [];
	let config: LintConfig = {};
	let configDir = process.cwd();
	if (!parsed.noConfig) {
		let configPath = parsed.config;
		if (configPath === undefined) {
			const firstDir = parsed.paths
				.filter((p) => p !== "-")
				.map((p) => resolve(p))
				.find((p) => statSync(p).isDirectory());
			const candidate = join(firstDir ?? process.cwd(), LINT_CONFIG_FILE);
			try {
				if (statSync(candidate).isFile()) configPath = candidate;
			} catch {
				configPath = undefined;
			}
		}
		if (configPath !== undefined) {
			let text: string;
			try {
				text = readFileSync(configPath, "utf8");
			} catch (e) {
				io.stderr(`drawbridge validate: cannot read ${configPath}: ${(e as Error).message}\n`);
				return EXIT_USAGE;
			}
			configDir = dirname(resolve(configPath));
			const r = parseLintConfig(text, display(resolve(configPath)));
			config = r.config;
			diagnostics.push(...r.diagnostics);
		}
	}
	const excluded = (f: string) =>
		(config.exclude ?? []).some((prefix) => {
			const rel = relative(configDir, f);
			const p = prefix.replace(/^\.\//, "").replace(/\/$/, "");
			return rel === p || rel.startsWith(`${p}/`);
		});
	const unique = [...new Set(files)].filter((f) => !excluded(f));
	const inputs: { file: string; text: string | Uint8Array }[] = unique.map((f) => ({ file: display(f), text: readFileSync(f) }));
	if (stdinText !== undefined) inputs.push({ file: "<stdin>", text: stdinText });
	const report = validateRepository(inputs, config);
	for (const d of report.diagnostics) diagnostics.push(d);
	const errors = diagnostics.filter((d) => d.severity === "error").length;
	const warnings = diagnostics.length - errors;
	if (parsed.format === "json") {
		io.stdout(
			`${JSON.stringify({ valid: errors === 0, errors, warnings, files: report.files, resources: report.resources, diagnostics }, null, 2)}\n`,
		);
	} else {
		for (const d of diagnostics) {
			if (parsed.quiet && d.severity !== "error") continue;
			io.stdout(`${formatDiagnostic(d)}\n`);
		}
		if (!parsed.quiet) {
			const n = report.resources.length;
			io.stdout(
				`${errors === 0 ? "ok" : "invalid"}: ${n} resource${n === 1 ? "" : "s"} in ${report.files} file${report.files === 1 ? "" : "s"}, ${errors} error${errors === 1 ? "" : "s"}, ${warnings} warning${warnings === 1 ? "" : "s"}\n`,
			);
		}
	}
	return errors === 0 ? EXIT_OK : EXIT_INVALID;
}

/** `file:line:col: error: field: message [CODE]` */
export function formatDiagnostic(d: Diagnostic): string {
	return `${d.file}:${d.line}:${d.col}: ${d.severity}: ${d.field ? `${d.field}: ` : ""}${d.message} [${d.code}]`;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
	main(process.argv.slice(2)).then(
		(code) => {
			process.exitCode = code;
		},
		(e) => {
			process.stderr.write(`drawbridge validate: ${(e as Error).stack ?? e}\n`);
			process.exitCode = EXIT_USAGE;
		},
	);
}
