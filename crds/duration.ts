/**
 * Durations and grant windows.
 *
 * Durations in the API are one positive integer and a unit: `90s`, `30m`, `2h`, `7d` (the CRD pattern
 * and the CEL duration cap rely on that shape). `parseDuration` also accepts compound forms such as
 * `1h30m` (days, hours, minutes, seconds in that order) for configuration that is not a CRD field,
 * e.g. lint limits in `.drawbridge.yaml`.
 */

const UNIT_MS = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1_000 } as const;
const COMPOUND = /^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/;

/** Milliseconds in `text`, or undefined when it is not a duration (or is zero). */
export function parseDuration(text: string): number | undefined {
	if (typeof text !== "string" || text.length === 0 || text.length > 32) return undefined;
	const m = COMPOUND.exec(text);
	if (!m) return undefined;
	const [, d, h, mi, s] = m;
	const ms =
		Number(d ?? 0) * UNIT_MS.d + Number(h ?? 0) * UNIT_MS.h + Number(mi ?? 0) * UNIT_MS.m + Number(s ?? 0) * UNIT_MS.s;
	if (!Number.isSafeInteger(ms) || ms <= 0) return undefined;
	return ms;
}

/** Like parseDuration but throws a TypeError naming the input. */
export function mustParseDuration(text: string): number {
	const ms = parseDuration(text);
	if (ms === undefined) throw new TypeError(`invalid duration ${JSON.stringify(text)} (expected e.g. 30m, 2h, 7d)`);
	return ms;
}

/** Shortest exact rendering: 7200000 -> `2h`, 5400000 -> `1h30m`. */
export function formatDuration(ms: number): string {
	if (!Number.isFinite(ms) || ms <= 0) return "0s";
	let rest = Math.floor(ms / 1000) * 1000;
	let out = "";
	for (const unit of ["d", "h", "m", "s"] as const) {
		const n = Math.floor(rest / UNIT_MS[unit]);
		if (n > 0) {
			out += `${n}${unit}`;
			rest -= n * UNIT_MS[unit];
		}
	}
	return out || "0s";
}

export interface GrantTiming {
	duration?: string;
	notBefore?: string;
	expiresAt?: string;
}

export interface GrantWindow {
	notBefore: Date;
	expiresAt: Date;
}

/**
 * The effective window of a grant. `approvedAt` is the time of the merge that introduced the grant
 * (the operator passes the earlier of status.origin.committedAt and status.origin.firstSeenAt: a
 * committer time is whatever the commit says); a grant without `notBefore` starts there, and a `duration` counts from
 * the start. Throws a TypeError for a spec the validator would reject (neither or both of
 * duration/expiresAt, unparsable values).
 */
export function grantWindow(spec: GrantTiming, approvedAt: Date): GrantWindow {
	const notBefore = spec.notBefore !== undefined ? parseTimestamp(spec.notBefore, "notBefore") : new Date(approvedAt.getTime());
	if ((spec.duration === undefined) === (spec.expiresAt === undefined)) {
		throw new TypeError("exactly one of duration or expiresAt must be set");
	}
	const expiresAt =
		spec.expiresAt !== undefined
			? parseTimestamp(spec.expiresAt, "expiresAt")
			: new Date(notBefore.getTime() + mustParseDuration(spec.duration!));
	return { notBefore, expiresAt };
}

/** Length of a grant in ms when it can be known from the spec alone (duration, or both bounds). */
export function grantLengthMs(spec: GrantTiming): number | undefined {
	if (spec.duration !== undefined) return parseDuration(spec.duration);
	if (spec.notBefore !== undefined && spec.expiresAt !== undefined) {
		const d = Date.parse(spec.expiresAt) - Date.parse(spec.notBefore);
		return Number.isFinite(d) ? d : undefined;
	}
	return undefined;
}

/** Where a grant stands at `now`. */
export function grantPhaseAt(window: GrantWindow, now: Date): "Pending" | "Active" | "Expired" {
	if (now.getTime() < window.notBefore.getTime()) return "Pending";
	if (now.getTime() >= window.expiresAt.getTime()) return "Expired";
	return "Active";
}

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?(?:[Zz]|[+-](\d{2}):(\d{2}))$/;

/**
 * True for an RFC 3339 date-time such as `2026-05-01T09:00:00Z` that names a real instant: month, day
 * (in that month), hour, minute, second and offset in range, as the apiserver (Go's time.Parse) checks.
 * `Date.parse` rolls `2026-02-30` over to March 2: `drawbridge validate` and `drawbridge dev` accepted
 * such a date, which a reviewer reads as the end of February, while the apiserver refuses it.
 */
export function isTimestamp(text: string): boolean {
	if (typeof text !== "string") return false;
	const m = RFC3339.exec(text);
	if (!m || !Number.isFinite(Date.parse(text))) return false;
	const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
	const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
	const daysInMonth = month === 2 ? (leap ? 29 : 28) : [4, 6, 9, 11].includes(month) ? 30 : 31;
	const offsetOk = m[8] === undefined || (Number(m[8]) <= 23 && Number(m[9]) <= 59);
	return month >= 1 && month <= 12 && day >= 1 && day <= daysInMonth && hour <= 23 && minute <= 59 && second <= 59 && offsetOk;
}

function parseTimestamp(text: string, field: string): Date {
	if (!isTimestamp(text)) throw new TypeError(`${field}: invalid RFC 3339 timestamp ${JSON.stringify(text)}`);
	return new Date(Date.parse(text));
}
