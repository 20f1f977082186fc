import assert from "node:assert/strict";
import { test } from "node:test";
import { recordableBody } from "../../gateway/kube/mask.ts";
import { LineTracker } from "../../gateway/ssh/guard.ts";
import { Fxp, SFTP_REFUSED_EXTENSION, SftpGuard, type SftpOp, SftpObserver, sftpProtectedPath } from "../../gateway/ssh/sftp.ts";

const u32 = (n: number) => {
	const b = Buffer.alloc(4);
	b.writeUInt32BE(n);
	return b;
};
const u64 = (n: number) => {
	const b = Buffer.alloc(8);
	b.writeBigUInt64BE(BigInt(n));
	return b;
};
const str = (s: string | Buffer) => {
	const b = typeof s === "string" ? Buffer.from(s) : s;
	return Buffer.concat([u32(b.length), b]);
};
const packet = (type: number, ...fields: Buffer[]) => {
	const body = Buffer.concat([Buffer.from([type]), ...fields]);
	return Buffer.concat([u32(body.length), body]);
};

function conversation(): { client: Buffer[]; server: Buffer[] } {
	return {
		client: [
			packet(Fxp.Init, u32(3)),
			packet(Fxp.Open, u32(1), str("/tmp/up.bin"), u32(0x1a), u32(0)), // WRITE|CREAT|TRUNC, empty attrs
			packet(Fxp.Write, u32(2), str("h1"), u64(0), str(Buffer.alloc(1000, 1))),
			packet(Fxp.Write, u32(3), str("h1"), u64(1000), str(Buffer.alloc(24, 2))),
			packet(Fxp.Close, u32(4), str("h1")),
			packet(Fxp.Open, u32(5), str("/etc/hostname"), u32(0x01), u32(0)),
			packet(Fxp.Read, u32(6), str("h2"), u64(0), u32(32768)),
			packet(Fxp.Read, u32(7), str("h2"), u64(9), u32(32768)),
			packet(Fxp.Close, u32(8), str("h2")),
			packet(Fxp.Extended, u32(9), str("posix-rename@openssh.com"), str("/tmp/a"), str("/tmp/b")),
			packet(Fxp.Remove, u32(10), str("/tmp/b")),
			packet(Fxp.Opendir, u32(11), str("/tmp")),
			packet(Fxp.Close, u32(12), str("h3")),
		],
		server: [
			packet(Fxp.Version, u32(3)),
			packet(Fxp.Handle, u32(1), str("h1")),
			packet(Fxp.Status, u32(2), u32(0), str(""), str("")),
			packet(Fxp.Handle, u32(5), str("h2")),
			packet(Fxp.Data, u32(6), str(Buffer.from("vm-host\n\n"))),
			packet(Fxp.Status, u32(7), u32(1), str("EOF"), str("")),
			packet(Fxp.Handle, u32(11), str("h3")),
		],
	};
}

const expected: SftpOp[] = [
	{ op: "write", path: "/tmp/up.bin", bytes: 1024 },
	{ op: "read", path: "/etc/hostname", bytes: 9 },
	{ op: "rename", path: "/tmp/a", target: "/tmp/b" },
	{ op: "remove", path: "/tmp/b" },
	{ op: "list", path: "/tmp" },
];

/** Interleave as a real exchange would: each client request, then the server's answers to it. */
function feed(obs: SftpObserver, split: (b: Buffer) => Buffer[]): void {
	const conv = conversation();
	const order: [("c" | "s"), number][] = [
		["c", 0], ["s", 0], ["c", 1], ["s", 1], ["c", 2], ["c", 3], ["s", 2], ["c", 4],
		["c", 5], ["s", 3], ["c", 6], ["s", 4], ["c", 7], ["s", 5], ["c", 8],
		["c", 9], ["c", 10], ["c", 11], ["s", 6], ["c", 12],
	];
	for (const [who, i] of order) {
		const p = who === "c" ? conv.client[i]! : conv.server[i]!;
		for (const piece of split(p)) {
			if (who === "c") obs.client(piece);
			else obs.server(piece);
		}
	}
}

test("SFTP observer: operations and sizes, whatever the chunking", () => {
	const splits: ((b: Buffer) => Buffer[])[] = [
		(b) => [b],
		(b) => [...b].map((x) => Buffer.from([x])),
		(b) => [b.subarray(0, 3), b.subarray(3)],
		(b) => [b.subarray(0, b.length - 1), b.subarray(b.length - 1)],
	];
	for (const split of splits) {
		const ops: SftpOp[] = [];
		const obs = new SftpObserver((op) => ops.push(op));
		feed(obs, split);
		obs.finish();
		assert.deepEqual(ops, expected);
		assert.equal(obs.broken, false);
	}
	// Several packets in one chunk.
	const ops: SftpOp[] = [];
	const obs = new SftpObserver((op) => ops.push(op));
	const conv = conversation();
	obs.client(Buffer.concat(conv.client.slice(0, 2)));
	obs.server(Buffer.concat(conv.server.slice(0, 2)));
	obs.client(Buffer.concat(conv.client.slice(2, 5)));
	assert.deepEqual(ops, [{ op: "write", path: "/tmp/up.bin", bytes: 1024 }]);
});

test("SFTP observer gives up on an oversized length instead of buffering it", () => {
	const obs = new SftpObserver(() => {});
	obs.client(u32(0x7fffffff));
	assert.equal(obs.broken, true);
	obs.client(Buffer.alloc(10));
});

test("SFTP guard: changes to autorun paths and unknown extended requests are replaced, whatever the chunking", () => {
	const refused = (id: number) => packet(Fxp.Extended, u32(id), str(SFTP_REFUSED_EXTENSION));
	const cases: { in: Buffer; refused: boolean }[] = [
		{ in: packet(Fxp.Init, u32(3)), refused: false },
		{ in: packet(Fxp.Open, u32(1), str("/tmp/up.bin"), u32(0x1a), u32(0)), refused: false },
		{ in: packet(Fxp.Open, u32(2), str(".ssh/authorized_keys"), u32(0x01), u32(0)), refused: false }, // read
		{ in: packet(Fxp.Open, u32(3), str("/home/u/.ssh/authorized_keys"), u32(0x04), u32(0)), refused: true }, // APPEND
		{ in: packet(Fxp.Open, u32(4), str("a/../.bashrc"), u32(0x08), u32(0)), refused: true },
		{ in: packet(Fxp.Setstat, u32(5), str("/etc/cron.d/x"), u32(0)), refused: true },
		{ in: packet(Fxp.Symlink, u32(6), str("/home/u/.ssh"), str("/tmp/l")), refused: true },
		{ in: packet(Fxp.Rename, u32(7), str("/tmp/x"), str("/home/u/.config/systemd/user/x.service")), refused: true },
		{ in: packet(Fxp.Extended, u32(8), str("posix-rename@openssh.com"), str("/tmp/a"), str("/tmp/.profile")), refused: true },
		{ in: packet(Fxp.Extended, u32(9), str("hardlink@openssh.com"), str("/home/u/.zshenv"), str("/tmp/z")), refused: true },
		{ in: packet(Fxp.Extended, u32(10), str("statvfs@openssh.com"), str("/")), refused: false },
		{ in: packet(Fxp.Extended, u32(11), str("exec@evil.example"), str("id")), refused: true },
		{ in: packet(21, u32(12), str("/tmp/a"), str("/tmp/b")), refused: true }, // SSH_FXP_LINK (v6), not v3
		{ in: packet(Fxp.Remove, u32(13), str("/tmp/b")), refused: false },
		{ in: packet(Fxp.Init, u32(3)), refused: true }, // a second INIT
	];
	const all = Buffer.concat(cases.map((c) => c.in));
	const want = Buffer.concat(cases.map((c) => (c.refused ? refused(c.in.readUInt32BE(5)) : c.in)));
	for (const split of [(b: Buffer) => [b], (b: Buffer) => [...b].map((x) => Buffer.from([x])), (b: Buffer) => [b.subarray(0, 7), b.subarray(7, 300), b.subarray(300)]]) {
		const g = new SftpGuard();
		const out: Buffer[] = [];
		let n = 0;
		for (const chunk of split(all)) {
			const r = g.push(chunk);
			out.push(...r.packets);
			n += r.refusals.length;
		}
		assert.equal(n, cases.filter((c) => c.refused).length);
		assert.ok(Buffer.concat(out).equals(want));
		assert.equal(g.broken, false);
	}
	const g = new SftpGuard();
	g.push(u32(5_000_000));
	assert.equal(g.broken, true);
	assert.equal(sftpProtectedPath("/tmp/ssh/rc"), undefined);
	assert.equal(sftpProtectedPath("notes/.bashrc.txt"), undefined);
	assert.ok(sftpProtectedPath("/etc/profile.d/x.sh"));
	assert.ok(sftpProtectedPath(".ssh/.."));
	assert.ok(sftpProtectedPath(".bashrc\0.txt"));
});

test("shell line tracker: editing keys, held terminators, escape sequences mark the line dirty", () => {
	const t = new LineTracker();
	const segs = t.feed(Buffer.from("rm -rf /x\x7f\x7fy\r"));
	assert.deepEqual(
		segs.map((s) => (s.kind === "line" ? ["line", s.line, s.dirty] : s.kind === "bytes" ? ["bytes", s.data.toString()] : ["cancel"])),
		[
			["bytes", "rm -rf /x\x7f\x7fy"],
			["line", "rm -rf y", false],
		],
	);
	const t2 = new LineTracker();
	assert.deepEqual(
		t2.feed(Buffer.from("ls\x15echo hi\r")).filter((s) => s.kind === "line").map((s) => (s.kind === "line" ? s.line : "")),
		["echo hi"],
	);
	const t3 = new LineTracker();
	const up = t3.feed(Buffer.from("\x1b[Arm\r"));
	const line = up.find((s) => s.kind === "line");
	assert.ok(line && line.kind === "line" && line.dirty && line.line === "rm");
	// Lines split across chunks.
	const t4 = new LineTracker();
	assert.equal(t4.feed(Buffer.from("sudo reb")).filter((s) => s.kind === "line").length, 0);
	const l4 = t4.feed(Buffer.from("oot\n")).find((s) => s.kind === "line");
	assert.ok(l4 && l4.kind === "line" && l4.line === "sudo reboot");
	// UTF-8 survives.
	const t5 = new LineTracker();
	const l5 = t5.feed(Buffer.from("echo héllo\r")).find((s) => s.kind === "line");
	assert.ok(l5 && l5.kind === "line" && l5.line === "echo héllo");
});

test("recorded Kubernetes bodies: Secret values masked in every shape", () => {
	const secret = {
		apiVersion: "v1",
		kind: "Secret",
		metadata: { name: "s", annotations: { "kubectl.kubernetes.io/last-applied-configuration": '{"data":{"p":"aHVudGVyMg=="}}' } },
		data: { p: "aHVudGVyMg==" },
		stringData: { q: "hunter2" },
	};
	const m = recordableBody(Buffer.from(JSON.stringify(secret)), "application/json", "secrets") as typeof secret;
	assert.deepEqual(m.data, { p: "<masked>" });
	assert.deepEqual(m.stringData, { q: "<masked>" });
	assert.equal(m.metadata.annotations["kubectl.kubernetes.io/last-applied-configuration"], "<masked>");
	const patch = recordableBody(Buffer.from('[{"op":"replace","path":"/data/p","value":"c2VjcmV0"}]'), "application/json-patch+json", "secrets");
	assert.doesNotMatch(JSON.stringify(patch), /c2VjcmV0/);
	const yaml = recordableBody(Buffer.from("kind: Secret\nstringData:\n  q: hunter2\n"), "application/apply-patch+yaml", "secrets");
	assert.doesNotMatch(JSON.stringify(yaml), /hunter2/);
	const list = recordableBody(Buffer.from(JSON.stringify({ kind: "List", items: [secret] })), "application/json", "lists");
	assert.doesNotMatch(JSON.stringify(list), /hunter2|aHVudGVyMg/);
	const garbage = recordableBody(Buffer.from("not json hunter2"), "application/json", "secrets");
	assert.doesNotMatch(JSON.stringify(garbage), /hunter2/);
	const cm = recordableBody(Buffer.from('{"kind":"ConfigMap","data":{"a":"b"}}'), "application/json", "configmaps");
	assert.deepEqual(cm, { kind: "ConfigMap", data: { a: "b" } });
	assert.equal(recordableBody(Buffer.alloc(0), undefined, "pods"), undefined);
});
