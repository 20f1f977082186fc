// The gateway child both recording benches start (bench/pg-world.ts startRecordingChild): it comes
// up on the bench config, serves the bench user through the gateway with the bench's token, masks
// what the bench bundle masks, and stops. The benches themselves are never run by the tests.
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import pg from "pg";
import { gatewayChildConfig, startRecordingChild } from "../../bench/pg-world.ts";
import { type PostgresHandle, startPostgres } from "../env/index.ts";
import { makeTempDir, removeTempDir } from "../env/process.ts";

let upstream: PostgresHandle;
let work: string;
before(async () => {
	upstream = await startPostgres();
	work = makeTempDir("bench-child");
});
after(async () => {
	await upstream?.stop();
	if (work) removeTempDir(work);
});

for (const mode of ["on", "switch"]) {
	test(`startRecordingChild(${mode}): the child serves the bench user through the gateway, masked, until stopped`, { timeout: 120_000 }, async () => {
		const { cfg: base, token } = await gatewayChildConfig(upstream, work, `k-${mode}`);
		const cfg = { ...base, stateFile: join(work, `state-${mode}.json`), workDir: join(work, mode) };
		const cfgFile = join(work, `cfg-${mode}.json`);
		writeFileSync(cfgFile, JSON.stringify(cfg));
		if (mode === "switch") writeFileSync(`${cfg.stateFile}.mode`, "on");
		const gw = await startRecordingChild(cfg, cfgFile, mode, ["--liftoff-only"]);
		try {
			const { port } = JSON.parse(readFileSync(cfg.stateFile, "utf8")) as { port: number };
			const client = new pg.Client({ host: "localhost", port, database: cfg.connection, user: "bench", password: token, ssl: { ca: upstream.caPem } });
			await client.connect();
			try {
				const { rows } = await client.query("SELECT email FROM customers ORDER BY id LIMIT 1");
				assert.equal(rows.length, 1);
				assert.doesNotMatch(String(rows[0].email), /@example\.com$/, "the bench bundle redacts customers.email");
			} finally {
				await client.end();
			}
		} finally {
			await gw.stop();
		}
		assert.equal(gw.running, false);
	});
}
