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
export type LineSegment =
	| { kind: "bytes"; data: Buffer }
	/** `paste`: the terminator came inside a bracketed paste (its ESC [201~ not seen yet). */
	| { kind: "line"; line: string; dirty: boolean; terminator: Buffer; paste: boolean }
	/** ^C was typed (relayed in the bytes before it): the shell drops the line, and a command spread over lines. */
	| { kind: "cancel" };

export class LineTracker {
	#line = "";
	/**
	 * True when keys we cannot follow touched the line (cursor movement, history, completion, escape
	 * sequences, ^V, other control keys): what readline holds may differ from #line, so the line is
	 * refused where lines are checked (test/ssh/issue-shell-line-edits.test.ts). Only ^C (SIGINT, the
	 * whole line discarded) or a terminator clears it: ^U kills only what is left of the cursor.
	 */
	#dirty = false;
	/** Inside an escape sequence: the bytes after ESC so far. */
	#escape: string | undefined;
	/** After ^V (quoted-insert): the next byte is inserted as it is. */
	#quoted = false;
	/** Between ESC [200~ and ESC [201~. */
	#paste = false;

	feed(chunk: Buffer): LineSegment[] {
		const out: LineSegment[] = [];
		let start = 0;
		for (let i = 0; i < chunk.length; i++) {
			const c = chunk[i]!;
			if (this.#escape !== undefined) {
				// CSI / SS3 sequences end with a byte in 0x40..0x7e (after the introducer). A control byte is
				// never part of one: it ends the sequence and counts as itself (ESC then CR is a meta-Enter
				// to readline, which ran the line; swallowed here, the CR went through undecided).
				if (c >= 0x20) {
					this.#escape += String.fromCharCode(c);
					if ((c >= 0x40 && c <= 0x7e && !(this.#escape.length === 1 && (c === 0x5b || c === 0x4f))) || this.#escape.length > 32) {
						const seq = this.#escape;
						this.#escape = undefined;
						// Bracketed paste markers (terminals send them when bash 5.1+ asks) do not edit: the pasted
						// printable text is the line's text either way. What is inside is read as typed: a CR or LF
						// there is held and decided like Enter, which it is where paste mode is off (dash, cooked
						// mode, older bash; the target's output, which says whether it is on, is the agent's to
						// write), and any other control byte marks the line.
						if (seq === "[200~") this.#paste = true;
						else if (seq === "[201~") this.#paste = false;
						else this.#dirty = true;
					}
					continue;
				}
				this.#escape = undefined;
				this.#dirty = true;
			}
			if (this.#quoted) {
				this.#quoted = false;
				if (c >= 0x20 && c !== 0x7f) this.#line += String.fromCharCode(c);
				continue;
			}
			switch (c) {
				case 0x0d: // CR
				case 0x0a: // LF
				case 0x0f: {
					// ^O: bash binds it to operate-and-get-next, which runs the line like Enter.
					if (i > start) out.push({ kind: "bytes", data: chunk.subarray(start, i) });
					out.push({ kind: "line", line: this.#line, dirty: this.#dirty, terminator: chunk.subarray(i, i + 1), paste: this.#paste });
					this.#line = "";
					this.#dirty = false;
					start = i + 1;
					break;
				}
				case 0x7f: // DEL
				case 0x08: // BS
					this.#line = this.#line.slice(0, -1);
					break;
				case 0x15: // ^U kill line: what is left of the cursor (all of it unless the line is dirty)
					this.#line = "";
					break;
				case 0x03: // ^C: SIGINT, readline discards the whole line
					this.#line = "";
					this.#dirty = false;
					out.push({ kind: "bytes", data: chunk.subarray(start, i + 1) }, { kind: "cancel" });
					start = i + 1;
					break;
				case 0x17: // ^W kill word
					this.#line = this.#line.replace(/\S*\s*$/, "");
					break;
				case 0x0c: // ^L clear screen: the line is unchanged
				case 0x07: // ^G abort: cancels a key sequence, the line is unchanged
					break;
				case 0x16: // ^V quoted-insert: the next byte is inserted, a control byte or a terminator too
					this.#quoted = true;
					this.#dirty = true;
					break;
				case 0x1b: // ESC
					this.#escape = "";
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

/**
 * Programs that take the whole terminal (the alternate screen) and its keys while they run: editors,
 * pagers, monitors. Not terminal multiplexers (tmux, screen: their windows hold shells, whose lines
 * must be checked), file managers with a command line of their own (mc), nor pagers that print a
 * file's bytes as they are (more, most, cat).
 */
const FULL_SCREEN = new Set(["vi", "vim", "nvim", "view", "vimdiff", "nano", "emacs", "less", "man", "top", "htop", "btop", "atop", "iotop"]);

/**
 * Whether a decided line starts a FULL_SCREEN program and nothing else: the program's name (a path to
 * it too), optionally after `sudo`, then plain arguments: no `;`, `&`, `|`, redirection, substitution,
 * quoting, globs, history expansion or a second line, so nothing else of the line can write to the
 * terminal before or after it (an assignment before the name leaves the name out of first place).
 */
export function fullScreenCommand(line: string): boolean {
	const t = line.trim();
	if (t === "" || /[;&|<>()`$\\'"\n*?[{}!#]/.test(t)) return false;
	const words = t.split(/[ \t]+/);
	const first = words[0] === "sudo" ? words[1] : words[0];
	if (first === undefined) return false;
	return FULL_SCREEN.has(first.slice(first.lastIndexOf("/") + 1));
}

/**
 * Whether a full-screen program the guard let start has the keyboard: the last line decided at the
 * shell started a FULL_SCREEN program (fullScreenCommand), and the target's output has switched to
 * the alternate screen (`ESC [?1049h`, `?1047h`, `?47h`) since then and not back. Its keys (ESC,
 * arrows) are then not shell-line edits, and a line is decided as tracked. The output is the target's,
 * i.e. the agent's to write: before round 11 the switch alone counted, so `printf '\e[?1049h'` at the
 * prompt made every later edited line pass as tracked (`ouch f`, ^A, `t` ran `touch f` under a `touch *`
 * rule). A switch that came before the program's line, another line decided at the shell, or leaving
 * the alternate screen ends it. Sequences split across chunks are found too.
 */
export class TerminalModes {
	#alternateScreen = false;
	/** The last line decided at the shell started a FULL_SCREEN program, which has not left the alternate screen. */
	#armed = false;
	/** The alternate screen was switched to while #armed. */
	#entered = false;
	#tail = "";

	/** The target's output is on the alternate screen (whoever switched it). */
	get alternateScreen(): boolean {
		return this.#alternateScreen;
	}

	/** A FULL_SCREEN program the guard let start switched to the alternate screen and has not left it. */
	get fullScreenProgram(): boolean {
		return this.#armed && this.#entered && this.#alternateScreen;
	}

	/** A line decided at the shell (not inside a full-screen program) is relayed with its Enter. */
	relayed(command: string): void {
		this.#armed = fullScreenCommand(command);
		this.#entered = false;
	}

	feed(chunk: Buffer): void {
		const text = this.#tail + chunk.toString("latin1");
		const re = /\x1b\[\?(?:1049|1047|47)([hl])/g;
		for (let m = re.exec(text); m !== null; m = re.exec(text)) {
			this.#alternateScreen = m[1] === "h";
			if (this.#alternateScreen) {
				if (this.#armed) this.#entered = true;
			} else if (this.#entered) {
				// The program left it: whatever switches to it next is not the program the line started.
				this.#armed = false;
				this.#entered = false;
			}
		}
		// Keep what could be the start of a sequence cut at the chunk's end.
		const esc = text.lastIndexOf("\x1b");
		this.#tail = esc >= 0 && text.length - esc < 8 ? text.slice(esc) : "";
	}
}
