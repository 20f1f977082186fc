import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { httpStatusOf, KUBE_ERROR_CATALOGUE, KubeGatewayError, type KubeErrorCode } from "../../gateway/kube/status.ts";
import { SSH_ERROR_CATALOGUE } from "../../gateway/ssh/errors.ts";

test("kube error catalogue, HTTP statuses and README table stay in step", () => {
	const readme = readFileSync(new URL("../../gateway/kube/README.md", import.meta.url), "utf8");
	for (const code of Object.keys(KUBE_ERROR_CATALOGUE) as KubeErrorCode[]) {
		const status = httpStatusOf(code);
		assert.match(KUBE_ERROR_CATALOGUE[code], new RegExp(`^${status}`), code);
		const row = readme.split("\n").find((l) => l.startsWith(`| \`${code}\` |`));
		assert.ok(row, `README row for ${code}`);
		assert.match(row, new RegExp(`\\| ${status} `), code);
		const s = new KubeGatewayError(code, "x").toStatus();
		assert.equal(s["kind"], "Status");
		assert.equal(s["code"], status);
	}
});

test("ssh error catalogue and README table stay in step", () => {
	const readme = readFileSync(new URL("../../gateway/ssh/README.md", import.meta.url), "utf8");
	for (const code of Object.keys(SSH_ERROR_CATALOGUE)) {
		assert.ok(readme.includes(`| \`${code}\` |`), `README row for ${code}`);
	}
	const rows = readme.split("\n").filter((l) => /^\| `[a-z-]+` \|/.test(l)).length;
	assert.equal(rows, Object.keys(SSH_ERROR_CATALOGUE).length);
});
