/**
 * Fleet mode: 1 to 10 000 simulated devices from one process.
 *
 * - Up to `devicesPerThread` (default 1000) devices run in the calling thread; bigger fleets are
 *   split over worker threads (each with its own event loop, so 10 000 devices' timers and sockets do
 *   not queue behind each other), at most `maxWorkers` (default 16).
 * - Connects are staggered: device i of N starts at i/N · `connectWindowMs` plus a random offset
 *   inside its slot, so a fleet never arrives as one herd (reconnects are spread by each device's
 *   full-jitter backoff).
 * - Progress: `onProgress(snapshot)` every `reportMs`; `formatProgress` makes the one-liner.
 * - Ends after `durationS` (0 = until `stop()`), and resolves with a JSON-able summary.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { Logger } from '../src/log.js';
import type { WorkerInput } from './fleet-worker.js';
import {
  DeviceGroup,
  type DeviceSpec,
  type GroupSnapshot,
  mergeSnapshots,
  type SharedDeviceOptions,
} from './group.js';
import { LatencyHistogram } from './latency.js';
import { MAX_FLEET } from './limits.js';

export interface FleetDevice {
  readonly id: string;
  readonly secret?: string;
}

export interface FleetOptions {
  readonly devices: readonly FleetDevice[];
  readonly shared: SharedDeviceOptions;
  /**
   * Connects are spread over this window, ms. Default: min(30 000, 50 ms × N) — about half the rate at
   * which a bridge with authentication on checks new logins from one address (scrypt, ~40 ms each,
   * one at a time per address), so a loopback fleet is not refused by the login throttle.
   */
  readonly connectWindowMs?: number;
  /** Run time, s; 0 = until stop(). Default 0. */
  readonly durationS?: number;
  /** Devices per thread before worker threads are used. Default 1000. */
  readonly devicesPerThread?: number;
  /** Most worker threads. Default max(16, cores). */
  readonly maxWorkers?: number;
  /** At the end, time given to buffered data to be acknowledged before disconnecting, ms. Default 2000. */
  readonly drainMs?: number;
  /** Progress callback period, ms. Default 1000. */
  readonly reportMs?: number;
  readonly onProgress?: (progress: FleetProgress) => void;
  /** Log level of the devices (stderr). Default 'warn'. */
  readonly logLevel?: string;
  readonly log?: Logger;
}

export interface FleetProgress extends GroupSnapshot {
  readonly elapsedMs: number;
  readonly p50Ms: number | undefined;
  readonly p99Ms: number | undefined;
}

export interface FleetSummary {
  devices: number;
  workers: number;
  durationS: number;
  connected: number;
  connects: number;
  reconnects: number;
  connectFailures: number;
  authFailures: number;
  samples: number;
  sent: number;
  resent: number;
  acked: number;
  samplesAcked: number;
  ackedPerSecond: number;
  rejected: number;
  unexpectedRejections: number;
  rejectionsByReason: Record<string, number>;
  faultsSent: number;
  faultsByKind: Record<string, number>;
  commands: number;
  dropped: number;
  buffered: number;
  latencyMs: { p50: number | null; p99: number | null };
}

interface WorkerHandle {
  worker: Worker;
  last: GroupSnapshot | undefined;
  stopped: Promise<GroupSnapshot>;
}

export class Fleet {
  private readonly options: FleetOptions;
  private local: DeviceGroup | undefined;
  private readonly workers: WorkerHandle[] = [];
  private startedAt = 0;
  private reportTimer: NodeJS.Timeout | undefined;
  private endTimer: NodeJS.Timeout | undefined;
  private finished: Promise<FleetSummary> | undefined;
  private resolveEnd: (() => void) | undefined;

  constructor(options: FleetOptions) {
    const n = options.devices.length;
    if (n < 1 || n > MAX_FLEET) throw new RangeError(`a fleet has 1 to ${MAX_FLEET} devices, not ${n}`);
    this.options = options;
  }

  /** Starts the devices; resolves with the summary when the duration is over or stop() is called. */
  run(): Promise<FleetSummary> {
    if (this.finished) return this.finished;
    this.finished = this.runInner();
    return this.finished;
  }

  /** Ends the run early (e.g. on SIGINT). */
  stop(): void {
    this.resolveEnd?.();
  }

  private async runInner(): Promise<FleetSummary> {
    const o = this.options;
    const n = o.devices.length;
    const window = o.connectWindowMs ?? Math.min(30_000, 50 * n);
    const specs: DeviceSpec[] = o.devices.map((d, i) => ({
      ...d,
      startDelayMs: Math.floor(((i + Math.random()) / n) * window),
    }));
    const perThread = o.devicesPerThread ?? 1000;
    const threads =
      n <= perThread
        ? 1
        : Math.min(Math.ceil(n / perThread), o.maxWorkers ?? Math.max(16, availableParallelism()));
    this.startedAt = Date.now();
    if (threads === 1) {
      this.local = new DeviceGroup(specs, o.shared, o.log);
      this.local.start();
    } else {
      for (let t = 0; t < threads; t++) {
        // Round-robin, so each worker's devices are spread over the whole stagger window.
        this.workers.push(this.spawn(specs.filter((_, i) => i % threads === t)));
      }
    }
    const reportMs = o.reportMs ?? 1000;
    this.reportTimer = setInterval(() => o.onProgress?.(this.progress()), reportMs);
    await new Promise<void>((resolve) => {
      this.resolveEnd = resolve;
      if (o.durationS) this.endTimer = setTimeout(resolve, o.durationS * 1000);
    });
    clearInterval(this.reportTimer);
    clearTimeout(this.endTimer);
    const elapsedMs = Date.now() - this.startedAt;
    const connectedAtEnd = this.progress().totals.online;
    let final: GroupSnapshot;
    if (this.local) {
      await this.local.stop(o.drainMs ?? 2000);
      final = this.local.snapshot();
    } else {
      for (const w of this.workers) w.worker.postMessage({ type: 'stop' });
      final = mergeSnapshots(await Promise.all(this.workers.map((w) => w.stopped)));
    }
    return summarize(final, elapsedMs, connectedAtEnd, Math.max(threads === 1 ? 0 : threads, 0));
  }

  private spawn(specs: DeviceSpec[]): WorkerHandle {
    const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
    const input: WorkerInput = {
      specs,
      shared: this.options.shared,
      logLevel: this.options.logLevel ?? 'warn',
      reportMs: Math.min(1000, this.options.reportMs ?? 1000),
      drainMs: this.options.drainMs ?? 2000,
    };
    const entry = new URL(`./fleet-worker${ext}`, import.meta.url);
    // Compiled (dist/): the .js entry. From sources (tsx): the worker registers tsx's loader itself,
    // since loader hooks of the main thread do not carry over to workers.
    const worker =
      ext === '.js'
        ? new Worker(entry, { workerData: input })
        : new Worker(
            `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((m) => { m.register(); return import(${JSON.stringify(entry.href)}); });`,
            { eval: true, workerData: input },
          );
    const handle: WorkerHandle = { worker, last: undefined, stopped: Promise.resolve(undefined as never) };
    handle.stopped = new Promise<GroupSnapshot>((resolve, reject) => {
      worker.on('message', (msg: { type: string; snapshot: GroupSnapshot }) => {
        handle.last = msg.snapshot;
        if (msg.type === 'stopped') resolve(msg.snapshot);
      });
      worker.on('error', (err) => {
        this.options.log?.error({ err: err.message }, 'fleet worker failed');
        reject(err);
      });
      worker.on('exit', () => resolve(handle.last ?? emptySnapshot(specs.length)));
    });
    return handle;
  }

  /** The current totals (workers: their last report, at most `reportMs` old). */
  progress(): FleetProgress {
    const snap = this.local
      ? this.local.snapshot()
      : mergeSnapshots(this.workers.map((w) => w.last ?? emptySnapshot(0)));
    const h = new LatencyHistogram(snap.latencyCounts);
    return {
      ...snap,
      elapsedMs: Date.now() - this.startedAt,
      p50Ms: h.quantile(0.5),
      p99Ms: h.quantile(0.99),
    };
  }
}

function emptySnapshot(devices: number): GroupSnapshot {
  return { ...mergeSnapshots([]), devices };
}

function summarize(s: GroupSnapshot, elapsedMs: number, connected: number, workers: number): FleetSummary {
  const h = new LatencyHistogram(s.latencyCounts);
  const t = s.totals;
  const round = (x: number | undefined) => (x === undefined ? null : Math.round(x * 100) / 100);
  return {
    devices: s.devices,
    workers,
    durationS: Math.round(elapsedMs / 100) / 10,
    connected,
    connects: t.connects,
    reconnects: t.reconnects,
    connectFailures: t.connectFailures,
    authFailures: t.authFailures,
    samples: t.samples,
    sent: t.sent,
    resent: t.resent,
    acked: t.acked,
    samplesAcked: t.samplesAcked,
    ackedPerSecond: Math.round((t.acked / Math.max(elapsedMs, 1)) * 1000 * 10) / 10,
    rejected: t.rejected,
    unexpectedRejections: t.unexpectedRejections,
    rejectionsByReason: s.rejectionsByReason,
    faultsSent: t.faultsSent,
    faultsByKind: s.faultsByKind,
    commands: t.commands,
    dropped: t.dropped,
    buffered: t.buffered,
    latencyMs: { p50: round(h.quantile(0.5)), p99: round(h.quantile(0.99)) },
  };
}

/** One progress line: on a TTY it is redrawn in place (`\r`), otherwise printed as is. */
export function formatProgress(p: FleetProgress): string {
  const t = p.totals;
  const ms = (x: number | undefined) =>
    x === undefined ? '-' : x < 10 ? x.toFixed(1) : Math.round(x).toString();
  return (
    `[${(p.elapsedMs / 1000).toFixed(0).padStart(4)}s] connected ${t.online}/${p.devices}` +
    ` sent ${t.sent} acked ${t.acked} rejected ${t.rejected} reconnects ${t.reconnects}` +
    ` buffered ${t.buffered} dropped ${t.dropped} puback p50 ${ms(p.p50Ms)} ms p99 ${ms(p.p99Ms)} ms`
  );
}
