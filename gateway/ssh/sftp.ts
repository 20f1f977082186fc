/**
 * A passive SFTP observer (draft-ietf-secsh-filexfer-02, the version OpenSSH speaks): the gateway
 * relays the `sftp` subsystem byte for byte and feeds both directions here to learn which files were
 * read, written, removed or renamed, and how many bytes moved. It takes bytes and returns operations;
 * it never owns the channel, never alters the stream and never buffers more than one packet.
 */
import { WireReader } from "./wire.ts";

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
			const head = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks);
			this.#chunks = [head];
			const len = head.readUInt32BE(0);
			if (len > MAX_PACKET || len === 0) {
				this.broken = true;
				this.#chunks = [];
				return;
			}
			if (this.#size < 4 + len) return;
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
