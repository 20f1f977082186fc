/**
 * Test helpers: keys and certificates made by the real OpenSSH `ssh-keygen` (never by our own code,
 * so the parser is tested against the reference implementation).
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface KeyPair {
	/** Private key file path (OpenSSH format, no passphrase). */
	path: string;
	privateKey: string;
	publicKey: string;
}

export class KeyDir {
	readonly dir: string;
	#n = 0;

	constructor() {
		this.dir = mkdtempSync(join(tmpdir(), "drawbridge-sshkeys-"));
	}

	keygen(type: "ed25519" | "ecdsa" | "rsa" = "ed25519", bits?: number): KeyPair {
		const path = join(this.dir, `k${this.#n++}_${type}`);
		const args = ["-q", "-t", type, "-N", "", "-C", `test-${type}`, "-f", path];
		if (bits) args.push("-b", String(bits));
		execFileSync("ssh-keygen", args);
		return { path, privateKey: readFileSync(path, "utf8"), publicKey: readFileSync(`${path}.pub`, "utf8").trim() };
	}

	/** Sign `user.pub` with `ca`; returns the certificate line (`*-cert-v01@openssh.com base64 comment`). */
	sign(
		ca: KeyPair,
		user: KeyPair,
		opts: { id: string; principals?: string[]; validity?: string; options?: string[]; host?: boolean; hashAlg?: string },
	): string {
		const args = ["-q", "-s", ca.path, "-I", opts.id];
		if (opts.principals?.length) args.push("-n", opts.principals.join(","));
		if (opts.validity) args.push("-V", opts.validity);
		for (const o of opts.options ?? []) args.push("-O", o);
		if (opts.host) args.push("-h");
		if (opts.hashAlg) args.push("-t", opts.hashAlg);
		args.push(`${user.path}.pub`);
		execFileSync("ssh-keygen", args);
		return readFileSync(`${user.path}-cert.pub`, "utf8").trim();
	}

	cleanup(): void {
		rmSync(this.dir, { recursive: true, force: true });
	}
}

export function blobOf(line: string): Buffer {
	return Buffer.from(line.trim().split(/\s+/)[1]!, "base64");
}
