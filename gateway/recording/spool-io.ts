/**
 * The main thread's side of the spool worker (spool-worker.ts): sessions hand it write, seal and
 * close operations; every operation requested in one turn of the event loop goes to the worker as
 * one message (the recorder flushes all sessions at one tick, so a tick is one message each way),
 * and each caller gets its own result. The worker is started on first use, kept referenced only
 * while operations are in flight (an idle recorder does not hold the process open), and replaced
 * if it dies: the operations it held fail, their sessions stop recording (as on any spool error),
 * and later operations go to a new worker.
 */
import { Worker } from "node:worker_threads";
import { CHUNK_GZIP_LEVEL, FORMAT_VERSION } from "./format.ts";
import type { SpoolOp, SpoolReply, SpoolRequest, SpoolResult, SpoolWorkerData } from "./spool-worker.ts";

interface Pending {
	op: SpoolOp;
	resolve: (result: SpoolResult) => void;
	reject: (error: Error) => void;
}

export class SpoolIO {
	readonly headerRoom: number;
	#worker: Worker | undefined;
	#queued: Pending[] = [];
	#inflight = new Map<number, Pending[]>();
	#scheduled = false;
	#nextId = 1;
	#closed = false;
	/** Operations requested and not yet answered; close() waits for them. */
	#outstanding = 0;
	#idle: (() => void)[] = [];
	/** Messages sent to the worker, operations in them, workers started: for diagnostics and tests. */
	readonly stats = { batches: 0, operations: 0, workersStarted: 0 };

	constructor(headerRoom: number) {
		this.headerRoom = headerRoom;
	}

	/** Run one operation in the worker; rejects if the worker could not run it (an error inside the op is in the result). */
	run(op: SpoolOp): Promise<SpoolResult> {
		if (this.#closed) return Promise.reject(new Error("the spool worker is stopped"));
		return new Promise<SpoolResult>((resolve, reject) => {
			this.#outstanding++;
			const settled = () => {
				if (--this.#outstanding === 0) for (const w of this.#idle.splice(0)) w();
			};
			this.#queued.push({
				op,
				resolve: (result) => {
					settled();
					resolve(result);
				},
				reject: (error) => {
					settled();
					reject(error);
				},
			});
			if (!this.#scheduled) {
				this.#scheduled = true;
				setImmediate(() => this.#post());
			}
		});
	}

	#post(): void {
		this.#scheduled = false;
		const batch = this.#queued;
		if (batch.length === 0) return;
		this.#queued = [];
		let worker: Worker;
		try {
			worker = this.#start();
		} catch (e) {
			for (const p of batch) p.reject(e as Error);
			return;
		}
		const id = this.#nextId++;
		this.stats.batches++;
		this.stats.operations += batch.length;
		this.#inflight.set(id, batch);
		if (this.#inflight.size === 1) worker.ref();
		const request: SpoolRequest = { id, ops: batch.map((p) => p.op) };
		worker.postMessage(request);
	}

	/** Start the worker ahead of the first operation (a thread and an isolate take tens of milliseconds). */
	start(): void {
		if (!this.#closed) this.#start();
	}

	#start(): Worker {
		if (this.#worker) return this.#worker;
		const data: SpoolWorkerData = { format: FORMAT_VERSION, gzipLevel: CHUNK_GZIP_LEVEL, headerRoom: this.headerRoom };
		// No execArgv: the worker needs no loader (Node strips its types) and none of the parent's flags.
		const worker = new Worker(new URL("./spool-worker.ts", import.meta.url), { workerData: data, execArgv: [] });
		worker.unref();
		this.stats.workersStarted++;
		worker.on("message", (reply: SpoolReply) => {
			const batch = this.#inflight.get(reply.id);
			if (!batch) return;
			this.#inflight.delete(reply.id);
			if (this.#inflight.size === 0) worker.unref();
			for (let i = 0; i < batch.length; i++) batch[i]!.resolve(reply.results[i] ?? { error: { message: "no result from the spool worker" } });
		});
		const failAll = (error: Error) => {
			if (this.#worker === worker) this.#worker = undefined;
			const lost = [...this.#inflight.values()].flat();
			this.#inflight.clear();
			for (const p of lost) p.reject(error);
		};
		worker.on("error", (e) => failAll(new Error(`spool worker failed: ${e.message}`, { cause: e })));
		worker.on("exit", (code) => failAll(new Error(`spool worker exited (code ${code})`)));
		this.#worker = worker;
		return worker;
	}

	/** Operations requested and not answered yet. */
	get outstanding(): number {
		return this.#outstanding;
	}

	/** The running worker thread, if any (diagnostics; tests end it to check that a dead worker is replaced). */
	get worker(): Worker | undefined {
		return this.#worker;
	}

	/** Stop the worker once the operations already requested are done. */
	async close(): Promise<void> {
		this.#closed = true;
		if (this.#outstanding > 0) await new Promise<void>((resolve) => this.#idle.push(resolve));
		const worker = this.#worker;
		this.#worker = undefined;
		if (worker) await worker.terminate();
	}
}
