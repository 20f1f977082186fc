/**
 * CPU time from /proc for the benches: utime and stime of a process (`/proc/<pid>/stat`, all its
 * threads) or of one thread (`/proc/<pid>/task/<tid>/stat`), in microseconds; and how busy the
 * whole machine was (`/proc/stat`).
 */
import { readFileSync } from "node:fs";

/** USER_HZ: /proc stat times are in clock ticks. */
const TICKS = 100;

/** utime and stime in µs, the command name, and minor page faults (pages first touched or re-mapped: kernel time). */
export function statCpuMicros(statPath: string): { user: number; sys: number; comm: string; minflt: number } {
	const stat = readFileSync(statPath, "utf8");
	const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
	return {
		user: (Number(f[11]) * 1_000_000) / TICKS,
		sys: (Number(f[12]) * 1_000_000) / TICKS,
		comm: stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")")),
		minflt: Number(f[7]),
	};
}

/** Busy and total jiffies of the whole machine (all cores) from /proc/stat. */
export function machineJiffies(): { busy: number; total: number } {
	const f = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!.trim().split(/\s+/).slice(1, 9).map(Number); // user … steal (guest is inside user)
	const total = f.reduce((a, b) => a + b, 0);
	return { busy: total - f[3]! - (f[4] ?? 0), total };
}
