// A throwaway certificate authority for tests, made with the openssl CLI (EC P-256 keys, short
// validity). Each server gets a leaf certificate for localhost / 127.0.0.1 signed by the CA.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { runOk } from "./process.ts";

export interface TestCa {
	dir: string;
	certFile: string;
	keyFile: string;
	certPem: string;
}

export interface IssuedCert {
	certFile: string;
	keyFile: string;
	certPem: string;
	keyPem: string;
}

export interface IssueOptions {
	/** Subject common name. */
	cn: string;
	/** Organisation (O=), e.g. "system:masters" for a Kubernetes admin client cert. */
	org?: string;
	/** DNS names for the subjectAltName (server certs). Default: ["localhost"]. */
	dns?: string[];
	/** IP addresses for the subjectAltName (server certs). Default: ["127.0.0.1"]. */
	ips?: string[];
	/** "server" (default) or "client" extended key usage. */
	usage?: "server" | "client";
	/** File name stem in the CA dir. Default: the cn with unsafe characters replaced. */
	name?: string;
}

/** Creates a CA (key + self-signed cert) in `dir`. */
export async function createCa(dir: string, cn = "Drawbridge test CA"): Promise<TestCa> {
	const keyFile = join(dir, "ca.key");
	const certFile = join(dir, "ca.crt");
	await runOk("openssl", ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", keyFile]);
	await runOk("openssl", [
		"req",
		"-x509",
		"-new",
		"-key",
		keyFile,
		"-sha256",
		"-days",
		"3",
		"-subj",
		`/CN=${cn}`,
		"-addext",
		"basicConstraints=critical,CA:TRUE",
		"-addext",
		"keyUsage=critical,keyCertSign,cRLSign",
		"-out",
		certFile,
	]);
	return { dir, certFile, keyFile, certPem: readFileSync(certFile, "utf8") };
}

/** Issues a leaf certificate signed by `ca`. */
export async function issueCert(ca: TestCa, opts: IssueOptions): Promise<IssuedCert> {
	const stem = opts.name ?? opts.cn.replace(/[^A-Za-z0-9_.-]/g, "_");
	const keyFile = join(ca.dir, `${stem}.key`);
	const csrFile = join(ca.dir, `${stem}.csr`);
	const certFile = join(ca.dir, `${stem}.crt`);
	const extFile = join(ca.dir, `${stem}.ext`);
	const usage = opts.usage ?? "server";
	const ext = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment"];
	if (usage === "server") {
		const sans = [
			...(opts.dns ?? ["localhost"]).map((d) => `DNS:${d}`),
			...(opts.ips ?? ["127.0.0.1"]).map((i) => `IP:${i}`),
		];
		ext.push("extendedKeyUsage=serverAuth", `subjectAltName=${sans.join(",")}`);
	} else {
		ext.push("extendedKeyUsage=clientAuth");
	}
	writeFileSync(extFile, `${ext.join("\n")}\n`);
	await runOk("openssl", ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", `${keyFile}.ec`]);
	// PKCS#8 is what every consumer (PostgreSQL, Go, Node) reads.
	await runOk("openssl", ["pkcs8", "-topk8", "-nocrypt", "-in", `${keyFile}.ec`, "-out", keyFile]);
	const subj = `${opts.org ? `/O=${opts.org}` : ""}/CN=${opts.cn}`;
	await runOk("openssl", ["req", "-new", "-key", keyFile, "-subj", subj, "-out", csrFile]);
	await runOk("openssl", [
		"x509",
		"-req",
		"-in",
		csrFile,
		"-CA",
		ca.certFile,
		"-CAkey",
		ca.keyFile,
		"-set_serial",
		`0x${randomBytes(12).toString("hex")}`,
		"-days",
		"2",
		"-sha256",
		"-extfile",
		extFile,
		"-out",
		certFile,
	]);
	return { certFile, keyFile, certPem: readFileSync(certFile, "utf8"), keyPem: readFileSync(keyFile, "utf8") };
}
