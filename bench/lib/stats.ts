/**
 * Latency samples and the resource use of a process, read from /proc (Linux).
 */
import { readFileSync } from 'node:fs';

/** Samples kept per recorder; past it, reservoir sampling keeps a uniform subset (max stays exact). */
export const MAX_SAMPLES = 1_000_000;

/** Latency samples in ms, bounded. */
export class LatencyRecorder {
  values = new Float64Array(1024);
  length = 0;
  seen = 0;
  max = 0;

  add(ms: number): void {
    this.seen++;
    if (ms > this.max) this.max = ms;
    if (this.length < MAX_SAMPLES) {
      if (this.length === this.values.length) {
        const next = new Float64Array(Math.min(MAX_SAMPLES, this.values.length * 2));
        next.set(this.values);
        this.values = next;
      }
      this.values[this.length++] = ms;
      return;
    }
    const j = Math.floor(Math.random() * this.seen);
    if (j < MAX_SAMPLES) this.values[j] = ms;
  }

  /** A copy fit for postMessage. */
  snapshot(): LatencySnapshot {
    return { values: this.values.slice(0, this.length), seen: this.seen, max: this.max };
  }
}

export interface LatencySnapshot {
  values: Float64Array;
  seen: number;
  max: number;
}

export interface LatencySummary {
  count: number;
  p50: number;
  p99: number;
  max: number;
}

/** Merges recorders' snapshots (each weighted by what it saw) and takes percentiles. */
export function summarize(snaps: readonly LatencySnapshot[]): LatencySummary {
  const total = snaps.reduce((n, s) => n + s.values.length, 0);
  const all = new Float64Array(total);
  let o = 0;
  for (const s of snaps) {
    all.set(s.values, o);
    o += s.values.length;
  }
  all.sort();
  const at = (p: number) => (total ? all[Math.min(total - 1, Math.floor(p * total))]! : Number.NaN);
  return {
    count: snaps.reduce((n, s) => n + s.seen, 0),
    p50: round(at(0.5)),
    p99: round(at(0.99)),
    max: round(snaps.reduce((m, s) => Math.max(m, s.max), total ? 0 : Number.NaN)),
  };
}

export function round(n: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

const CLK_TCK = 100; // getconf CLK_TCK on Linux x86-64

export interface ProcSample {
  /** utime + stime, seconds. */
  cpuSeconds: number;
  rssKiB: number;
  /** VmHWM: the peak resident set of the process's lifetime. */
  hwmKiB: number;
}

/** CPU and memory of a process from /proc/<pid>/stat and status; undefined once it is gone. */
export function readProc(pid: number): ProcSample | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    const cpuSeconds = (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
    return { cpuSeconds, rssKiB: kib('VmRSS'), hwmKiB: kib('VmHWM') };
  } catch {
    return undefined;
  }
}

/**
 * Samples a process every `intervalMs` to find its peak CPU use (share of one core over a sliding
 * `windowMs`) and peak RSS while it runs. VmHWM gives the lifetime peak; this gives the peak of the
 * measured window only.
 */
export class ProcMonitor {
  private timer: NodeJS.Timeout | undefined;
  private readonly history: { t: number; cpu: number }[] = [];
  private start: ProcSample | undefined;
  private startAt = 0;
  peakCpuPercent = 0;
  peakRssKiB = 0;
  last: ProcSample | undefined;

  constructor(
    readonly pid: number,
    private readonly intervalMs = 100,
    private readonly windowMs = 500,
  ) {}

  begin(): this {
    this.start = readProc(this.pid);
    this.startAt = performance.now();
    this.last = this.start;
    this.history.length = 0;
    this.peakCpuPercent = 0;
    this.peakRssKiB = this.start?.rssKiB ?? 0;
    this.timer = setInterval(() => this.sample(), this.intervalMs);
    return this;
  }

  private sample(): void {
    const s = readProc(this.pid);
    if (!s) return;
    this.last = s;
    const t = performance.now();
    this.peakRssKiB = Math.max(this.peakRssKiB, s.rssKiB);
    this.history.push({ t, cpu: s.cpuSeconds });
    while (this.history.length > 1 && t - this.history[0]!.t > this.windowMs) {
      const first = this.history[0]!;
      if (t - first.t < this.windowMs) break;
      const pct = ((s.cpuSeconds - first.cpu) / ((t - first.t) / 1000)) * 100;
      this.peakCpuPercent = Math.max(this.peakCpuPercent, pct);
      this.history.shift();
    }
  }

  /** Stops sampling and returns what the window cost. */
  end(): {
    cpuSeconds: number;
    wallSeconds: number;
    cpuPercent: number;
    peakCpuPercent: number;
    peakRssMiB: number;
    rssMiB: number;
  } {
    if (this.timer) clearInterval(this.timer);
    this.sample();
    const wallSeconds = (performance.now() - this.startAt) / 1000;
    const cpuSeconds = (this.last?.cpuSeconds ?? 0) - (this.start?.cpuSeconds ?? 0);
    return {
      cpuSeconds: round(cpuSeconds),
      wallSeconds: round(wallSeconds),
      cpuPercent: round((cpuSeconds / Math.max(wallSeconds, 1e-3)) * 100, 1),
      peakCpuPercent: round(this.peakCpuPercent, 1),
      peakRssMiB: round(this.peakRssKiB / 1024, 1),
      rssMiB: round((this.last?.rssKiB ?? 0) / 1024, 1),
    };
  }
}

/** The CPU this process (every thread: the load generator) used between two calls, as % of a core. */
export function generatorCpu(): () => { cpuSeconds: number; cpuPercent: number } {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  return () => {
    const c = process.cpuUsage(c0);
    const cpuSeconds = (c.user + c.system) / 1e6;
    const wall = (performance.now() - t0) / 1000;
    return { cpuSeconds: round(cpuSeconds), cpuPercent: round((cpuSeconds / Math.max(wall, 1e-3)) * 100, 1) };
  };
}
