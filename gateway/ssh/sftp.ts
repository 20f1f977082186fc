/**
 * A passive SFTP observer (draft-ietf-secsh-filexfer-02, the version OpenSSH speaks): the gateway
 * relays the `sftp` subsystem byte for byte and feeds both directions here to learn which files were
 * read, written, removed or renamed, and how many bytes moved. It takes bytes and returns operations;
 * it never owns the channel, never alters the stream and never buffers more than one packet.
 */
import { posix } from "node:path";
import { WireReader, writeString, writeUint32 } from "./wire.ts";

export enum Fxp {
	Init = 1,
	Version = 2,
	Open = 3,
	Close = 4,
	Read = 5,
	Write = 6,
	Lstat = 7,
	Fstat = 8,
	Setstat = 9,
	Fsetstat = 10,
	Opendir = 11,
	Readdir = 12,
	Remove = 13,
	Mkdir = 14,
	Rmdir = 15,
	Realpath = 16,
	Stat = 17,
	Rename = 18,
	Readlink = 19,
	Symlink = 20,
	Status = 101,
	Handle = 102,
	Data = 103,
	Name = 104,
	Attrs = 105,
	Extended = 200,
}

const FXF_WRITE = 0x02;
/** SSH_FXF_WRITE | APPEND | CREAT | TRUNC: an open that can change or create the file. */
const FXF_CHANGES = 0x02 | 0x04 | 0x08 | 0x10;
/** Packets larger than this are not parsed (OpenSSH caps at 256 KiB); the observer then gives up. */
const MAX_PACKET = 1024 * 1024;

export interface SftpOp {
	op: "read" | "write" | "remove" | "rename" | "mkdir" | "rmdir" | "setstat" | "symlink" | "link" | "list";
	path: string;
	bytes?: number;
	/** Second path for rename / symlink. */
	target?: string;
}

interface Pending {
	type: number;
	path: string;
	write?: boolean;
	target?: string;
}

interface OpenHandle {
	path: string;
	dir: boolean;
	write: boolean;
	read: number;
	written: number;
}

/** Reassembles length-prefixed packets from one direction. */
class Framer {
	#chunks: Buffer[] = [];
	#size = 0;
	broken = false;

	push(chunk: Buffer, onPacket: (p: Buffer) => void): void {
		if (this.broken) return;
		this.#chunks.push(chunk);
		this.#size += chunk.length;
		while (this.#size >= 4) {
			let head = this.#chunks[0]!;
			if (head.length < 4) {
				head = Buffer.concat(this.#chunks);
				this.#chunks = [head];
			}
			const len = head.readUInt32BE(0);
			if (len > MAX_PACKET || len === 0) {
				this.broken = true;
				this.#chunks = [];
				return;
			}
			if (this.#size < 4 + len) return;
			// Joined only once the whole packet is here (a 256 KiB write comes in 8 or more chunks).
			if (this.#chunks.length > 1) {
				head = Buffer.concat(this.#chunks);
				this.#chunks = [head];
			}
			onPacket(head.subarray(4, 4 + len));
			const rest = head.subarray(4 + len);
			this.#chunks = rest.length ? [rest] : [];
			this.#size = rest.length;
		}
	}
}

export class SftpObserver {
	readonly #fromClient = new Framer();
	readonly #fromServer = new Framer();
	readonly #pending = new Map<number, Pending>();
	readonly #handles = new Map<string, OpenHandle>();
	readonly #readSizes = new Map<number, string>();
	readonly #onOp: (op: SftpOp) => void;

	constructor(onOp: (op: SftpOp) => void) {
		this.#onOp = onOp;
	}

	/** True once a malformed or oversized packet made the observer stop (the relay carries on). */
	get broken(): boolean {
		return this.#fromClient.broken || this.#fromServer.broken;
	}

	client(chunk: Buffer): void {
		this.#fromClient.push(chunk, (p) => this.#safe(() => this.#clientPacket(p)));
	}

	server(chunk: Buffer): void {
		this.#fromServer.push(chunk, (p) => this.#safe(() => this.#serverPacket(p)));
	}

	/** Report files still open when the channel closes. */
	finish(): void {
		for (const h of this.#handles.values()) this.#emitHandle(h);
		this.#handles.clear();
	}

	#safe(fn: () => void): void {
		try {
			fn();
		} catch {
			// A packet we cannot parse is not our business to refuse: the server will answer it.
		}
	}

	#clientPacket(p: Buffer): void {
		const r = new WireReader(p);
		const type = r.byte();
		if (type === Fxp.Init) return;
		const id = r.uint32();
		switch (type) {
			case Fxp.Open: {
				const path = r.string();
				const pflags = r.uint32();
				this.#pending.set(id, { type, path, write: (pflags & FXF_WRITE) !== 0 });
				break;
			}
			case Fxp.Opendir:
				this.#pending.set(id, { type, path: r.string() });
				break;
			case Fxp.Close: {
				const handle = r.bytes().toString("latin1");
				const h = this.#handles.get(handle);
				if (h) {
					this.#handles.delete(handle);
					this.#emitHandle(h);
				}
				break;
			}
			case Fxp.Read: {
				const handle = r.bytes().toString("latin1");
				if (this.#handles.has(handle)) this.#readSizes.set(id, handle);
				break;
			}
			case Fxp.Write: {
				const handle = r.bytes().toString("latin1");
				r.uint64();
				const len = r.uint32();
				const h = this.#handles.get(handle);
				if (h) h.written += len;
				break;
			}
			case Fxp.Remove:
				this.#onOp({ op: "remove", path: r.string() });
				break;
			case Fxp.Mkdir:
				this.#onOp({ op: "mkdir", path: r.string() });
				break;
			case Fxp.Rmdir:
				this.#onOp({ op: "rmdir", path: r.string() });
				break;
			case Fxp.Setstat:
				this.#onOp({ op: "setstat", path: r.string() });
				break;
			case Fxp.Rename: {
				const path = r.string();
				this.#onOp({ op: "rename", path, target: r.string() });
				break;
			}
			case Fxp.Extended: {
				// OpenSSH's sftp renames with posix-rename@openssh.com when the server offers it.
				const name = r.string();
				if (name === "posix-rename@openssh.com") {
					const path = r.string();
					this.#onOp({ op: "rename", path, target: r.string() });
				} else if (name === "hardlink@openssh.com") {
					const path = r.string();
					this.#onOp({ op: "link", path: r.string(), target: path });
				}
				break;
			}
			case Fxp.Symlink: {
				// OpenSSH sends (targetpath, linkpath), swapped from the draft.
				const target = r.string();
				this.#onOp({ op: "symlink", path: r.string(), target });
				break;
			}
			default:
		}
	}

	#serverPacket(p: Buffer): void {
		const r = new WireReader(p);
		const type = r.byte();
		if (type === Fxp.Version) return;
		const id = r.uint32();
		switch (type) {
			case Fxp.Handle: {
				const req = this.#pending.get(id);
				this.#pending.delete(id);
				if (!req) return;
				const handle = r.bytes().toString("latin1");
				this.#handles.set(handle, { path: req.path, dir: req.type === Fxp.Opendir, write: req.write === true, read: 0, written: 0 });
				break;
			}
			case Fxp.Data: {
				const handle = this.#readSizes.get(id);
				this.#readSizes.delete(id);
				if (handle === undefined) return;
				const h = this.#handles.get(handle);
				if (h) h.read += r.uint32();
				break;
			}
			case Fxp.Status:
				this.#pending.delete(id);
				this.#readSizes.delete(id);
				break;
			default:
				this.#pending.delete(id);
		}
	}

	#emitHandle(h: OpenHandle): void {
		if (h.dir) this.#onOp({ op: "list", path: h.path });
		else if (h.write || h.written > 0) this.#onOp({ op: "write", path: h.path, bytes: h.written });
		else this.#onOp({ op: "read", path: h.path, bytes: h.read });
	}
}

// ---------------------------------------------------------------------------------------------
// SftpGuard: the client → target direction, refusing what changes autorun files.

/**
 * File and directory names whose change runs code on the target at the next login or command, or
 * opens a way in around the gateway: sshd's ~/.ssh (authorized_keys, rc, environment), the startup
 * files of sh/bash/zsh/ksh/csh, PAM's per-user environment, ~/.forward (mail to a program), rhosts,
 * Kerberos' k5login, git's config (core.pager, core.fsmonitor run programs for an allowed `git`).
 */
export const SFTP_PROTECTED_NAMES: ReadonlySet<string> = new Set([
	".ssh",
	".profile",
	".bashrc",
	".bash_profile",
	".bash_login",
	".bash_logout",
	".zshenv",
	".zshrc",
	".zprofile",
	".zlogin",
	".zlogout",
	".kshrc",
	".mkshrc",
	".cshrc",
	".tcshrc",
	".login",
	".logout",
	".pam_environment",
	".forward",
	".rhosts",
	".shosts",
	".k5login",
	".gitconfig",
	// Debian's and Ubuntu's ~/.bashrc sources ~/.bash_aliases in every interactive shell (and, through
	// bash-completion, ~/.bash_completion); readline reads ~/.inputrc, whose macros type text, newlines
	// included, for one key (a line run unchecked).
	".bash_aliases",
	".bash_completion",
	".inputrc",
]);

/** Absolute paths (and everything under them) that run code when changed, for logins that can write them. */
export const SFTP_PROTECTED_PREFIXES: readonly string[] = [
	"/etc/ssh",
	"/etc/profile",
	"/etc/profile.d",
	"/etc/bash.bashrc",
	"/etc/bash_completion",
	"/etc/bash_completion.d",
	"/etc/inputrc",
	"/etc/environment",
	"/etc/ld.so.preload",
	"/etc/ld.so.conf",
	"/etc/ld.so.conf.d",
	"/etc/sudoers",
	"/etc/sudoers.d",
	"/etc/pam.d",
	"/etc/security",
	"/etc/crontab",
	"/etc/cron.d",
	"/etc/cron.hourly",
	"/etc/cron.daily",
	"/etc/cron.weekly",
	"/etc/cron.monthly",
	"/etc/systemd",
	"/etc/init.d",
	"/etc/rc.local",
	"/etc/passwd",
	"/etc/shadow",
	"/etc/group",
	"/var/spool/cron",
	// The kernel's own files: /proc/sys/kernel/core_pattern and /proc/sys/kernel/modprobe name programs
	// the kernel runs as root, and /proc/self/root (or /proc/PID/root, /proc/self/cwd) is `/` again under
	// another name, so `/proc/self/root/etc/cron.d/x` is /etc/cron.d/x.
	"/proc",
	"/sys",
];

/** Path components, `.` and empty ones dropped (`..` kept). */
function partsOf(path: string): string[] {
	return path.split("/").filter((c) => c !== "" && c !== ".");
}

/** The directories above a protected prefix (`/`, `/etc`, `/var`, `/var/spool`): a link to one of them is a way around the prefix. */
const PREFIX_ANCESTORS: ReadonlySet<string> = new Set(
	SFTP_PROTECTED_PREFIXES.flatMap((p) => {
		const parts = partsOf(p);
		return parts.map((_, i) => `/${parts.slice(0, i).join("/")}`);
	}),
);

/**
 * The absolute path a normalised path is checked as. A relative one starts in the login's directory,
 * which the gateway does not know, and its leading `..` may reach `/` (`../etc/cron.d/x` from /root is
 * /etc/cron.d/x): it is checked as if it started at `/`, those `..` dropped.
 */
function rooted(norm: string): string {
	const parts = partsOf(norm);
	let i = 0;
	if (!norm.startsWith("/")) while (parts[i] === "..") i++;
	return `/${parts.slice(i).join("/")}`;
}

/** Why a change to this path is refused, or undefined when it is not protected. */
export function sftpProtectedPath(path: string): string | undefined {
	// A C server may end the path at the NUL (OpenSSH's drops the session): ".bashrc\0x" is .bashrc.
	if (path.includes("\0")) return "a path with a NUL byte";
	// Check the path as written (a `.ssh/..` detour counts) and normalised (`a/../.ssh`, `//`).
	const norm = posix.normalize(path);
	for (const p of [path, norm]) {
		const parts = partsOf(p);
		for (let i = 0; i < parts.length; i++) {
			const c = parts[i]!;
			if (SFTP_PROTECTED_NAMES.has(c)) return `${c} runs code on the target or lets keys in`;
			if (c === ".config" && ["systemd", "autostart", "environment.d"].includes(parts[i + 1] ?? "")) {
				return `.config/${parts[i + 1]} starts programs on the target`;
			}
		}
	}
	// A `..` after a directory name climbs from where that directory really is, and it may be a link:
	// through a link `ssl` to /etc/ssl, `ssl/../cron.d/x` is /etc/cron.d/x, which the normalised text
	// (`cron.d/x`) does not show. Clients send such paths only when a user types them.
	const parts = partsOf(path);
	const named = parts.findIndex((c) => c !== "..");
	if (named >= 0 && parts.indexOf("..", named) >= 0) {
		return "a .. after a directory name climbs from wherever that directory (possibly a link) really is; send the path without it";
	}
	const abs = rooted(norm);
	for (const prefix of SFTP_PROTECTED_PREFIXES) {
		if (abs === prefix || abs.startsWith(`${prefix}/`) || (prefix.endsWith("profile") && abs.startsWith(prefix))) {
			return `${prefix} runs code on the target or controls who gets in${norm.startsWith("/") ? "" : " (a relative path is checked as if it started at /: the gateway does not know the login's directory)"}`;
		}
	}
	return undefined;
}

/**
 * Why linking or renaming this path (either side of a symlink, hardlink or rename) is refused: it would
 * put a protected location where the path checks do not see it. A link *to* a directory above a
 * protected prefix (`/`, `/etc`, `/var`, `/var/spool`; a relative target may climb to any of them) makes
 * `l/cron.d/x` the file /etc/cron.d/x; a link to, named, or inside `.config`, or a rename of or onto
 * `.config`, makes `l/systemd/user/x.service` one of ~/.config/systemd's units.
 */
export function sftpLinkHazard(path: string): string | undefined {
	if (path.includes("\0")) return "a path with a NUL byte";
	const norm = posix.normalize(path);
	for (const p of [path, norm]) {
		if (partsOf(p).includes(".config")) return ".config holds systemd, autostart and environment.d, which start programs on the target: it is not linked, renamed or linked into";
	}
	const abs = rooted(norm);
	if (PREFIX_ANCESTORS.has(abs)) return `${abs} holds files that run code on the target (${SFTP_PROTECTED_PREFIXES.filter((p) => p.startsWith(abs === "/" ? "/" : `${abs}/`)).slice(0, 3).join(", ")}, ...): it is not linked or renamed`;
	return undefined;
}

/** SFTP extended requests relayed as they are (OpenSSH's; the path-taking ones are checked below). */
const SFTP_KNOWN_EXTENSIONS: ReadonlySet<string> = new Set([
	"posix-rename@openssh.com",
	"hardlink@openssh.com",
	"lsetstat@openssh.com",
	"statvfs@openssh.com",
	"fstatvfs@openssh.com",
	"fsync@openssh.com",
	"limits@openssh.com",
	"expand-path@openssh.com",
	"copy-data",
	"home-directory",
	"users-groups-by-id@openssh.com",
]);

/** The request a refused one is replaced with: sftp-server answers it with SSH_FX_OP_UNSUPPORTED for the same id. */
export const SFTP_REFUSED_EXTENSION = "refused@drawbridge.dev";

export interface SftpRefusal {
	op: string;
	path: string;
	why: string;
}

/**
 * Decides each client → target SFTP packet. A packet that would change a protected path (open for
 * writing, remove, mkdir, rmdir, setstat, rename, symlink, hardlink, lsetstat: every path it names,
 * so a symlink *to* ~/.ssh is refused as well as a write through one) or an extended request the
 * gateway does not know is replaced by an extended request no server knows, with the same id: the
 * target answers it with a failure status in order and changes nothing. Returns whole packets only.
 */
export class SftpGuard {
	readonly #framer = new Framer();
	#initDone = false;

	/** True once a malformed or oversized packet arrived: the caller must close the channel (fail closed). */
	get broken(): boolean {
		return this.#framer.broken;
	}

	push(chunk: Buffer): { packets: Buffer[]; refusals: SftpRefusal[] } {
		const packets: Buffer[] = [];
		const refusals: SftpRefusal[] = [];
		this.#framer.push(chunk, (p) => {
			const refusal = this.#check(p);
			if (!refusal) {
				packets.push(Buffer.concat([writeUint32(p.length), p]));
				return;
			}
			refusals.push(refusal);
			const id = p.length >= 5 ? p.readUInt32BE(1) : 0;
			const body = Buffer.concat([Buffer.from([Fxp.Extended]), writeUint32(id), writeString(SFTP_REFUSED_EXTENSION)]);
			packets.push(Buffer.concat([writeUint32(body.length), body]));
		});
		return { packets, refusals };
	}

	#check(p: Buffer): SftpRefusal | undefined {
		if (p.length < 1) return { op: "empty", path: "", why: "empty packet" };
		const type = p[0]!;
		if (!this.#initDone) {
			this.#initDone = true;
			if (type === Fxp.Init) return undefined;
		}
		if (p.length < 5) return { op: `type ${type}`, path: "", why: "truncated packet" };
		const r = new WireReader(p, 5);
		const paths = (op: string, names: string[], links = false): SftpRefusal | undefined => {
			for (const path of names) {
				const why = sftpProtectedPath(path) ?? (links ? sftpLinkHazard(path) : undefined);
				if (why) return { op, path: names.join(" -> "), why };
			}
			return undefined;
		};
		try {
			switch (type) {
				case Fxp.Open: {
					const path = r.string();
					return (r.uint32() & FXF_CHANGES) !== 0 ? paths("write", [path]) : undefined;
				}
				case Fxp.Remove:
					return paths("remove", [r.string()]);
				case Fxp.Mkdir:
					return paths("mkdir", [r.string()]);
				case Fxp.Rmdir:
					return paths("rmdir", [r.string()]);
				case Fxp.Setstat:
					return paths("setstat", [r.string()]);
				case Fxp.Rename:
					return paths("rename", [r.string(), r.string()], true);
				case Fxp.Symlink:
					return paths("symlink", [r.string(), r.string()], true);
				case Fxp.Extended: {
					const name = r.string();
					if (!SFTP_KNOWN_EXTENSIONS.has(name)) return { op: "extended", path: name, why: "extended request not known to the gateway" };
					if (name === "posix-rename@openssh.com") return paths("rename", [r.string(), r.string()], true);
					if (name === "hardlink@openssh.com") return paths("link", [r.string(), r.string()], true);
					if (name === "lsetstat@openssh.com") return paths("setstat", [r.string()]);
					return undefined;
				}
				case Fxp.Init:
					return { op: "init", path: "", why: "a second SSH_FXP_INIT" };
				default:
					return type >= Fxp.Open && type <= Fxp.Symlink ? undefined : { op: `type ${type}`, path: "", why: "request type not known to the gateway" };
			}
		} catch {
			return { op: `type ${type}`, path: "", why: "malformed request" };
		}
	}
}
