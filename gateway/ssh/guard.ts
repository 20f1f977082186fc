/**
 * Best-effort reconstruction of shell input lines from keystrokes, so each line can be decided by the
 * policy engine (gateway/policy/ssh.ts `evaluateSshCommand`) before its Enter key reaches the target.
 *
 * Honest limits of shell-line checking (also in README.md): the gateway sees keystrokes, not what the
 * remote shell will run. Tab completion, history recall (arrow keys, Ctrl-R), aliases, functions,
 * scripts, `eval`, here-documents, editors and anything typed inside a program other than the login
 * shell defeat it. It catches the honest mistake and the naive agent; for a hard boundary use exec-only
 * grants (`allowShell: false` + `allowedCommands`), which are checked exactly.
 */
/**
 * Reconstructs the line being typed from keystrokes. `feed` returns segments: bytes to forward now and
 * completed lines whose terminator (CR, LF, or ^O, which bash's readline also runs the line on) is held
 * back until a decision.
 */
export type LineSegment = { kind: "bytes"; data: Buffer } | { kind: "line"; line: string; dirty: boolean; terminator: Buffer };

export class LineTracker {
	#line = "";
	/** True when editing keys we cannot follow (escape sequences, tab) touched the line. */
	#dirty = false;
	#inEscape = false;

	feed(chunk: Buffer): LineSegment[] {
		const out: LineSegment[] = [];
		let start = 0;
		for (let i = 0; i < chunk.length; i++) {
			const c = chunk[i]!;
			if (this.#inEscape) {
				// CSI / SS3 sequences end with a byte in 0x40..0x7e (after the introducer). A control byte is
				// never part of one: it ends the sequence and counts as itself (ESC then CR is a meta-Enter
				// to readline, which ran the line; swallowed here, the CR went through undecided).
				if (c >= 0x20) {
					if (c >= 0x40 && c <= 0x7e && c !== 0x5b && c !== 0x4f) this.#inEscape = false;
					continue;
				}
				this.#inEscape = false;
			}
			switch (c) {
				case 0x0d: // CR
				case 0x0a: // LF
				case 0x0f: {
					// ^O: bash binds it to operate-and-get-next, which runs the line like Enter.
					if (i > start) out.push({ kind: "bytes", data: chunk.subarray(start, i) });
					out.push({ kind: "line", line: this.#line, dirty: this.#dirty, terminator: chunk.subarray(i, i + 1) });
					this.#line = "";
					this.#dirty = false;
					start = i + 1;
					break;
				}
				case 0x7f: // DEL
				case 0x08: // BS
					this.#line = this.#line.slice(0, -1);
					break;
				case 0x15: // ^U kill line
				case 0x03: // ^C
					this.#line = "";
					this.#dirty = false;
					break;
				case 0x17: // ^W kill word
					this.#line = this.#line.replace(/\S*\s*$/, "");
					break;
				case 0x1b: // ESC
					this.#inEscape = true;
					this.#dirty = true;
					break;
				case 0x09: // TAB
					this.#dirty = true;
					this.#line += " ";
					break;
				default:
					if (c >= 0x20) this.#line += String.fromCharCode(c);
					else this.#dirty = true;
			}
		}
		if (start < chunk.length) out.push({ kind: "bytes", data: chunk.subarray(start) });
		// Non-ASCII input: decode properly for the line text.
		return out.map((s) => (s.kind === "line" ? { ...s, line: Buffer.from(s.line, "latin1").toString("utf8") } : s));
	}
}
