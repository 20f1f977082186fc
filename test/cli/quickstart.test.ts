// The README's first command, end to end: `drawbridge quickstart --exit` starts dev mode on
// examples/ (embedded PostgreSQL, gateway, local recordings), runs the scripted agent and shuts down.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { freePort } from "../env/index.ts";

const ROOT = join(import.meta.dirname, "..", "..");

function portOpen(port: number): Promise<boolean> {
	return new Promise((resolve) => {
		const s = createConnection({ host: "127.0.0.1", port });
		s.once("connect", () => {
			s.destroy();
			resolve(true);
		});
		s.once("error", () => resolve(false));
	});
}

/** `drawbridge quickstart --exit` on a state directory: its exit code and output. */
async function runQuickstart(state: string, upstreamPort: number): Promise<{ code: number | null; stdout: string; diag: string }> {
	const child = spawn(
		process.execPath,
		[join(ROOT, "bin", "drawbridge.mjs"), "quickstart", "--exit", "--any-ports", "--state", state, "--upstream-port", String(upstreamPort)],
		{ cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
	);
	let stdout = "";
	let stderr = "";
	child.stdout.on("data", (d: Buffer) => (stdout += d));
	child.stderr.on("data", (d: Buffer) => (stderr += d));
	const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
	return { code, stdout, diag: `\n--- stdout ---\n${stdout}\n--- stderr ---\n${stderr}` };
}

test("quickstart runs journeys 1 and 2 end to end, records verified sessions, shuts down cleanly and runs again on the same state", { timeout: 480_000 }, async (t) => {
	const state = mkdtempSync(join(tmpdir(), "drawbridge-quickstart-"));
	t.after(() => rmSync(state, { recursive: true, force: true }));
	// The gateway binds free ports itself (--any-ports): ports picked here could be taken by another
	// test before the gateway listens, seconds later (seen as EADDRINUSE in a CI run).
	const upstreamPort = await freePort();
	const { code, stdout, diag } = await runQuickstart(state, upstreamPort);
	assert.equal(code, 0, `quickstart exited ${code}${diag}`);

	// Journey 1: masked read, refused write naming the read-only grant.
	assert.match(stdout, /[a-z]\*+@example\.com\s+\*+\d{4}/, `masked email and card expected${diag}`);
	assert.doesNotMatch(stdout, /\b4111\d{12}\b/, "a full card number leaked");
	assert.match(stdout, /ERROR 42501: .*ci-deployer-orders-ro.*read-only/);
	// Journey 2: held DELETE, self-approval refused, approved by the demo approver, DROP blocked.
	assert.match(stdout, /NOTICE: approval ar-[a-z0-9-]+ pending/);
	assert.match(stdout, /approve ar-[a-z0-9-]+ itself → HTTP 403/);
	assert.match(stdout, /phase Approved/);
	assert.match(stdout, /→ DELETE [1-9]\d*/);
	assert.match(stdout, /DROP TABLE blocked by guardrail rule "no-drop-truncate"/);
	assert.match(stdout, /All journeys behaved as expected\./);
	// Evidence: both sessions recorded and verified, in the documented layout.
	const verified = stdout.match(/recordings\/\d{4}\/\d{2}\/\d{2}\/(orders-prod|tickets-prod)\/[0-9a-f-]+\/\s+verified/g) ?? [];
	assert.equal(verified.length, 2, `two verified recordings expected${diag}`);
	const day = new Date();
	const dayDir = join(state, "recordings", "recordings", String(day.getUTCFullYear()), String(day.getUTCMonth() + 1).padStart(2, "0"));
	assert.ok(existsSync(dayDir) && readdirSync(dayDir).length > 0, `recordings in ${dayDir}`);
	// Clean shutdown: nothing listens any more.
	const gatewayPorts = [...stdout.matchAll(/127\.0\.0\.1:(\d+)/g)].map((m) => Number(m[1]));
	assert.ok(gatewayPorts.length >= 2, "the quickstart printed where it listened");
	for (const port of new Set([upstreamPort, ...gatewayPorts])) assert.equal(await portOpen(port), false, `port ${port} still open`);

	// The README's first command run again on the same state: the story behaves the same (the first
	// run's approved DELETE emptied the demo's old tickets; they are put back).
	const again = await runQuickstart(state, upstreamPort);
	assert.equal(again.code, 0, `second quickstart exited ${again.code}${again.diag}`);
	assert.match(again.stdout, /→ DELETE [1-9]\d*/, `second run's approved DELETE deleted nothing${again.diag}`);
	assert.match(again.stdout, /All journeys behaved as expected\./);
});
