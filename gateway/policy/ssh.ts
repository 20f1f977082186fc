/**
 * SSH decisions: channel requests against the grant, and exec commands / shell input lines against
 * `allowedCommands` and GuardrailRule `ssh.commands` globs.
 *
 * Commands are split with a small POSIX-shell tokenizer (best effort, see README "SSH limits"):
 * quotes and backslashes, `;` `&&` `||` `|` `&` and newlines, `( )` / `{ }` groups, `$( )` and
 * backtick substitutions, `sudo`/`doas`/`env`/`nohup`/`time`/`nice`/`timeout`/`exec`/`command`
 * wrappers, `VAR=value` prefixes, `/usr/bin/rm` paths, and `sh|bash|zsh|dash|ksh -c '...'` and
 * `su -c '...'` bodies (recursively). Anything it cannot split (unbalanced quotes) is refused when
 * the grant restricts commands, and matched as one raw string against rules.
 */
import type { BundleGrant, GuardrailRule } from "../config/bundle.ts";
import { compileCaseSensitiveGlob, compileGlob, type GlobMatcher, printable } from "./glob.ts";
import type { SshVerdict } from "./types.ts";

type SshGrant = NonNullable<BundleGrant["ssh"]>;

const RANK = { allow: 0, audit: 1, requireApproval: 2, block: 3 } as const;
const MAX_DEPTH = 8;
/** Deepest `$( $( … ) )` nesting the tokenizer follows when finding where a substitution ends. */
const MAX_SCAN_NESTING = 16;

export interface ShellSegment {
	/** The simple command as written (words re-joined with single spaces, quotes removed). */
	written: string;
	/** With VAR= prefixes, wrappers (sudo, env...) and command paths removed. */
	command: string;
	/** Nesting: 0 top level, >0 inside `bash -c`, `$( )`, backticks. */
	depth: number;
	/** True when it came from a `$( )`/backtick substitution (runs even if the outer one is allowed). */
	substitution: boolean;
}

export interface ShellParse {
	ok: boolean;
	segments: ShellSegment[];
	error?: string;
	/** Here-document bodies, in order (data to the shell; an unquoted delimiter's body is expanded like "..."). */
	hereDocs: HereDoc[];
	/**
	 * Expansions that make bash evaluate text as code (expansionAt), at the top level and in
	 * substitutions (where the allowlist looks; not in the body of a `bash -c '…'`).
	 */
	evaluating: string[];
}

/** What parsing collects across nesting levels besides segments. */
interface ParseAcc {
	hereDocs: HereDoc[];
	evaluating: string[];
	posix?: boolean;
	ambiguous?: boolean;
	unclear?: string;
}

export interface HereDoc {
	body: string;
	/** The delimiter was unquoted: bash expands `$(…)`, backquotes, `${…}`, `$((…))` in the body. */
	expand: boolean;
	/** Nesting of the command that holds it (0: top level; inside `$( )`, backquotes or `bash -c` more). */
	depth: number;
}

const SHELLS = new Set(["sh", "bash", "zsh", "dash", "ksh", "ash", "busybox"]);
/**
 * Reserved words that can start a simple command's segment (`if rm -rf /; then ...`, `for ...; do rm
 * ...`, `! rm ...`): skipped like wrappers, or the command after them hid from rules.
 */
const RESERVED = new Set(["!", "if", "then", "elif", "else", "do", "while", "until", "coproc"]);
const WRAPPERS = new Set(["sudo", "doas", "env", "nohup", "time", "nice", "ionice", "exec", "command", "builtin", "timeout", "stdbuf", "chroot", "xargs", "setsid", "unbuffer"]);
/** Wrapper options that take a value (`sudo -u root`, `timeout -s KILL`, `nice -n 5`). */
const WRAPPER_VALUE_OPTS: Record<string, Set<string>> = {
	sudo: new Set(["-u", "-g", "-h", "-p", "-C", "-D", "-r", "-t", "-U", "-T"]),
	doas: new Set(["-u", "-C"]),
	nice: new Set(["-n"]),
	ionice: new Set(["-c", "-n", "-p"]),
	timeout: new Set(["-s", "-k", "--signal", "--kill-after"]),
	env: new Set(["-u", "-C", "-S", "--unset", "--chdir"]),
	stdbuf: new Set(["-i", "-o", "-e"]),
	xargs: new Set(["-I", "-n", "-P", "-L", "-d", "-E", "-s", "-a"]),
};

interface Word {
	text: string;
	/** Operator token (`;`, `&&`, `|`, `(`...) rather than a word. */
	op?: boolean;
}

/**
 * Reads a backtick substitution starting after the opening backtick at `from`, the way bash does:
 * inside backticks a backslash before `` ` ``, `$` or `\` escapes it, so `` `a \`b\` c` `` is one
 * substitution whose body is `` a `b` c `` (itself holding the substitution `b`). Returns the index of
 * the closing backtick and the unescaped body, or undefined when it is not closed.
 */
function readBacktick(input: string, from: number): { end: number; body: string } | undefined {
	let body = "";
	for (let j = from; j < input.length; j++) {
		const c = input[j]!;
		if (c === "\\" && j + 1 < input.length && "`$\\".includes(input[j + 1]!)) {
			body += input[j + 1]!;
			j++;
			continue;
		}
		if (c === "`") return { end: j, body };
		body += c;
	}
	return undefined;
}

const ANSI_C_ESCAPES: Record<string, string> = { a: "\x07", b: "\b", e: "\x1b", E: "\x1b", f: "\f", n: "\n", r: "\r", t: "\t", v: "\v" };

/**
 * Reads a bash/zsh/ksh ANSI-C string `$'...'` starting at the `'` at `from`: a backslash escapes the
 * next character (so `\'` does not end it) and `\xHH`, `\NNN`, `\uHHHH`, `\n`... are decoded (so
 * `$'\x72m'` is seen as `rm`). Reading it as a plain `'...'` string ended it at `\'`, and the
 * command after it was taken for quoted text while the shell ran it.
 */
function readAnsiC(input: string, from: number): { end: number; text: string } | undefined {
	let text = "";
	for (let j = from + 1; j < input.length; j++) {
		const c = input[j]!;
		if (c === "'") return { end: j, text };
		if (c !== "\\") {
			text += c;
			continue;
		}
		const e = input[j + 1];
		if (e === undefined) return undefined;
		const hex = /^x([0-9a-fA-F]{1,2})|^u([0-9a-fA-F]{1,4})|^U([0-9a-fA-F]{1,8})|^([0-7]{1,3})/.exec(input.slice(j + 1, j + 10));
		if (hex) {
			const code = hex[4] !== undefined ? Number.parseInt(hex[4], 8) : Number.parseInt((hex[1] ?? hex[2] ?? hex[3])!, 16);
			text += code <= 0x10ffff ? String.fromCodePoint(code) : "?";
			j += hex[0].length;
			continue;
		}
		if (e === "c" && j + 2 < input.length) {
			text += String.fromCharCode(input.charCodeAt(j + 2) & 0x1f);
			j += 2;
			continue;
		}
		text += ANSI_C_ESCAPES[e] ?? e;
		j++;
	}
	return undefined;
}

/** What tokenizing a command line collects besides its words. */
interface TokenSink {
	/** Bodies of `$( )` and backquote substitutions, to be parsed in turn. */
	subs: string[];
	hereDocs: { body: string; expand: boolean }[];
	/** Expansions that make bash evaluate text as code (expansionAt), in order. */
	evaluating: string[];
	/** Read `$'...'` as dash does (`$` and a plain '...'), for the rules' second reading. */
	posix?: boolean;
	/** Set when a `$'...'` string ends elsewhere for dash. */
	ambiguous?: boolean;
	/** Why the line, read on as bash reads it, is still not analysable (shells read it apart). */
	unclear?: string;
}

/**
 * Splits a command line into words and operators; substitutions are returned separately. Here-documents
 * are read as bash reads them: after `<<WORD` (or `<<-WORD`), the lines that follow the command line's
 * newline, up to a line that is exactly WORD (leading tabs removed for `<<-`), are the document's body,
 * data and not commands; its `$(…)` and backquotes (unquoted WORD only) are substitutions. Reading the
 * body as commands let a quote in it hide the next command: `echo a <<EOF⏎echo '⏎EOF⏎touch f #'` passed
 * `allowedCommands: ["echo *"]` and ran `touch`.
 */
function tokenize(input: string, sink: TokenSink, scan?: { from: number; nest: number }): { words: Word[]; error?: string; end?: number } {
	const { subs, hereDocs } = sink;
	/** A `$` where bash expands: record the expansion when it evaluates text as code. */
	const expanding = (at: number): void => {
		const e = expansionAt(input, at);
		if (e !== undefined) sink.evaluating.push(e);
	};
	const words: Word[] = [];
	let cur = "";
	let inWord = false;
	/** The current word has quoted or escaped parts (a here-document delimiter so written is not expanded). */
	let curQuoted = false;
	/** The word after `<<`/`<<-` is a here-document's delimiter. */
	let wantDelimiter: { strip: boolean } | undefined;
	/** Here-documents whose bodies start after the next newline. */
	const pending: { delimiter: string; strip: boolean; expand: boolean }[] = [];
	const flush = (): void => {
		if (inWord) {
			words.push({ text: cur });
			if (wantDelimiter) {
				pending.push({ delimiter: cur, strip: wantDelimiter.strip, expand: !curQuoted });
				wantDelimiter = undefined;
			}
		}
		cur = "";
		inWord = false;
		curQuoted = false;
	};
	let i = scan?.from ?? 0;
	const n = input.length;
	/** `(` operators open inside a `$( )` being scanned for its end (`$( (a) )`). */
	let parens = 0;
	/**
	 * input[openAt] is the '(' after '$': the index of the ')' that closes it, found by reading the
	 * inside as shell code with this same tokenizer (quotes, comments, here-documents, backquotes,
	 * nested substitutions), as bash does. Counting parentheses outside quotes ended `$( # )⏎…` at the
	 * `)` in the comment, and a quote after it then hid the substitution's next command from the
	 * allowlist (test/ssh/issue-heredoc.test.ts).
	 */
	const readSubst = (openAt: number): number | undefined => {
		const nest = (scan?.nest ?? 0) + 1;
		if (nest > MAX_SCAN_NESTING) return undefined;
		const inner: TokenSink = { subs: [], hereDocs: [], evaluating: [], ...(sink.posix ? { posix: true } : {}) };
		const r = tokenize(input, inner, { from: openAt + 1, nest });
		if (inner.ambiguous) sink.ambiguous = true;
		if (inner.unclear) sink.unclear ??= inner.unclear;
		return r.error === undefined ? r.end : undefined;
	};
	while (i < n) {
		const ch = input[i]!;
		if (ch === "'") {
			const end = input.indexOf("'", i + 1);
			if (end < 0) return { words, error: "unterminated single quote" };
			cur += input.slice(i + 1, end);
			inWord = true;
			curQuoted = true;
			i = end + 1;
			continue;
		}
		if (ch === '"') {
			let j = i + 1;
			let closed = false;
			while (j < n) {
				const c2 = input[j]!;
				if (c2 === "\\" && j + 1 < n) {
					// In "...", a backslash quotes only $ ` " \ and a newline (which it removes); before anything
					// else it stays, so `"a\b"` is the word a\b (the allowlist compared ab).
					const e = input[j + 1]!;
					if (e !== "\n") cur += '$`"\\'.includes(e) ? e : `\\${e}`;
					j += 2;
					continue;
				}
				if (c2 === '"') {
					closed = true;
					break;
				}
				if (c2 === "$" && input[j + 1] === "(") {
					const end = readSubst(j + 1);
					if (end === undefined) return { words, error: "unterminated $( )" };
					subs.push(input.slice(j + 2, end));
					cur += input.slice(j, end + 1);
					j = end + 1;
					continue;
				}
				if (c2 === "`") {
					const bt = readBacktick(input, j + 1);
					if (!bt) return { words, error: "unterminated backtick" };
					subs.push(bt.body);
					cur += input.slice(j, bt.end + 1);
					j = bt.end + 1;
					continue;
				}
				if (c2 === "$") expanding(j);
				cur += c2;
				j++;
			}
			if (!closed) return { words, error: "unterminated double quote" };
			inWord = true;
			curQuoted = true;
			i = j + 1;
			continue;
		}
		if (ch === "\\") {
			if (i + 1 < n && input[i + 1] !== "\n") {
				cur += input[i + 1]!;
				inWord = true;
				curQuoted = true;
			}
			i += 2;
			continue;
		}
		if (ch === "$" && input[i + 1] === "(") {
			const end = readSubst(i + 1);
			if (end === undefined) return { words, error: "unterminated $( )" };
			subs.push(input.slice(i + 2, end));
			cur += input.slice(i, end + 1);
			inWord = true;
			i = end + 1;
			continue;
		}
		if (ch === "`") {
			const bt = readBacktick(input, i + 1);
			if (!bt) return { words, error: "unterminated backtick" };
			subs.push(bt.body);
			cur += input.slice(i, bt.end + 1);
			inWord = true;
			i = bt.end + 1;
			continue;
		}
		if (ch === "$" && input[i + 1] === "'") {
			const a = readAnsiC(input, i + 1);
			if (!a) return { words, error: "unterminated $'...' string" };
			// A shell without ANSI-C strings reads `$` and a plain '...' that ends at the first quote: dash
			// (/bin/sh of Debian and Ubuntu, the login shell `useradd` gives by default there) ran the
			// `touch` inside `echo $'\' ; touch f⏎echo \''` (test/ssh/issue-login-shells.test.ts). The
			// gateway does not know the target's login shell: a string read differently is not analysed.
			const plainEnd = input.indexOf("'", i + 2);
			if (plainEnd !== a.end) {
				// Not analysable (parseShellCommand says so); read on as bash does, and again as dash does
				// (the second reading, for rules).
				sink.ambiguous = true;
				if (sink.posix) {
					cur += `$${input.slice(i + 2, plainEnd)}`;
					inWord = true;
					curQuoted = true;
					i = plainEnd + 1;
					continue;
				}
			}
			cur += a.text;
			inWord = true;
			curQuoted = true;
			i = a.end + 1;
			continue;
		}
		if (ch === "#" && !inWord) {
			const end = input.indexOf("\n", i);
			i = end < 0 ? n : end;
			continue;
		}
		if (ch === " " || ch === "\t") {
			flush();
			i++;
			continue;
		}
		if (ch === ";" || ch === "\n" || ch === "(" || ch === ")" || ch === "{" || ch === "}") {
			// `{ cmd; }` groups only as separate words (`{` then whitespace, `}` at a word start and
			// before a separator); elsewhere (`{}` in find -exec, `a{b,c}`) braces are literal.
			const next = input[i + 1];
			const groupOpen = ch === "{" && !inWord && (next === " " || next === "\t" || next === "\n");
			// `}` closes a group only where a command could start (after `;`, `&`, a newline, …): elsewhere it
			// is an argument (`uptime }` runs uptime with the argument `}`; as an operator it was dropped, and
			// an exact allowlist entry `uptime` allowed the line).
			const last = words[words.length - 1];
			const groupClose = ch === "}" && !inWord && (next === undefined || " \t\n;&|)".includes(next)) && (last === undefined || last.op === true);
			if ((ch === "{" || ch === "}") && !groupOpen && !groupClose) {
				cur += ch;
				inWord = true;
				i++;
				continue;
			}
			flush();
			if (wantDelimiter) return { words, error: "a here-document without a delimiter word" };
			if (scan && ch === "(") parens++;
			if (scan && ch === ")" && parens-- === 0) return { words, end: i };
			words.push({ text: ch, op: true });
			i++;
			if (ch === "\n" && pending.length > 0) {
				const read = readHereDocs(i);
				if (typeof read === "string") return { words, error: read };
				i = read;
			}
			continue;
		}
		if (ch === "&" || ch === "|") {
			if (wantDelimiter) {
				flush();
				return { words, error: "a here-document without a delimiter word" };
			}
			flush();
			const two = input[i + 1] === ch;
			words.push({ text: two ? ch + ch : ch, op: true });
			i += two ? 2 : 1;
			continue;
		}
		if (ch === ">" || ch === "<") {
			// Redirection: the operator ends the word; the target word is kept (it still names a file).
			flush();
			if (wantDelimiter) return { words, error: "a here-document without a delimiter word" };
			let j = i + 1;
			while (j < n && (input[j] === ">" || input[j] === "&" || input[j] === "<")) j++;
			const op = input.slice(i, j);
			if (op === "<<" && input[j] === "-") j++;
			words.push({ text: input.slice(i, j) });
			i = j;
			if (op === "<<") wantDelimiter = { strip: input[j - 1] === "-" };
			else if (op.includes("<<") && op !== "<<<") return { words, error: `redirection ${op} is not understood` };
			continue;
		}
		if (ch === "$") expanding(i);
		if (ch === "$" && input[i + 1] === "{") {
			// `${…}` is one unit to the shell: blanks, `#`, `;`, `|` inside it split nothing, so
			// `echo ${x:- #} ; touch f` is one echo and then touch (read as a comment from ` #`, the touch
			// was hidden: test/ssh/issue-shell-comments.test.ts). Under an allowlist a body holding any of
			// those is refused anyway (expansionAt); this keeps the words right for rules.
			const end = braceEnd(input, i + 2);
			for (let j = i + 2; j < end; j++) {
				const c = input[j]!;
				if (c === "\\") j++;
				else if (c === "$" && input[j + 1] === "(") {
					const e = readSubst(j + 1);
					if (e === undefined || e >= end) break;
					subs.push(input.slice(j + 2, e));
					j = e;
				} else if (c === "`") {
					const bt = readBacktick(input, j + 1);
					if (!bt || bt.end >= end) break;
					subs.push(bt.body);
					j = bt.end;
				}
			}
			cur += input.slice(i, end);
			inWord = true;
			i = end;
			continue;
		}
		cur += ch;
		inWord = true;
		i++;
	}
	flush();
	if (scan) return { words, error: "unterminated $( )" };
	if (wantDelimiter) return { words, error: "a here-document without a delimiter word" };
	// Bodies of here-documents on the last line: bash reads none (no line follows), so nothing to skip.
	return { words };

	/**
	 * Reads the bodies of the pending here-documents from `from` (just after the newline), in order.
	 * Returns where the code resumes, or why the line cannot be analysed. A body not closed by its
	 * delimiter runs to the end of the input (bash warns and does the same).
	 */
	function readHereDocs(from: number): number | string {
		let pos = from;
		for (const h of pending) {
			const start = pos;
			let body = "";
			for (;;) {
				if (pos >= n) break;
				let nl = input.indexOf("\n", pos);
				let line = input.slice(pos, nl < 0 ? n : nl);
				// With an unquoted delimiter bash and zsh join a line ending in a backslash with the next
				// before comparing it with the delimiter (`EO\⏎F` ends a document `<<EOF`); dash does not.
				// Read as bash does, and leave the line unanalysed: the shells end the body apart.
				while (h.expand && nl >= 0 && /(?:^|[^\\])(?:\\\\)*\\$/.test(line)) {
					sink.unclear ??= "a here-document line ending in a backslash (bash joins it with the next line, dash does not)";
					const next = input.indexOf("\n", nl + 1);
					line = line.slice(0, -1) + input.slice(nl + 1, next < 0 ? n : next);
					nl = next;
				}
				const text = h.strip ? line.replace(/^\t+/, "") : line;
				pos = nl < 0 ? n : nl + 1;
				if (text === h.delimiter) break;
				body += `${text}\n`;
			}
			hereDocs.push({ body, expand: h.expand });
			if (h.expand) {
				// As in "...": `$(…)` and backquotes run; a backslash escapes only `$`, a backquote, `\\`, a newline.
				for (let j = start; j < pos; j++) {
					const c = input[j]!;
					if (c === "\\") {
						j++;
						continue;
					}
					if (c === "$" && input[j + 1] !== "(") expanding(j);
					if (c === "$" && input[j + 1] === "(") {
						const end = readSubst(j + 1);
						if (end === undefined || end >= pos) return "a substitution in a here-document is not closed inside it";
						subs.push(input.slice(j + 2, end));
						j = end;
					} else if (c === "`") {
						const bt = readBacktick(input, j + 1);
						if (!bt || bt.end >= pos) return "a backquote substitution in a here-document is not closed inside it";
						subs.push(bt.body);
						j = bt.end;
					}
				}
			}
		}
		pending.length = 0;
		return pos;
	}
}

function basename(word: string): string {
	const slash = word.lastIndexOf("/");
	return slash >= 0 && slash < word.length - 1 ? word.slice(slash + 1) : word;
}

/**
 * The expansion starting at the `$` at `i` when it makes bash evaluate text as code, else undefined.
 * The allowlist checks every command and substitution *written* in the line; it cannot see text that an
 * expansion produces and bash then evaluates: an indexed array's subscript and a substring's offset
 * and length are arithmetic, and arithmetic expands `a[$(cmd)]` found in the text it is given (or in
 * the value of a variable it names), so `echo ${a[${BASH_EXECUTION_STRING:43:17}]} 'x[$(touch f)]'`
 * ran `touch` under `allowedCommands: ["echo *"]`. Refused under an allowlist:
 * - `$[`: legacy arithmetic (`$((` already reads as a substitution of a subshell and is refused);
 * - `${…}` whose body has a subscript `[`, a nested `$` or backquote, indirection `${!…}`, a
 *   substring `${v:off}` / `${v:off:len}` whose offset or length is not a plain integer, or the prompt
 *   transformation `${v@P}` (it runs `$(…)` in the value: `echo '$(cmd)' ${BASH_EXECUTION_STRING@P}`).
 * `${v}`, `${v:-word}` (and `:=`, `:?`, `:+`), `${#v}`, `${v%pat}`, `${v/a/b}` stay allowed.
 * The tokenizer calls it for each `$` it reads where bash expands (unquoted, in "...", in a
 * here-document with an unquoted delimiter, in substitutions), so quotes, comments and here-document
 * bodies are judged exactly as the tokenizer splits the line. (A scanner of its own, with its own idea
 * of quoting, missed `${BASH_EXECUTION_STRING@P}` after `echo x # '⏎`: it took the comment's quote
 * for the start of a quoted string.)
 */
/**
 * The index just past the `}` closing the `${` whose body starts at `from` (nested braces counted, a
 * backslash escapes the next character, quoted text skipped), or the input's length when none does.
 */
function braceEnd(input: string, from: number): number {
	let depth = 1;
	let j = from;
	while (j < input.length) {
		const c = input[j]!;
		if (c === "\\") j++;
		else if (c === "'" || c === '"') {
			const close = input.indexOf(c, j + 1);
			if (close < 0) return input.length;
			j = close;
		} else if (c === "{") depth++;
		else if (c === "}" && --depth === 0) return j + 1;
		j++;
	}
	return input.length;
}

function expansionAt(command: string, i: number): string | undefined {
	const n = command.length;
	if (command[i + 1] === "[") return "$[ arithmetic";
	// zsh's `$~v` (also `$=~v`, `$^~v`) expands v as a glob pattern, and a glob qualifier in the value runs
	// code: `echo '*(e:touch f:)'; echo $~_` (test/ssh/issue-login-shells.test.ts). In bash `$~` is text.
	const zshGlob = /^\$[=^~]*~/.exec(command.slice(i, i + 8));
	if (zshGlob) return zshGlob[0];
	if (command[i + 1] !== "{") return undefined;
	let depth = 1;
	let j = i + 2;
	while (j < n && depth > 0) {
		if (command[j] === "\\") j++;
		else if (command[j] === "{") depth++;
		else if (command[j] === "}") depth--;
		j++;
	}
	const body = command.slice(i + 2, depth === 0 ? j - 1 : n);
	const expansion = command.slice(i, j);
	if (/[[$`]/.test(body)) return expansion;
	// Quotes, backslashes, braces and operators inside `${…}`: where the body ends depends on each
	// shell's own quoting rules inside `${…}` (bash, dash and zsh differ within "…"): not analysed under
	// an allowlist. (Blanks and `#` are fine: the tokenizer keeps `${…}` one word, as the shells do.)
	if (/['"\\;&|<>(){}]/.test(body)) return expansion;
	if (body.startsWith("!")) return expansion;
	// zsh parameter flags: `(e)` substitutes the value again, `(P)` is indirection (bash: a syntax error).
	if (body.startsWith("(")) return expansion;
	// zsh `${~v}` (`${=~v}`, …): the value as a glob pattern, whose qualifiers run code (bash: a syntax error).
	if (/^[=^~]*~/.test(body)) return expansion;
	// Prompt expansion of a value runs the $(…) and backquotes in it: `echo '$(cmd)' ${BASH_EXECUTION_STRING@P}`, `${_@P}`.
	if (/@P$/.test(body)) return expansion;
	const sub = /^[A-Za-z_][A-Za-z0-9_]*:(?![-=?+])(.*)$/s.exec(body) ?? /^[0-9@*#?$!-]:(?![-=?+])(.*)$/s.exec(body);
	if (sub && !sub[1]!.split(":").every((p) => /^\s*-?\d+\s*$/.test(p) || p === "")) return expansion;
	return undefined;
}

/**
 * The first expansion in `command` that makes bash evaluate text as code (see expansionAt), where the
 * allowlist looks: the top level and substitutions, not the body of an allowed `bash -c '…'`.
 * A line that does not tokenize is looked at up to where it stops (the allowlist refuses it anyway).
 */
export function evaluatingExpansion(command: string): string | undefined {
	return parseShellCommand(command).evaluating[0];
}

/** `name[…$…]` or `` name[…`…] ``: an array element whose subscript, evaluated as arithmetic, runs a substitution. */
const SUBSCRIPTED_NAME = /[A-Za-z_][A-Za-z0-9_]*\[[^\]]*[$`]/;
/** `name[x]` with a subscript other than an integer literal: arithmetic reads `x` (a variable such as `_`) as an expression in turn. */
const NAMED_SUBSCRIPT = /[A-Za-z_][A-Za-z0-9_]*\[(?!\s*-?\d+\s*\])[^\]]*\]/;
/**
 * bash builtins that take variable names (and evaluate an indexed array's subscript in them) or
 * evaluate their operands as arithmetic (`[[ a -eq b ]]`, `let`).
 */
const NAME_BUILTINS = new Set(["test", "[", "[[", "printf", "read", "mapfile", "readarray", "declare", "typeset", "local", "export", "readonly", "let", "unset", "wait", "getopts"]);
const ARITH_COMPARE = /(?:^|\s)-(?:eq|ne|lt|le|gt|ge)(?:\s|$)/;

/**
 * Why a segment's words would make bash evaluate text as arithmetic, or undefined: a subscript holding
 * a substitution (any command), or, for the name-taking builtins, any subscript that is not an integer
 * literal (`test -v 'a[_]'` evaluates `_`, the previous command's last word, which may be `x[$(cmd)]`),
 * `let`, and `[[` arithmetic comparisons of anything but integer literals.
 */
function evaluatingWords(s: ShellSegment): string | undefined {
	if (SUBSCRIPTED_NAME.test(s.written)) return "a variable name whose subscript holds a substitution";
	const head = s.command.split(" ")[0] ?? "";
	if (!NAME_BUILTINS.has(head)) return undefined;
	if (NAMED_SUBSCRIPT.test(s.command)) return `a variable name with a subscript given to ${head}`;
	if (head === "let") return "let evaluates its arguments as arithmetic";
	if (head === "[[" && ARITH_COMPARE.test(s.command)) {
		const words = s.command.split(" ");
		for (let k = 0; k < words.length; k++) {
			if (!/^-(?:eq|ne|lt|le|gt|ge)$/.test(words[k]!)) continue;
			for (const operand of [words[k - 1], words[k + 1]]) if (operand !== undefined && !/^-?\d+$/.test(operand)) return "[[ compares arithmetic operands that are not integers";
		}
	}
	return undefined;
}

/**
 * Whether a LANG / LC_ALL / LC_CTYPE value keeps the target's shell reading input as the gateway does:
 * `C`, `POSIX`, empty, or a name with a UTF-8 codeset (`en_US.UTF-8`, `C.utf8`, `sr_RS.UTF-8@latin`).
 * In a locale whose multibyte characters may end in an ASCII byte (BIG5, BIG5-HKSCS, GBK, GB18030,
 * SHIFT_JIS, ...), bash takes a `\` after a lead byte as half of a character: `echo \xa1\; touch f` is
 * one `echo` to the gateway and `echo …; touch f` to bash in `zh_TW.BIG5`
 * (test/ssh/issue-locale-charset.test.ts). A name without a codeset (`zh_TW`) may mean such a
 * charset.
 */
export function isSafeCharsetLocale(v: string): boolean {
	return v === "" || v === "C" || v === "POSIX" || /^[A-Za-z0-9_+-]+\.(?:utf-?8)(?:@[A-Za-z0-9_+-]+)?$/i.test(v);
}

/** The variables that choose the character set bash reads its input in (values checked by isSafeCharsetLocale). */
export const CHARSET_VARIABLES: ReadonlySet<string> = new Set(["LANG", "LC_ALL", "LC_CTYPE"]);
/**
 * Variables that choose how readline reads keys, whatever their value: `INPUTRC` (a file of key
 * bindings and macros a new bash loads), `TERMINFO`, `TERMINFO_DIRS`, `TERMCAP` (a terminal description
 * whose cursor keys may be printable text).
 */
const KEYMAP_VARIABLES: ReadonlySet<string> = new Set(["INPUTRC", "TERMINFO", "TERMINFO_DIRS", "TERMCAP"]);
/** Builtins and keywords that assign a value to a variable named by a plain word (`read LC_ALL`, `for LC_ALL in …`). */
const ASSIGNING_BY_NAME = new Set(["read", "printf", "mapfile", "readarray", "getopts", "for", "select"]);
/** `bind` options that only list bindings. */
const BIND_LISTING = /^-[pPsSvVlX]+$/;

/**
 * Why a segment changes how the shell reads the input that comes after it, or undefined. The
 * gateway checks what bash will run by reading the line as bash reads it, and a shell line by
 * rebuilding it from keystrokes as readline's default bindings would; both stop holding when:
 * - `bind` (anything but listing) changes readline's keys: `bind -x '"\C-t": cmd'` runs `cmd` on one
 *   key, with no line for the gateway to decide; a macro (`"\C-t": "cmd\n"`) types a line and its Enter;
 *   `bind -r`/`-u` can unbind the keys the gateway's refusal sends (^G ^U);
 * - LANG, LC_ALL or LC_CTYPE is given a value that is not C, POSIX or UTF-8 (assigned, exported,
 *   declared, as a command's prefix, which a new shell inherits, or with `${v:=…}`), or named for
 *   `read`, `printf -v`, `for`, `declare -n` …: bash then reads the lines after it in that charset;
 * - INPUTRC, TERMINFO, TERMINFO_DIRS or TERMCAP is assigned: a new bash loads other key bindings;
 * - `set -o vi` (or `+o emacs`, or a shell started with `-o vi`): other editing keys; zsh's and tcsh's
 *   `bindkey` (their `bind`).
 * Rules match such a line whatever their commands, and an allowlist refuses it
 * (test/ssh/issue-shell-reading.test.ts).
 */
export function readingChange(s: ShellSegment): string | undefined {
	const words = s.written.split(" ");
	const head = s.command.split(" ")[0] ?? "";
	if (head === "bind" && !s.command.split(" ").slice(1).every((w) => BIND_LISTING.test(w))) {
		return "bind changes readline's keys, so a key can run a command with no line for the gateway to check";
	}
	// zsh's and tcsh's `bindkey` is bash's `bind` (`bindkey -s '^T' 'cmd\n'` is a macro); listing only with no argument or -l/-L.
	if (head === "bindkey" && !s.command.split(" ").slice(1).every((w) => /^-[lL]$/.test(w))) {
		return "bindkey changes the line editor's keys, so a key can run a command with no line for the gateway to check";
	}
	if ((head === "set" || SHELLS.has(head)) && /(?:^| )[-+]o (?:vi|emacs)(?: |$)/.test(s.command)) return "set -o vi changes what the editing keys do";
	// fc re-runs (or edits and runs) lines from the history, which `history -s` can write unrun.
	if (head === "fc" && !s.command.split(" ").slice(1).every((w) => /^-[lnr]+$/.test(w) || /^-?\d+$/.test(w))) {
		return "fc runs lines from the history, not the line the gateway decided";
	}
	for (const w of words) {
		const a = /^([A-Za-z_][A-Za-z0-9_]*)(\+?)=(.*)$/s.exec(w);
		if (a) {
			const [, name, append, value] = a;
			if (KEYMAP_VARIABLES.has(name!)) return `${name} chooses the key bindings a new shell reads`;
			if (CHARSET_VARIABLES.has(name!) && (append !== "" || !isSafeCharsetLocale(value!))) {
				return `${name} is set to a charset other than UTF-8, in which the shell reads the lines after it differently`;
			}
		}
		const named = /(?:^|=)(LANG|LC_ALL|LC_CTYPE|INPUTRC|TERMINFO|TERMINFO_DIRS|TERMCAP)$/.exec(w);
		if (named && (w !== named[1] || ASSIGNING_BY_NAME.has(head))) return `${named[1]} is assigned a value the gateway does not see`;
	}
	const expansion = /\$\{(LANG|LC_ALL|LC_CTYPE|INPUTRC|TERMINFO|TERMINFO_DIRS|TERMCAP):?=/.exec(s.written);
	if (expansion) return `\${${expansion[1]}:=…} assigns ${expansion[1]}`;
	return undefined;
}

/**
 * The history expansion bash (interactive, where it is on by default) makes in a typed line, or
 * undefined: `!!`, `!-2`, `!touch`, `!?x?`, `!$`… anywhere but inside single quotes or after a
 * backslash, and `^old^new` at the start. The line then runs text from earlier lines, which
 * `history -s 'cmd'` writes without running it: `!!` ran `cmd` past a rule naming it
 * (test/ssh/issue-shell-reading.test.ts). Not expanded, as in bash: `!` before a blank, `=`, `(`, the
 * end of the line, or a `"` inside "...".
 */
export function historyExpansion(line: string): string | undefined {
	if (/^\s*\^/.test(line)) return "^old^new reruns the previous line changed";
	let quote: "'" | '"' | undefined;
	for (let i = 0; i < line.length; i++) {
		const c = line[i]!;
		if (quote === "'") {
			if (c === "'") quote = undefined;
			continue;
		}
		if (c === "\\") {
			i++;
			continue;
		}
		if (c === "'" && quote === undefined) quote = "'";
		else if (c === '"') quote = quote === '"' ? undefined : '"';
		else if (c === "!") {
			const next = line[i + 1];
			if (next === undefined || /[\s=(]/.test(next) || (quote === '"' && next === '"')) continue;
			return `${printable(line.slice(i, i + 8))} is a history expansion: the line runs text from earlier lines`;
		}
	}
	return undefined;
}

/** Splits a command line into simple commands, unwrapping sudo/env/... and `bash -c` bodies. */
export function parseShellCommand(command: string): ShellParse {
	const segments: ShellSegment[] = [];
	const acc: ParseAcc = { hereDocs: [], evaluating: [] };
	let error = parseInto(command, 0, false, segments, acc);
	if (acc.unclear) error ??= acc.unclear;
	if (acc.ambiguous) {
		error ??= "a $'...' string holding \\' (shells without $'...', such as dash, end it at that quote)";
		// The line cannot be analysed (the allowlist refuses it); rules also see what dash would run.
		const dash: ShellSegment[] = [];
		parseInto(command, 0, false, dash, { hereDocs: [], evaluating: [], posix: true });
		for (const d of dash) if (!segments.some((x) => x.written === d.written && x.depth === d.depth)) segments.push(d);
	}
	return { ok: error === undefined, segments, ...(error !== undefined ? { error } : {}), hereDocs: acc.hereDocs, evaluating: acc.evaluating };
}

function parseInto(command: string, depth: number, substitution: boolean, out: ShellSegment[], acc: ParseAcc = { hereDocs: [], evaluating: [] }): string | undefined {
	if (depth > MAX_DEPTH) return "command nesting too deep";
	const sink: TokenSink = { subs: [], hereDocs: [], evaluating: [], ...(acc.posix ? { posix: true } : {}) };
	// On a tokenizing error the words before it are still segments: a shell runs the complete lines
	// before a syntax error (`ok\nrm -rf /\n'` runs rm), so rules must see them (the allowlist refuses
	// the whole line anyway).
	const { words, error } = tokenize(command, sink);
	const subs = sink.subs;
	for (const d of sink.hereDocs) acc.hereDocs.push({ ...d, depth });
	if (depth === 0 || substitution) acc.evaluating.push(...sink.evaluating);
	if (sink.ambiguous) acc.ambiguous = true;
	if (sink.unclear) acc.unclear ??= sink.unclear;
	let firstError: string | undefined = error;
	let current: string[] = [];
	const finish = (): void => {
		if (current.length === 0) return;
		const e = addSegment(current, depth, substitution, out, acc);
		firstError ??= e;
		current = [];
	};
	for (const w of words) {
		if (w.op) finish();
		else current.push(w.text);
	}
	finish();
	for (const s of subs) {
		const e = parseInto(s, depth + 1, true, out, acc);
		firstError ??= e;
	}
	return firstError;
}

function addSegment(words: string[], depth: number, substitution: boolean, out: ShellSegment[], acc: ParseAcc): string | undefined {
	const written = words.join(" ");
	let i = 0;
	// VAR=value prefixes
	while (i < words.length && /^[A-Za-z_][A-Za-z0-9_]*=/.test(words[i]!)) i++;
	let error: string | undefined;
	for (;;) {
		const w = words[i];
		if (w === undefined) break;
		if (RESERVED.has(w)) {
			i++;
			while (i < words.length && /^[A-Za-z_][A-Za-z0-9_]*=/.test(words[i]!)) i++;
			continue;
		}
		const name = basename(w);
		if (!WRAPPERS.has(name)) break;
		i++;
		const valueOpts = WRAPPER_VALUE_OPTS[name];
		while (i < words.length) {
			const opt = words[i]!;
			if (opt === "--") {
				i++;
				break;
			}
			if (name === "env" && /^[A-Za-z_][A-Za-z0-9_]*=/.test(opt)) {
				i++;
				continue;
			}
			// env -S 'cmd args' (--split-string): the string is itself a command line.
			const split = name === "env" ? /^(?:-S|--split-string=?)(.*)$/s.exec(opt) : null;
			if (split) {
				const body = split[1] !== "" ? split[1]! : words[i + 1];
				if (body !== undefined) error ??= parseInto(body, depth + 1, false, out, acc);
				i += split[1] !== "" ? 1 : 2;
				continue;
			}
			if (!opt.startsWith("-")) {
				// timeout DURATION / nice ADJ positional before the command
				if (name === "timeout" && /^[0-9.]+[smhd]?$/.test(opt)) {
					i++;
					continue;
				}
				break;
			}
			i++;
			if (valueOpts?.has(opt) && i < words.length) i++;
		}
	}
	const rest = words.slice(i);
	if (rest.length > 0) rest[0] = basename(rest[0]!);
	const commandText = rest.join(" ");
	out.push({ written, command: commandText, depth, substitution });
	// find ... -exec cmd args {} ; (and -execdir/-ok/-okdir): the command runs too.
	const head = rest[0];
	if (head === "find") {
		for (let j = 1; j < rest.length; j++) {
			if (!["-exec", "-execdir", "-ok", "-okdir"].includes(rest[j]!)) continue;
			const end = rest.findIndex((w, k) => k > j && (w === ";" || w === "+"));
			const inner = rest.slice(j + 1, end < 0 ? undefined : end);
			if (inner.length > 0) addSegment(inner, depth + 1, false, out, acc);
			if (end < 0) break;
			j = end;
		}
	}
	// sh -c 'body' / su -c 'body'
	if (head && (SHELLS.has(head) || head === "su")) {
		for (let j = 1; j < rest.length; j++) {
			const a = rest[j]!;
			if (a === "-c" || (a.startsWith("-") && !a.startsWith("--") && a.includes("c") && SHELLS.has(head))) {
				const body = rest[j + 1];
				if (body !== undefined) error = parseInto(body, depth + 1, false, out, acc);
				break;
			}
		}
	}
	return error;
}

interface CompiledSshRule {
	rule: GuardrailRule;
	commands: GlobMatcher;
}

const rulesCache = new WeakMap<readonly GuardrailRule[], CompiledSshRule[]>();
const allowCache = new WeakMap<readonly string[], GlobMatcher>();

export function compileSshRules(rules: readonly GuardrailRule[]): CompiledSshRule[] {
	const hit = rulesCache.get(rules);
	if (hit) return hit;
	const out: CompiledSshRule[] = [];
	for (const rule of rules) {
		const cmds = rule.ssh?.commands;
		if (!rule.ssh) continue;
		// `ssh: {}` without commands matches every command (audit everything).
		const ms = (cmds ?? ["*"]).map(compileGlob);
		out.push({ rule, commands: (v) => ms.some((m) => m(v)) });
	}
	rulesCache.set(rules, out);
	return out;
}

/**
 * `allowedCommands` globs match case and all: the shell and the target's filesystem are case-sensitive,
 * so `LS` or `./Deploy.sh` is another program than the `ls *` or `./deploy.sh` the grant names (folded,
 * `./deploy.sh` let an uploaded `./DEPLOY.sh` run; test/ssh/issue-allowlist-case.test.ts). Rules
 * (`ssh.commands`, a denylist) still ignore case: matching more is their safe side.
 */
function allowMatcher(list: readonly string[]): GlobMatcher {
	let m = allowCache.get(list);
	if (!m) {
		const ms = list.map(compileCaseSensitiveGlob);
		m = (v) => ms.some((x) => x(v));
		allowCache.set(list, m);
	}
	return m;
}

/**
 * Decides an exec command or one line of interactive shell input.
 * - `allowedCommands` set: every top-level simple command, and every `$( )`/backtick substitution,
 *   must match an allowed glob as written (so `sudo x` needs an allowed `sudo x` pattern); a
 *   command that does not tokenize is refused.
 * - then rules: each `ssh.commands` glob is matched against the raw line and against every
 *   segment at every depth, both as written and unwrapped (`sudo -u root /bin/rm -rf /` is seen
 *   as `rm -rf /`).
 */
export function evaluateSshCommand(
	command: string,
	grant: SshGrant | undefined,
	rules: readonly GuardrailRule[],
	grantKey?: string,
	opts: { interactive?: boolean } = {},
): SshVerdict {
	const who = grantKey ? `grant "${grantKey}"` : "the grant";
	if (!grant) return { action: "block", rule: `grant:${grantKey ?? "scope"}`, message: `${who} has no SSH access` };
	const parsed = parseShellCommand(command);
	const segments = parsed.segments.map((s) => s.command);
	if (grant.allowedCommands) {
		if (!parsed.ok) {
			return {
				action: "block",
				rule: `grant:${grantKey ?? "scope"}`,
				message: `${who} restricts commands and this command line cannot be analysed (${parsed.error})`,
				segments,
			};
		}
		if (parsed.segments.length === 0) {
			return {
				action: "block",
				rule: `grant:${grantKey ?? "scope"}`,
				message: `${who} restricts commands and this command line runs none of them`,
				segments,
			};
		}
		// Here-documents: the tokenizer reads them as bash does (test/ssh/issue-heredoc.test.ts). One inside a
		// substitution or a `bash -c` body is refused: the checks below see only the top level's bodies.
		const nested = parsed.hereDocs.find((h) => h.depth > 0);
		if (nested) {
			return {
				action: "block",
				rule: `grant:${grantKey ?? "scope"}`,
				message: `${who} restricts commands and this command line has a here-document inside a substitution or a shell's -c string, which is not analysed`,
				segments,
			};
		}
		const evaluating = parsed.evaluating[0];
		if (evaluating) {
			return {
				action: "block",
				rule: `grant:${grantKey ?? "scope"}`,
				message: `${who} restricts commands and this command line has an expansion that evaluates text as code or that the shells could read apart (${printable(evaluating)})`,
				segments,
			};
		}
		// A word naming an array element whose subscript holds a substitution, quoted so that none is
		// written, or any subscript given to a builtin that takes variable names: `test -v`, `[ -v`,
		// `printf -v` and `read` evaluate the subscript as arithmetic, which runs what it holds or
		// names (`printf -v 'a[$(cmd)]' x` under `printf *`; `echo 'x[$(cmd)]'; test -v 'a[_]'`).
		for (const seg of parsed.segments) {
			const why = evaluatingWords(seg);
			if (!why) continue;
			return {
				action: "block",
				rule: `grant:${grantKey ?? "scope"}`,
				message: `${who} restricts commands and this command line has ${why}, which bash evaluates as arithmetic (${printable(seg.written)})`,
				segments,
			};
		}
		const change = parsed.segments.map((x) => [x, readingChange(x)] as const).find(([, why]) => why !== undefined);
		if (change) {
			return {
				action: "block",
				rule: `grant:${grantKey ?? "scope"}`,
				message: `${who} restricts commands and "${printable(change[0].written)}" changes how the shell reads what follows: ${change[1]}`,
				segments,
			};
		}
		const allowed = allowMatcher(grant.allowedCommands);
		for (const s of parsed.segments) {
			if (s.depth > 0 && !s.substitution) continue; // inside an allowed `bash -c`: the allowlist entry covered it
			if (!allowed(s.written)) {
				return {
					action: "block",
					rule: `grant:${grantKey ?? "scope"}`,
					message: `${who} does not allow the command "${printable(s.written)}"`,
					segments,
				};
			}
		}
	}
	let best: SshVerdict = { action: "allow", segments };
	const candidates = [command.trim()];
	for (const s of parsed.segments) candidates.push(s.written, s.command);
	// A line that changes how the shell reads what follows is matched by every rule: after it, the
	// rules' view of later lines (or keys) no longer holds.
	let change: { seg: ShellSegment; why: string } | undefined;
	for (const seg of parsed.segments) {
		const why = readingChange(seg);
		if (why !== undefined) {
			change = { seg, why };
			break;
		}
	}
	// A typed line (an interactive bash expands history) that names earlier lines runs them, not itself.
	const history = opts.interactive ? historyExpansion(command) : undefined;
	if (!change && history !== undefined) change = { seg: { written: command.trim(), command: command.trim(), depth: 0, substitution: false }, why: history };
	for (const c of compileSshRules(rules)) {
		if (RANK[c.rule.action] <= RANK[best.action]) continue;
		const hit = candidates.find((x) => x !== "" && c.commands(x));
		if (hit === undefined && !change) continue;
		const what = c.rule.action === "block" ? "blocked" : c.rule.action === "requireApproval" ? "requires approval" : "audited";
		const subject =
			hit !== undefined
				? `command "${printable(hit)}"`
				: `command "${printable(change!.seg.written)}" changes how the shell reads what follows (${change!.why}), so it is matched by every rule, and`;
		const v: SshVerdict = {
			action: c.rule.action,
			rule: c.rule.name,
			message: `${subject} ${what} by guardrail rule "${c.rule.name}"${c.rule.message ? `: ${c.rule.message}` : ""}`,
			segments,
		};
		if (c.rule.action === "requireApproval" && c.rule.approval) v.approval = c.rule.approval;
		best = v;
	}
	return best;
}

export type SshChannelRequest = "shell" | "exec" | "sftp" | "subsystem" | "port-forward" | "agent-forward" | "x11";

/**
 * Whether `host:port` (as the client asked for it in direct-tcpip, RFC 4254 7.2) is one of the
 * grant's `allowedForwards`: host compared exactly with ASCII case ignored (`[v6]` written in brackets
 * is compared without them) or `*`; port equal or `*`. No other normalisation: `127.1`, `0x7f.0.0.1`,
 * `localhost.` or a long IPv6 form match only when written so in the grant, so a spelling the grant
 * does not list is refused, and the string checked is the string the target resolves.
 */
export function forwardAllowed(allowed: readonly string[] | undefined, host: string, port: number): string | undefined {
	if (!allowed || !Number.isInteger(port) || port < 0 || port > 65535) return undefined;
	// ASCII only: String#toLowerCase folds U+212A (Kelvin sign) to "k", a name the target would not resolve as the listed one.
	const lower = (s: string) => s.replace(/[A-Z]/g, (c) => c.toLowerCase());
	const h = lower(host);
	for (const entry of allowed) {
		const colon = entry.lastIndexOf(":");
		if (colon <= 0) continue;
		let eh = lower(entry.slice(0, colon));
		const ep = entry.slice(colon + 1);
		if (eh.startsWith("[") && eh.endsWith("]")) eh = eh.slice(1, -1);
		if (eh !== "*" && eh !== h) continue;
		if (ep !== "*" && !(/^[0-9]{1,5}$/.test(ep) && Number(ep) === port)) continue;
		return entry;
	}
	return undefined;
}

/** Channel-level checks: login user, shell, sftp, forwarding. Exec commands go to evaluateSshCommand. */
export function evaluateSshAccess(
	req: { login: string; request: SshChannelRequest; destination?: { host: string; port: number } },
	grant: SshGrant | undefined,
	grantKey?: string,
): SshVerdict {
	const who = grantKey ? `grant "${grantKey}"` : "the grant";
	const deny = (why: string): SshVerdict => ({ action: "block", rule: `grant:${grantKey ?? "scope"}`, message: `${who} ${why}` });
	if (!grant) return deny("has no SSH access");
	if (!grant.logins.includes(req.login)) return deny(`does not allow login as "${printable(req.login)}"`);
	switch (req.request) {
		case "shell":
			return grant.allowShell ? { action: "allow" } : deny("does not allow interactive shells");
		case "exec":
			return { action: "allow" };
		case "sftp":
			return grant.allowSftp ? { action: "allow" } : deny("does not allow SFTP");
		case "port-forward": {
			if (!grant.allowPortForwarding) return deny("does not allow port forwarding");
			const d = req.destination;
			if (!d) return deny("allows port forwarding only to the destinations it lists");
			if (forwardAllowed(grant.allowedForwards, d.host, d.port) === undefined) {
				const listed = grant.allowedForwards?.length ? grant.allowedForwards.map((f) => printable(f)).join(", ") : "none: the grant lists no allowedForwards";
				return deny(`does not allow forwarding to ${printable(d.host)}:${d.port} (allowed: ${listed})`);
			}
			return { action: "allow" };
		}
		case "agent-forward":
			return grant.allowAgentForwarding ? { action: "allow" } : deny("does not allow agent forwarding");
		default:
			return deny(`does not allow ${req.request} requests`);
	}
}
