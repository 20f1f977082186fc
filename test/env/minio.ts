// MinIO for tests: the pinned binary built by scripts/test-deps, single-drive mode on a temp data
// dir, root credentials, loopback only. stop() keeps the data so start()/restart() can bring the
// same server back on the same port (tests of "the object store went away").
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import * as Minio from "minio";
import {
	type ManagedProcess as ManagedProcessT,
	ManagedProcess,
	depPaths,
	freePort,
	makeTempDir,
	removeTempDir,
	trackTempDir,
	waitFor,
} from "./process.ts";

export interface MinioOptions {
	/** Root user (access key). Default "drawbridge-root". */
	rootUser?: string;
	/** Root password (secret key). Default "drawbridge-root-secret". */
	rootPassword?: string;
	/** Buckets to create at startup. */
	buckets?: { name: string; objectLock?: boolean }[];
}

export interface MinioHandle {
	host: "127.0.0.1";
	port: number;
	/** http://127.0.0.1:PORT */
	endpoint: string;
	accessKey: string;
	secretKey: string;
	region: "us-east-1";
	dataDir: string;
	dir: string;
	/** A minio npm client for the root user. */
	client(): Minio.Client;
	/** Creates a bucket (optionally with object locking, which can only be chosen at creation). */
	createBucket(name: string, opts?: { objectLock?: boolean }): Promise<void>;
	/** True while the server process runs. */
	readonly running: boolean;
	/** Stops the server, keeping the data dir and port for start()/restart(). */
	stop(): Promise<void>;
	/** Starts it again after stop() (same port, same data). */
	start(): Promise<void>;
	restart(): Promise<void>;
	/** Stops it and deletes the data (also happens at process exit). */
	destroy(): Promise<void>;
	logs(): string;
}

export async function startMinio(options: MinioOptions = {}): Promise<MinioHandle> {
	const bin = depPaths().MINIO;
	if (!existsSync(bin)) throw new Error(`MinIO binary missing at ${bin}: run \`bash scripts/test-deps\``);
	const accessKey = options.rootUser ?? "drawbridge-root";
	const secretKey = options.rootPassword ?? "drawbridge-root-secret";
	const dir = makeTempDir("minio");
	trackTempDir(dir);
	const dataDir = join(dir, "data");
	mkdirSync(dataDir);
	mkdirSync(join(dir, "certs"));
	const [port, consolePort] = await Promise.all([freePort(), freePort()]);
	const endpoint = `http://127.0.0.1:${port}`;
	let proc: ManagedProcessT | undefined;
	let allLogs = "";

	const start = async () => {
		if (proc?.running) return;
		if (proc) allLogs += proc.logs.text();
		const p = new ManagedProcess({
			name: "minio",
			command: bin,
			args: ["server", dataDir, "--address", `127.0.0.1:${port}`, "--console-address", `127.0.0.1:${consolePort}`, "--certs-dir", join(dir, "certs"), "--quiet"],
			cwd: dir,
			env: {
				...process.env,
				HOME: dir,
				MINIO_ROOT_USER: accessKey,
				MINIO_ROOT_PASSWORD: secretKey,
				MINIO_BROWSER: "off",
				MINIO_UPDATE: "off",
				MINIO_CALLHOME_ENABLE: "off",
			},
			cleanupDir: dir,
		});
		proc = p;
		await waitFor(
			`minio on port ${port}`,
			async () => (await fetch(`${endpoint}/minio/health/ready`, { signal: AbortSignal.timeout(2000) })).status === 200,
			{ proc: p, timeoutMs: 60_000, intervalMs: 200 },
		);
	};
	const stop = async () => {
		if (proc?.running) await proc.stop(15_000);
	};
	const client = () => new Minio.Client({ endPoint: "127.0.0.1", port, useSSL: false, accessKey, secretKey, region: "us-east-1" });
	const createBucket = async (name: string, o: { objectLock?: boolean } = {}) => {
		await client().makeBucket(name, "us-east-1", { ObjectLocking: o.objectLock ?? false });
	};

	try {
		await start();
		for (const b of options.buckets ?? []) await createBucket(b.name, { objectLock: b.objectLock ?? false });
	} catch (err) {
		const log = proc?.logs.text() ?? "";
		await stop();
		removeTempDir(dir);
		if (log && err instanceof Error) err.message += `\n--- minio log ---\n${log}`;
		throw err;
	}

	return {
		host: "127.0.0.1",
		port,
		endpoint,
		accessKey,
		secretKey,
		region: "us-east-1",
		dataDir,
		dir,
		client,
		createBucket,
		get running() {
			return proc?.running ?? false;
		},
		stop,
		start,
		async restart() {
			await stop();
			await start();
		},
		async destroy() {
			await stop();
			removeTempDir(dir);
		},
		logs: () => allLogs + (proc?.logs.text() ?? ""),
	};
}
