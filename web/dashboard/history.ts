/**
 * Per-device chart history, DOM-free: aligned columns as uPlot wants them (x = Unix seconds, one
 * column a metric, null where a sample lacked that metric). A device's chart starts from the
 * bridge's history of the window shown (`load`, from `/api/history`), and live samples are appended
 * after it. Bounded: `maxPoints` a device and `maxMetrics` metrics a device; the oldest point goes
 * first, and so does anything older than the window.
 */
import type { HistoryData } from '../client/protocol.js';

export interface DeviceHistory {
  /** Unix seconds. */
  readonly times: number[];
  /** Metric name → values aligned with `times`. */
  readonly series: Map<string, (number | null)[]>;
  /** Bumped on every change, so a renderer knows when to redraw. */
  version: number;
  /** Live samples appended since the last `load` (the owner reloads the downsampled history past a few hundred). */
  liveSinceLoad: number;
}

export class HistoryStore {
  private readonly devices = new Map<string, DeviceHistory>();
  /** Samples older than this many ms before the newest are dropped (the window shown). */
  private windowMs = Number.POSITIVE_INFINITY;

  constructor(
    readonly maxPoints = 3000,
    readonly maxMetrics = 16,
    readonly maxDevices = 10_000,
  ) {}

  get(device: string): DeviceHistory | undefined {
    return this.devices.get(device);
  }

  /** The window charts show, ms: older points are dropped as new ones arrive. */
  setWindow(ms: number): void {
    this.windowMs = ms;
  }

  /** Adds one sample. Out-of-order samples (older than the newest kept) are dropped: a chart is a line. */
  add(device: string, timeMs: number, values: Readonly<Record<string, number>>): void {
    const h = this.device(device);
    if (!h) return;
    const t = timeMs / 1000;
    const last = h.times.at(-1);
    if (last !== undefined && t < last) return;
    this.push(h, t, values);
    h.liveSinceLoad++;
    this.trim(h);
    h.version++;
  }

  /**
   * Replaces a device's points by its history (bucket means when downsampled), keeping the live
   * samples timed after the window it answered for (`to`): they arrived while it was read. A live
   * sample inside the window is in the answer already (the bridge reads every reading it took
   * before the request), counted in its bucket: keeping it too would draw it twice. (Comparing with
   * the last point's time would not do: a bucket's time is its start, before the samples in it.)
   */
  load(data: HistoryData): void {
    const h = this.device(data.device);
    if (!h) return;
    const keep: { t: number; values: Record<string, number> }[] = [];
    for (let i = 0; i < h.times.length; i++) {
      const t = h.times[i]!;
      if (t * 1000 <= data.to) continue;
      const values: Record<string, number> = {};
      for (const [name, column] of h.series) {
        const v = column[i];
        if (v !== null && v !== undefined) values[name] = v;
      }
      keep.push({ t, values });
    }
    h.times.length = 0;
    h.series.clear();
    const names = Object.keys(data.series);
    for (let i = 0; i < data.t.length; i++) {
      const values: Record<string, number> = {};
      for (const name of names) {
        const s = data.series[name]!;
        const v = 'values' in s ? s.values[i] : s.mean[i];
        if (v !== null && v !== undefined) values[name] = v;
      }
      this.push(h, data.t[i]! / 1000, values);
    }
    for (const k of keep) this.push(h, k.t, k.values);
    h.liveSinceLoad = 0;
    this.trim(h);
    h.version++;
  }

  /** Forget everything (the view was replaced after a gap). */
  clear(): void {
    this.devices.clear();
  }

  private device(device: string): DeviceHistory | undefined {
    let h = this.devices.get(device);
    if (!h) {
      if (this.devices.size >= this.maxDevices) return undefined;
      h = { times: [], series: new Map(), version: 0, liveSinceLoad: 0 };
      this.devices.set(device, h);
    }
    return h;
  }

  private push(h: DeviceHistory, t: number, values: Readonly<Record<string, number>>): void {
    for (const name of Object.keys(values)) {
      if (!h.series.has(name) && h.series.size < this.maxMetrics) {
        h.series.set(name, new Array<number | null>(h.times.length).fill(null));
      }
    }
    h.times.push(t);
    for (const [name, column] of h.series) column.push(values[name] ?? null);
  }

  private trim(h: DeviceHistory): void {
    const newest = h.times.at(-1) ?? 0;
    const oldest = newest - this.windowMs / 1000;
    let drop = Math.max(0, h.times.length - this.maxPoints);
    while (drop < h.times.length && h.times[drop]! < oldest) drop++;
    if (drop === 0) return;
    h.times.splice(0, drop);
    for (const column of h.series.values()) column.splice(0, drop);
  }
}
