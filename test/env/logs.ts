// Printing server logs when a test fails.
import { afterEach } from "node:test";

export interface HasLogs {
	logs(): string;
}

type Named = HasLogs | [string, HasLogs | undefined] | undefined;

function render(handles: Named[]): string {
	const out: string[] = [];
	handles.forEach((h, i) => {
		const [name, hh] = Array.isArray(h) ? h : [`server #${i + 1}`, h];
		if (!hh) return;
		out.push(`----- ${name} log -----\n${hh.logs().trimEnd()}\n----- end ${name} log -----`);
	});
	return out.join("\n");
}

/**
 * Registers an afterEach hook in the current suite/file that prints the given servers' logs to
 * stderr when a test failed. Pass a function when the handles are created later (e.g. in before()).
 *   const pg = await startPostgres(); printLogsOnFailure(() => [["postgres", pg]]);
 */
export function printLogsOnFailure(handles: () => Named[]): void {
	afterEach((t) => {
		if ("passed" in t && !t.passed) process.stderr.write(`${render(handles())}\n`);
	});
}

/** Runs `fn`; if it throws, prints the servers' logs to stderr and rethrows. */
export async function withLogs<T>(handles: Named[], fn: () => Promise<T>): Promise<T> {
	try {
		return await fn();
	} catch (err) {
		process.stderr.write(`${render(handles)}\n`);
		throw err;
	}
}
