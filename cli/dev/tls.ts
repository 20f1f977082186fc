/**
 * A local CA and a server certificate for `drawbridge dev`, made once with the openssl CLI and kept
 * in the state directory, so `sslmode=verify-full sslrootcert=<state>/tls/ca.crt` works for psql.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface DevTls {
	caFile: string;
	certFile: string;
	keyFile: string;
	certPem: string;
	keyPem: string;
}

function openssl(args: string[], cwd: string): void {
	const r = spawnSync("openssl", args, { cwd, encoding: "utf8" });
	if (r.status !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr}`);
}

export function ensureDevTls(stateDir: string): DevTls {
	const dir = join(stateDir, "tls");
	mkdirSync(dir, { recursive: true, mode: 0o700 });
	const caFile = join(dir, "ca.crt");
	const certFile = join(dir, "server.crt");
	const keyFile = join(dir, "server.key");
	if (!existsSync(certFile) || !existsSync(keyFile) || !existsSync(caFile)) {
		openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key"], dir);
		openssl(["req", "-x509", "-new", "-key", "ca.key", "-sha256", "-days", "365", "-subj", "/CN=Drawbridge dev CA", "-out", "ca.crt"], dir);
		openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "server.key"], dir);
		openssl(["req", "-new", "-key", "server.key", "-subj", "/CN=localhost", "-out", "server.csr"], dir);
		writeFileSync(
			join(dir, "server.ext"),
			"subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n",
		);
		openssl(
			["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "365", "-sha256", "-extfile", "server.ext", "-out", "server.crt"],
			dir,
		);
	}
	return { caFile, certFile, keyFile, certPem: readFileSync(certFile, "utf8"), keyPem: readFileSync(keyFile, "utf8") };
}
