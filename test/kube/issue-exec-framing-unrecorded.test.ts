/**
 * Regression (recordings red-team round 10, unrecorded actions). `kubectl exec` over WebSocket is
 * recorded like an SSH terminal by observing the stream's channel frames, but only with the
 * `channel.k8s.io` / `v4.` / `v5.channel.k8s.io` subprotocols. The kubelet also serves exec and attach
 * with no subprotocol at all (binary framing, its default) and with `base64.channel.k8s.io` /
 * `v4.base64.channel.k8s.io` (text messages: an ASCII channel digit, then base64). An agent that
 * asked for either ran a shell in a pod whose typed input and output were relayed and never recorded
 * (only the exec request was). Both framings are observed now; other subprotocols stay unobserved
 * (the kubelet refuses them). The stream parser is the gateway's own, fed the bytes a client and a
 * kubelet send (no kubelet runs in the test control plane: see gateway/kube/README.md).
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import { ExecStreamObserver, isChannelProtocol, WsOpcode } from "../../gateway/kube/wsexec.ts";

function frame(opcode: number, payload: Buffer, opts: { masked: boolean; fin?: boolean }): Buffer {
	const fin = opts.fin ?? true;
	const len = payload.length;
	const maskBit = opts.masked ? 0x80 : 0;
	const head = Buffer.from([(fin ? 0x80 : 0) | opcode, maskBit | Math.min(len, 126)]);
	const ext = len < 126 ? Buffer.alloc(0) : Buffer.from([len >> 8, len & 0xff]);
	if (!opts.masked) return Buffer.concat([head, ext, payload]);
	const key = randomBytes(4);
	return Buffer.concat([head, ext, key, Buffer.from(payload.map((b, i) => b ^ key[i & 3]!))]);
}

/** base64.channel.k8s.io message: the channel as a digit, then the data in base64. */
const b64 = (channel: number, data: string) => Buffer.from(`${channel}${Buffer.from(data).toString("base64")}`);

test("the kubelet's other framings of exec and attach are observed: no subprotocol, base64.channel.k8s.io", () => {
	assert.ok(isChannelProtocol(undefined), "no subprotocol: the kubelet's binary channel framing");
	assert.ok(isChannelProtocol(""), "an empty Sec-WebSocket-Protocol");
	assert.ok(isChannelProtocol("base64.channel.k8s.io"));
	assert.ok(isChannelProtocol("v4.base64.channel.k8s.io"));
	assert.ok(!isChannelProtocol("v6.unknown.k8s.io"));
});

test("base64 framing: typed input, output (fragmented across frames and chunks) and the exit status are decoded", () => {
	const typed = "cat /var/run/secrets/kubernetes.io/serviceaccount/token\r";
	const status = JSON.stringify({ status: "Failure", message: "exit", details: { causes: [{ reason: "ExitCode", message: "3" }] } });
	const client = Buffer.concat([frame(WsOpcode.Text, b64(0, typed), { masked: true }), frame(0x9, Buffer.from("ping"), { masked: true })]);
	const out = b64(1, "eyJhbGciOiJSUzI1NiJ9.token-canary\r\n");
	const server = Buffer.concat([
		frame(WsOpcode.Text, out.subarray(0, 7), { masked: false, fin: false }),
		frame(WsOpcode.Continuation, out.subarray(7), { masked: false }),
		frame(WsOpcode.Text, b64(3, status), { masked: false }),
	]);
	for (const step of [1, 5, 64, client.length + server.length]) {
		const input: Buffer[] = [];
		const output: Buffer[] = [];
		let exit: number | undefined;
		const obs = new ExecStreamObserver(
			{ input: (b) => input.push(b), output: (b) => output.push(b), exit: (c) => (exit = c) },
			"base64",
		);
		for (let i = 0; i < client.length; i += step) obs.client(client.subarray(i, i + step));
		for (let i = 0; i < server.length; i += step) obs.server(server.subarray(i, i + step));
		assert.equal(Buffer.concat(input).toString(), typed, `step ${step}`);
		assert.equal(Buffer.concat(output).toString(), "eyJhbGciOiJSUzI1NiJ9.token-canary\r\n", `step ${step}`);
		assert.equal(exit, 3, `step ${step}`);
	}
});
