/**
 * Text that came from an agent (an exec command, an SFTP path, a SQL statement, a PostgreSQL
 * application_name, a Kubernetes path) printed to an auditor's or approver's terminal. Terminals act on
 * control characters: ESC sequences erase and rewrite lines, `\r` and backspace overwrite, bidi
 * overrides reorder what is shown, zero-width and other default-ignorable characters (Hangul fillers,
 * variation selectors, tag characters) show nothing. An agent could otherwise make `drawbridge
 * recordings show` display a harmless command over the one that ran, or `drawbridge approvals show`
 * display a harmless command for the one being approved. Every such character is shown as a visible
 * escape instead. Which characters: the one predicate the approvals page, Slack and the grants
 * repository loader use (crds/text.ts `INVISIBLE`).
 */
import { INVISIBLE_ALL } from "../crds/text.ts";

function visible(ch: string): string {
	const code = ch.codePointAt(0)!;
	if (ch === "\n") return "\\n";
	if (ch === "\r") return "\\r";
	if (ch === "\t") return "\\t";
	if (code <= 0xff) return `\\x${code.toString(16).padStart(2, "0")}`;
	return code <= 0xffff ? `\\u${code.toString(16).padStart(4, "0")}` : `\\u{${code.toString(16)}}`;
}

/** `text` with every `INVISIBLE` character shown as `\xNN` / `\uNNNN` / `\u{NNNNN}` (`\n` kept when asked). */
export function terminalSafe(text: string, opts: { keepNewlines?: boolean } = {}): string {
	return text.replace(INVISIBLE_ALL, (ch) => (opts.keepNewlines && ch === "\n" ? ch : visible(ch)));
}

/** DEC private modes a replay may set: cursor keys, autowrap, blink, cursor shown, alternate screen, bracketed paste. */
const REPLAY_PRIVATE_MODES = new Set(["1", "7", "12", "25", "47", "1047", "1048", "1049", "2004"]);
/** CSI finals without a prefix a replay may send: SGR, cursor moves, erasing, scrolling, insert mode. */
const REPLAY_CSI_FINALS = new Set("mABCDEFGHIJKLMPSTXZ@`abdefgrsu");
const MAX_SEQUENCE = 64;
/** A terminal's default for each of REPLAY_PRIVATE_MODES (1048 saves the cursor: nothing to undo). */
const REPLAY_MODE_DEFAULTS: Record<string, "h" | "l" | undefined> = { "1": "l", "7": "h", "12": "l", "25": "h", "47": "l", "1047": "l", "1049": "l", "2004": "l" };

/**
 * The recorded terminal output an agent produced, made fit for an auditor's terminal by `replay`.
 * Deny by default: text, BEL/BS/TAB/LF/CR, and escape sequences that only draw (colours, cursor moves,
 * erasing, scroll regions, the alternate screen) pass; every other sequence is dropped whole:
 * OSC/DCS/APC/PM/SOS strings (OSC 52 writes the auditor's clipboard, OSC 8 hides a link behind text,
 * DCS queries), sequences the terminal answers into the auditor's input (device status and attributes,
 * window reports, mode requests, ENQ), mouse and focus reporting, keyboard protocol changes, charset
 * switches. Sequences may be split across `write` calls. `end()` undoes what the replay left set
 * (charset, rendition, scroll region, insert mode, keypad mode, private modes, the alternate screen).
 */
export class ReplayFilter {
	#state: "ground" | "esc" | "charset" | "csi" | "string" | "string-esc" | "skip1" = "ground";
	#seq = "";
	#charset = false;
	#rendition = false;
	#scrollRegion = false;
	#insertMode = false;
	#keypad = false;
	/** DEC private modes the replay set, by number: their last value ("h" or "l"). */
	readonly #modes = new Map<string, "h" | "l">();

	write(text: string): string {
		let out = "";
		for (const ch of text) {
			const c = ch.codePointAt(0) ?? 0;
			switch (this.#state) {
				case "ground":
					if (c === 0x1b) this.#begin("esc", ch);
					else if (c === 0x9b) this.#begin("csi", "\x1b[");
					else if (c === 0x90 || c === 0x98 || c === 0x9d || c === 0x9e || c === 0x9f) this.#begin("string", "");
					else if (c === 0x07 || c === 0x08 || c === 0x09 || c === 0x0a || c === 0x0d || (c >= 0x20 && c !== 0x7f && (c < 0x80 || c > 0x9f))) out += ch;
					break;
				case "esc":
					if (c === 0x1b) break;
					if (ch === "[") {
						this.#state = "csi";
						this.#seq += ch;
					} else if ("]PX^_".includes(ch)) this.#begin("string", "");
					else if ("()*+".includes(ch)) {
						this.#state = "charset";
						this.#seq += ch;
					} else if (ch === "#" || ch === " " || ch === "%") this.#state = "skip1";
					else {
						if ("78MDE=>H".includes(ch)) out += this.#seq + ch;
						if (ch === "=" || ch === ">") this.#keypad = ch === "=";
						this.#state = "ground";
					}
					break;
				case "charset":
					if (ch === "B" || ch === "0") {
						out += this.#seq + ch;
						this.#charset = true;
					}
					this.#state = "ground";
					break;
				case "skip1":
					this.#state = "ground";
					break;
				case "csi":
					if (c === 0x18 || c === 0x1a) this.#state = "ground";
					else if (c === 0x1b) this.#begin("esc", ch);
					else if (c < 0x20) {
						// a terminal runs a control met inside a sequence and goes on with the sequence
						if (c === 0x07 || c === 0x08 || c === 0x09 || c === 0x0a || c === 0x0d) out += ch;
					}
					else if (c >= 0x40 && c <= 0x7e) {
						out += this.#csi(this.#seq.slice(2), ch);
						this.#state = "ground";
					} else if (c >= 0x20 && c <= 0x3f && this.#seq.length < MAX_SEQUENCE) this.#seq += ch;
					else this.#state = c >= 0x20 && c <= 0x3f ? "csi" : "ground";
					break;
				case "string":
					// dropped up to BEL or ST (ESC \ or 0x9c); CAN and SUB cancel it
					if (c === 0x07 || c === 0x9c || c === 0x18 || c === 0x1a) this.#state = "ground";
					else if (c === 0x1b) this.#state = "string-esc";
					break;
				case "string-esc":
					if (ch === "\\") this.#state = "ground";
					else if (ch !== "\x1b") this.#state = "string";
					break;
			}
		}
		return out;
	}

	/** What to write after the replay: the default charset and rendition, the cursor shown, the main screen (what the replay changed). */
	end(): string {
		this.#state = "ground";
		let out = `${this.#charset ? "\x1b(B" : ""}${this.#rendition ? "\x1b[0m" : ""}${this.#scrollRegion ? "\x1b[r" : ""}${this.#insertMode ? "\x1b[4l" : ""}${this.#keypad ? "\x1b>" : ""}`;
		// every private mode left other than a terminal's default, the main screen last
		for (const [mode, value] of this.#modes) {
			const normal = REPLAY_MODE_DEFAULTS[mode];
			if (normal && value !== normal && mode !== "1049" && mode !== "1047" && mode !== "47") out += `\x1b[?${mode}${normal}`;
		}
		if (["1049", "1047", "47"].some((m) => this.#modes.get(m) === "h")) out += "\x1b[?1049l";
		return out;
	}

	#begin(state: "esc" | "csi" | "string", seq: string): void {
		this.#state = state;
		this.#seq = seq;
	}

	/** A complete CSI sequence: itself when it only draws, else nothing. */
	#csi(params: string, final: string): string {
		if (params.length >= MAX_SEQUENCE - 2) return "";
		if (params.startsWith("?") && (final === "h" || final === "l")) {
			const modes = params.slice(1).split(";");
			if (!modes.every((m) => REPLAY_PRIVATE_MODES.has(m))) return "";
			for (const m of modes) this.#modes.set(m, final);
			return `\x1b[${params}${final}`;
		}
		// parameters are digits and separators only: no private prefix (>, =, <) and no intermediates
		if (!/^[0-9;:]*$/.test(params)) return "";
		if (final === "h" || final === "l") {
			if (params !== "4") return "";
			this.#insertMode = final === "h";
			return `\x1b[${params}${final}`;
		}
		if (final === "m") this.#rendition = true;
		if (final === "r") this.#scrollRegion = true;
		return REPLAY_CSI_FINALS.has(final) ? `\x1b[${params}${final}` : "";
	}
}
