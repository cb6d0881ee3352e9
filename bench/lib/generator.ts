/**
 * The load generator: worker threads (gen-worker.ts), each with a slice of the connections. The
 * bench process pins itself (every thread) to the generator's core, so these threads stay off the
 * core of the system under test. Its own CPU use is read with `process.cpuUsage()` (all threads).
 */
import { Worker } from 'node:worker_threads';
import type { WorkerResult, WorkerTask } from './worker-protocol.js';

const here = import.meta.url;
const TS = here.endsWith('.ts');
const WORKER_URL = new URL(TS ? './gen-worker.ts' : './gen-worker.js', here);
/** Under tsx (development) the worker registers tsx's loader before importing the .ts entry. */
const TSX_BOOT = TS
  ? `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((m) => { m.register(); return import(${JSON.stringify(WORKER_URL.href)}); })`
  : undefined;

type Reply =
  | { ev: 'ready' }
  | { ev: 'error'; message: string }
  | { ev: 'result'; result: WorkerResult }
  | { ev: 'progress'; value: number }
  | { ev: 'closed' };

export class Generator {
  private constructor(private readonly workers: Worker[]) {}

  /** Starts one worker per task and resolves once every one has connected (or rejects). */
  static async spawn(tasks: readonly WorkerTask[], timeoutMs = 120_000): Promise<Generator> {
    const workers = tasks.map((t) =>
      TSX_BOOT
        ? new Worker(TSX_BOOT, { eval: true, workerData: t })
        : new Worker(WORKER_URL, { workerData: t }),
    );
    const gen = new Generator(workers);
    try {
      await Promise.all(
        workers.map((w) =>
          gen
            .reply(w, (r) => r.ev === 'ready', timeoutMs)
            .then((r) => {
              if (r.ev === 'error') throw new Error(r.message);
            }),
        ),
      );
    } catch (err) {
      await gen.terminate();
      throw err;
    }
    return gen;
  }

  private reply(w: Worker, accept: (r: Reply) => boolean, timeoutMs: number): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const onMessage = (r: Reply) => {
        if (r.ev === 'error' || accept(r)) {
          cleanup();
          resolve(r);
        }
      };
      const onError = (err: Error) => {
        cleanup();
        reject(err);
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`load generator worker did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        w.off('message', onMessage);
        w.off('error', onError);
      };
      w.on('message', onMessage);
      w.on('error', onError);
    });
  }

  start(): void {
    for (const w of this.workers) w.postMessage({ cmd: 'start' });
  }

  arm(): void {
    for (const w of this.workers) w.postMessage({ cmd: 'arm' });
  }

  /** Sum of the workers' progress values (hold: connections up). */
  async progress(): Promise<number> {
    const values = await Promise.all(
      this.workers.map((w) => {
        const r = this.reply(w, (x) => x.ev === 'progress', 10_000);
        w.postMessage({ cmd: 'progress' });
        return r;
      }),
    );
    return values.reduce((n, r) => n + (r.ev === 'progress' ? r.value : 0), 0);
  }

  async stop(timeoutMs = 30_000): Promise<WorkerResult[]> {
    return Promise.all(
      this.workers.map(async (w) => {
        const r = this.reply(w, (x) => x.ev === 'result', timeoutMs);
        w.postMessage({ cmd: 'stop' });
        const reply = await r;
        if (reply.ev === 'error') throw new Error(reply.message);
        return (reply as { result: WorkerResult }).result;
      }),
    );
  }

  /** Closes the connections, then ends the threads. */
  async close(): Promise<void> {
    await Promise.all(
      this.workers.map(async (w) => {
        const r = this.reply(w, (x) => x.ev === 'closed', 10_000).catch(() => undefined);
        w.postMessage({ cmd: 'close' });
        await r;
      }),
    );
    await this.terminate();
  }

  private async terminate(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

/** Splits `items` into `n` nearly equal slices. */
export function slices<T>(items: readonly T[], n: number): T[][] {
  const out: T[][] = Array.from({ length: n }, () => []);
  for (let i = 0; i < items.length; i++) out[i % n]!.push(items[i]!);
  return out.filter((s) => s.length > 0);
}
