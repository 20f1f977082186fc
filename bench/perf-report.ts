/**
 * Reading `perf record -e cpu-clock` data of a Node.js process for the perf benches (pg-perf.ts,
 * recording-perf.ts): samples per symbol, and the category a symbol falls in.
 */
import { run } from "../test/env/index.ts";

/** The category a perf symbol of a Node.js process falls in. */
export function category(dso: string, sym: string): string {
	if (dso.startsWith("[JIT]")) return sym.includes(" node:") ? "JIT: Node's own JS (streams, net, tls)" : sym.includes("file://") ? "JIT: our JS and dependencies" : "JIT: other (regexp, stubs)";
	if (dso === "[kernel.kallsyms]") return /^(_raw_spin_unlock_irqrestore|finish_task_switch|_raw_spin_unlock_irq)/.test(sym) ? "kernel: wake-ups, context switches" : "kernel: other (TCP, syscalls)";
	if (dso.startsWith("libc")) return /malloc|free|chunk|consolidate/.test(sym) ? "libc: malloc/free" : "libc: other";
	if (dso !== "node") return `other: ${dso}`;
	if (/^(SSL|ssl|tls|EVP|ossl|aes|BIO|gcm|CRYPTO|OPENSSL|ERR|OSSL|evp|RAND|sha|bn_|BN_|ctr|ghash)/.test(sym) || sym.startsWith("node::crypto::NodeBIO")) return "OpenSSL";
	if (sym.startsWith("node::") || sym.startsWith("uv")) return "Node C++ and libuv";
	if (/Heap|Scaveng|Mark|Sweep|Evacuat|Remembered|Minor|Concurrent|Sweeper|GC/.test(sym)) return "V8: GC";
	if (sym.startsWith("Builtins_")) return "V8: builtins";
	if (sym.startsWith("v8::")) return "V8: runtime and API";
	return "node: other";
}

/** "dso\tsymbol" → samples, from one `perf record` data file (JIT frames named by --perf-basic-prof). */
export async function perfSymbols(file: string): Promise<Map<string, number>> {
	const out = await run("perf", ["report", "-i", file, "--no-children", "--sort", "dso,sym", "--stdio", "-g", "none", "-F", "sample,dso,sym"], { timeoutMs: 300_000 });
	if (out.code !== 0) throw new Error(`perf report ${file}: ${out.stderr}`);
	const m = new Map<string, number>();
	for (const line of out.stdout.split("\n")) {
		const x = /^\s*(\d+)\s+(\[JIT\] tid \d+|\S+)\s+\[.\]\s+(.*)$/.exec(line);
		if (!x) continue;
		const dso = x[2]!.startsWith("[JIT]") ? "[JIT]" : x[2]!;
		const key = `${dso}\t${x[3]!.trim().replace(/file:\/\/\/\S*?\/(gateway|node_modules|bench)\//, "file://$1/")}`;
		m.set(key, (m.get(key) ?? 0) + Number(x[1]));
	}
	return m;
}
