/**
 * Per-device chart history, DOM-free: aligned columns as uPlot wants them (x = Unix seconds, one
 * column a metric, null where a sample lacked that metric). Bounded: `maxPoints` a device and
 * `maxMetrics` metrics a device; the oldest point goes first.
 */

export interface DeviceHistory {
  /** Unix seconds. */
  readonly times: number[];
  /** Metric name → values aligned with `times`. */
  readonly series: Map<string, (number | null)[]>;
  /** Bumped on every change, so a renderer knows when to redraw. */
  version: number;
}

export class HistoryStore {
  private readonly devices = new Map<string, DeviceHistory>();

  constructor(
    readonly maxPoints = 300,
    readonly maxMetrics = 16,
    readonly maxDevices = 10_000,
  ) {}

  get(device: string): DeviceHistory | undefined {
    return this.devices.get(device);
  }

  /** Adds one sample. Out-of-order samples (older than the newest kept) are dropped: a chart is a line. */
  add(device: string, timeMs: number, values: Readonly<Record<string, number>>): void {
    let h = this.devices.get(device);
    if (!h) {
      if (this.devices.size >= this.maxDevices) return;
      h = { times: [], series: new Map(), version: 0 };
      this.devices.set(device, h);
    }
    const t = timeMs / 1000;
    const last = h.times.at(-1);
    if (last !== undefined && t < last) return;
    for (const name of Object.keys(values)) {
      if (!h.series.has(name) && h.series.size < this.maxMetrics) {
        h.series.set(name, new Array<number | null>(h.times.length).fill(null));
      }
    }
    h.times.push(t);
    for (const [name, column] of h.series) column.push(values[name] ?? null);
    if (h.times.length > this.maxPoints) {
      h.times.shift();
      for (const column of h.series.values()) column.shift();
    }
    h.version++;
  }

  /** Forget everything (the view was replaced after a gap). */
  clear(): void {
    this.devices.clear();
  }
}
