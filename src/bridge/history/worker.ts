/**
 * Room: bridge/history. The history worker thread: hosts the engine (engine.ts), so its disk I/O, column building,
 * sealing, recovery and query work never run on the main event loop. Messages (store.ts is the
 * other side):
 *
 * ```
 * main → worker  { t: 'batch', data, length }          a batch record (ArrayBuffer, transferred)
 *                { t: 'req', id, op, args }             op: after | range | devices | stats | close
 * worker → main  { t: 'ready', info, maintenanceMs } | { t: 'failed', error }
 *                { t: 'buffer', data }                  a batch's buffer, back for reuse (transferred)
 *                { t: 'ack', bytes }                    a batch is written (or dropped)
 *                { t: 'res', id, result } | { t: 'res', id, error: { code, message } }
 *                { t: 'log', level, message, data }
 * ```
 */
import { parentPort, workerData } from 'node:worker_threads';
import { HistoryEngine, type HistoryEngineOptions } from './engine.js';

export type WorkerOptions = Omit<HistoryEngineOptions, 'now' | 'log'>;

export type WorkerRequest =
  | { readonly t: 'batch'; readonly data: ArrayBuffer; readonly length: number }
  | { readonly t: 'req'; readonly id: number; readonly op: string; readonly args: unknown };

const port = parentPort!;

function errorOf(err: unknown): { code: string | undefined; message: string } {
  const e = err as { code?: unknown; message?: unknown };
  return { code: typeof e?.code === 'string' ? e.code : undefined, message: String(e?.message ?? err) };
}

async function main(): Promise<void> {
  const options = workerData as WorkerOptions;
  let opened: Awaited<ReturnType<typeof HistoryEngine.open>>;
  try {
    opened = await HistoryEngine.open({
      ...options,
      log: (level, message, data) => port.postMessage({ t: 'log', level, message, data }),
    });
  } catch (err) {
    port.postMessage({ t: 'failed', error: errorOf(err) });
    port.close();
    return;
  }
  const { engine, info } = opened;
  let maintaining = false;
  const timer = setInterval(() => {
    if (maintaining) return;
    maintaining = true;
    engine
      .maintain()
      .catch((err: Error) => port.postMessage({ t: 'log', level: 'error', message: err.message }))
      .finally(() => {
        maintaining = false;
      });
  }, engine.maintenanceMs);

  const handle = async (op: string, args: unknown): Promise<unknown> => {
    switch (op) {
      case 'after':
        return engine.after(args as Parameters<HistoryEngine['after']>[0]);
      case 'range':
        return engine.range(args as Parameters<HistoryEngine['range']>[0]);
      case 'devices':
        return engine.devices(args as Parameters<HistoryEngine['devices']>[0]);
      case 'stats':
        return engine.stats();
      case 'close':
        clearInterval(timer);
        await engine.close((args as Parameters<HistoryEngine['close']>[0]) ?? undefined);
        return undefined;
      default:
        throw new Error(`unknown request '${op}'`);
    }
  };

  port.on('message', (m: WorkerRequest) => {
    if (m.t === 'batch') {
      // The batch is copied once (the memory tail keeps the copy) and its buffer goes straight
      // back for the main thread to reuse: no allocation there in steady state.
      const record = Buffer.allocUnsafeSlow(m.length);
      record.set(new Uint8Array(m.data, 0, m.length));
      const bytes = m.data.byteLength;
      port.postMessage({ t: 'buffer', data: m.data }, [m.data]);
      engine.ingest(record, () => port.postMessage({ t: 'ack', bytes }));
      return;
    }
    handle(m.op, m.args).then(
      (result) => {
        port.postMessage({ t: 'res', id: m.id, result });
        if (m.op === 'close') port.close();
      },
      (err: unknown) => port.postMessage({ t: 'res', id: m.id, error: errorOf(err) }),
    );
  });
  port.postMessage({ t: 'ready', info, maintenanceMs: engine.maintenanceMs });
}

void main();
