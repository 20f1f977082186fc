import { test } from "node:test";
import { DirStore } from "../../gateway/recording/store.ts";
import { makeRecorder, tempDir } from "./fixtures.ts";
import { runTamperCases } from "./tamper-cases.ts";

test("directory store: tampering with each kind of object fails verification precisely", async (t) => {
	const store = new DirStore(await tempDir("tamper-store"));
	await store.init();
	const { rec } = await makeRecorder(store, await tempDir("tamper-spool"), { chunkMaxBytes: 1500 });
	try {
		await runTamperCases(t, rec, store);
	} finally {
		await rec.stop();
	}
});
