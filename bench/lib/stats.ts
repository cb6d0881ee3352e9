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

/** The median (the mean of the two middle values for an even count); NaN for none. */
export function median(xs: readonly number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2
    ? sorted[mid]!
    : ((sorted[mid - 1] ?? Number.NaN) + (sorted[mid] ?? Number.NaN)) / 2;
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
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15 (every thread's, summed).
    const cpuSeconds = (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
    return { cpuSeconds, rssKiB: kib('VmRSS'), hwmKiB: kib('VmHWM') };
  } catch {
    return undefined;
  }
}

/** Several processes (e.g. three bridge instances) as one system: CPU and RSS summed. */
function readAll(pids: readonly number[]): ProcSample | undefined {
  let out: ProcSample | undefined;
  for (const pid of pids) {
    const s = readProc(pid);
    if (!s) continue;
    out = out
      ? {
          cpuSeconds: out.cpuSeconds + s.cpuSeconds,
          rssKiB: out.rssKiB + s.rssKiB,
          hwmKiB: out.hwmKiB + s.hwmKiB,
        }
      : s;
  }
  return out;
}

/** What the system under test used over a measured window. */
export interface SutUsage {
  /** utime + stime of the SUT process(es) over the window, every thread. */
  cpuSeconds: number;
  wallSeconds: number;
  /** cpuSeconds / wallSeconds, % of one core. */
  cpuPercent: number;
  /** Highest share of one core over any 500 ms of the window. */
  peakCpuPercent: number;
  /**
   * Peak resident set, MiB: the kernel's high-water mark (VmHWM) of a process started fresh for the
   * row, or the highest 100 ms sample when that is higher (several processes: their HWMs summed).
   */
  peakRssMiB: number;
  /** RSS at the end of the window, MiB. */
  rssMiB: number;
}

/**
 * Samples the system under test every `intervalMs` to find its peak CPU use (share of one core over
 * a sliding `windowMs`) and peak RSS while it runs; CPU over the window is the difference of
 * /proc/<pid>/stat's utime + stime at begin and end.
 */
export class ProcMonitor {
  private timer: NodeJS.Timeout | undefined;
  private readonly history: { t: number; cpu: number }[] = [];
  private readonly pids: readonly number[];
  private start: ProcSample | undefined;
  private startAt = 0;
  peakCpuPercent = 0;
  peakRssKiB = 0;
  last: ProcSample | undefined;

  constructor(
    pids: number | readonly number[],
    private readonly intervalMs = 100,
    private readonly windowMs = 500,
  ) {
    this.pids = typeof pids === 'number' ? [pids] : pids;
  }

  begin(): this {
    this.start = readAll(this.pids);
    this.startAt = performance.now();
    this.last = this.start;
    this.history.length = 0;
    this.peakCpuPercent = 0;
    this.peakRssKiB = this.start?.rssKiB ?? 0;
    this.timer = setInterval(() => this.sample(), this.intervalMs);
    return this;
  }

  private sample(): void {
    const s = readAll(this.pids);
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
  end(): SutUsage {
    if (this.timer) clearInterval(this.timer);
    this.sample();
    const wallSeconds = (performance.now() - this.startAt) / 1000;
    const cpuSeconds = (this.last?.cpuSeconds ?? 0) - (this.start?.cpuSeconds ?? 0);
    return {
      cpuSeconds: round(cpuSeconds, 3),
      wallSeconds: round(wallSeconds),
      cpuPercent: round((cpuSeconds / Math.max(wallSeconds, 1e-3)) * 100, 1),
      peakCpuPercent: round(this.peakCpuPercent, 1),
      peakRssMiB: round(Math.max(this.peakRssKiB, this.last?.hwmKiB ?? 0) / 1024, 1),
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

/** Busy CPU time of the whole machine (every core, /proc/stat), seconds; 0 where unreadable. */
export function machineBusySeconds(): number {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
    // cpu user nice system idle iowait irq softirq steal …: busy = all but idle and iowait.
    const f = line.trim().split(/\s+/).slice(1, 9).map(Number);
    const total = f.reduce((a, b) => a + b, 0);
    return (total - (f[3] ?? 0) - (f[4] ?? 0)) / CLK_TCK;
  } catch {
    return 0;
  }
}

/**
 * CPU µs the system under test spent per unit of work (message, delivery, connection), from its
 * own CPU time over the measured window; undefined when no work was done.
 */
export function cpuMicrosPer(cpuSeconds: number, units: number): number | undefined {
  if (!(units > 0)) return undefined;
  return round((cpuSeconds / units) * 1e6, 2);
}

/**
 * CPU used by everything except the system under test and the load generator, % of one core: what
 * else ran on the machine during the window (other work; InfluxDB in the ingest rows). Never below 0
 * (the counters tick at 10 ms).
 */
export function otherCpuPercent(
  busySeconds: number,
  sutCpuSeconds: number,
  generatorCpuSeconds: number,
  wallSeconds: number,
): number {
  const other = busySeconds - sutCpuSeconds - generatorCpuSeconds;
  return round(Math.max(0, other / Math.max(wallSeconds, 1e-3)) * 100, 1);
}

/** One measured window: the SUT, the generator (this process) and the rest of the machine. */
export interface Measured {
  readonly usage: SutUsage;
  readonly generatorCpuPercent: number;
  /** CPU of everything else on the machine during the window, % of one core. */
  readonly otherCpuPercent: number;
}

/**
 * Starts metering a window: the SUT process(es) from /proc, this process (the generator's threads)
 * with `process.cpuUsage`, the machine from /proc/stat. Call the result to end the window.
 */
export function meter(sutPids: number | readonly number[]): () => Measured {
  const mon = new ProcMonitor(sutPids).begin();
  const gen = generatorCpu();
  const busy0 = machineBusySeconds();
  return () => {
    const g = gen();
    const usage = mon.end();
    const busy = machineBusySeconds() - busy0;
    return {
      usage,
      generatorCpuPercent: g.cpuPercent,
      otherCpuPercent: otherCpuPercent(busy, usage.cpuSeconds, g.cpuSeconds, usage.wallSeconds),
    };
  };
}

/** Resident memory by kind of mapping, bytes. */
export interface SmapsRss {
  /** glibc's main malloc heap (`[heap]`): native allocations (sockets, buffers, C++ objects). */
  brk: number;
  /** Anonymous mappings under 64 MiB: mostly V8's heap pages (and Mosquitto's mmap'ed allocations). */
  anon: number;
  /** Anonymous mappings of 64 MiB or more: other threads' malloc arenas. */
  anonBig: number;
  /** File-backed mappings: code and libraries. */
  file: number;
}

/** RSS by kind of mapping from /proc/<pid>/smaps (any process, the same way for every system). */
export function smapsRss(pid: number | 'self' = 'self'): SmapsRss {
  const out: SmapsRss = { brk: 0, anon: 0, anonBig: 0, file: 0 };
  let kind: keyof SmapsRss = 'anon';
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      const size = Number.parseInt(head[2]!, 16) - Number.parseInt(head[1]!, 16);
      const path = head[3] ?? '';
      kind = path === '[heap]' ? 'brk' : path === '' ? (size >= 64 << 20 ? 'anonBig' : 'anon') : 'file';
      continue;
    }
    if (line.startsWith('Rss:')) out[kind] += Number(line.split(/\s+/)[1]) * 1024;
  }
  return out;
}
