/**
 * Room: bridge/history. Range answers from a device's columns: bucketed (downsampled) or raw.
 *
 * Downsampling: buckets of `step` ms aligned to the Unix epoch (bucket k covers
 * [k·step, (k+1)·step)), as InfluxQL's `GROUP BY time(step)` does, so the same bucket has the same
 * value whichever window asked for it, and a chart beyond retention (InfluxDB) lines up with one
 * from the bridge. Per bucket and value name: mean, min, max and count of the samples that carry
 * that value; a point's time is its bucket's start. Mean with a min/max band is what time-series
 * charts draw (Grafana's min/max band); count tells sparse buckets apart. Buckets with no sample of
 * any value are left out; a value missing from a bucket that others have is null.
 */
import { ERROR_CODES, TelebridgeError } from '../../errors.js';

/** A device's telemetry rows in one partition: `columns[j][i]` is value `names[j]` of row i (NaN: none). */
export interface SeriesColumns {
  readonly count: number;
  readonly times: Float64Array;
  readonly names: readonly string[];
  readonly columns: readonly Float64Array[];
}

export interface BucketSeries {
  readonly mean: (number | null)[];
  readonly min: (number | null)[];
  readonly max: (number | null)[];
  readonly count: number[];
}

export interface RawSeries {
  readonly values: (number | null)[];
}

interface Accumulator {
  readonly sum: Float64Array;
  readonly min: Float64Array;
  readonly max: Float64Array;
  readonly n: Uint32Array;
}

function tooMany(what: string): TelebridgeError {
  return new TelebridgeError(ERROR_CODES.historyLimit, what);
}

/** Downsamples rows of [from, to] (inclusive) into buckets of `step` ms. */
export class Buckets {
  private readonly first: number;
  private readonly size: number;
  private readonly acc = new Map<string, Accumulator>();
  private bucketOf = new Int32Array(0);

  /**
   * @param maxCells bound on buckets × value names held (memory: 28 bytes a cell)
   * @throws E_HISTORY_LIMIT when the buckets alone pass maxCells
   */
  constructor(
    private readonly from: number,
    private readonly to: number,
    readonly step: number,
    private readonly maxCells: number,
  ) {
    this.first = Math.floor(from / step);
    this.size = Math.floor(to / step) - this.first + 1;
    if (this.size > maxCells) throw tooMany(`${this.size} buckets: more than ${maxCells}`);
  }

  add(rows: SeriesColumns): void {
    const { from, to, step, first } = this;
    if (this.bucketOf.length < rows.count) this.bucketOf = new Int32Array(rows.count);
    const bucketOf = this.bucketOf;
    const times = rows.times;
    let any = false;
    for (let i = 0; i < rows.count; i++) {
      const t = times[i]!;
      if (t >= from && t <= to) {
        bucketOf[i] = Math.floor(t / step) - first;
        any = true;
      } else bucketOf[i] = -1;
    }
    if (!any) return;
    for (let j = 0; j < rows.names.length; j++) {
      const column = rows.columns[j]!;
      const a = this.accumulator(rows.names[j]!);
      for (let i = 0; i < rows.count; i++) {
        const b = bucketOf[i]!;
        const v = column[i]!;
        if (b < 0 || Number.isNaN(v)) continue; // out of range, or NaN: this row has no such value
        a.sum[b]! += v;
        if (v < a.min[b]!) a.min[b] = v;
        if (v > a.max[b]!) a.max[b] = v;
        a.n[b]!++;
      }
    }
  }

  result(): { t: number[]; series: Record<string, BucketSeries> } {
    const used = new Uint8Array(this.size);
    for (const a of this.acc.values()) for (let b = 0; b < this.size; b++) if (a.n[b]! > 0) used[b] = 1;
    const t: number[] = [];
    for (let b = 0; b < this.size; b++) if (used[b]) t.push((this.first + b) * this.step);
    // No prototype: a value may be named `__proto__` (the name pattern allows it).
    const series: Record<string, BucketSeries> = Object.create(null);
    for (const [name, a] of this.acc) {
      const s: BucketSeries = { mean: [], min: [], max: [], count: [] };
      for (let b = 0; b < this.size; b++) {
        if (!used[b]) continue;
        const n = a.n[b]!;
        s.mean.push(n > 0 ? a.sum[b]! / n : null);
        s.min.push(n > 0 ? a.min[b]! : null);
        s.max.push(n > 0 ? a.max[b]! : null);
        s.count.push(n);
      }
      series[name] = s;
    }
    return { t, series };
  }

  private accumulator(name: string): Accumulator {
    let a = this.acc.get(name);
    if (!a) {
      if ((this.acc.size + 1) * this.size > this.maxCells) {
        throw tooMany(`${this.acc.size + 1} value names × ${this.size} buckets: more than ${this.maxCells}`);
      }
      a = {
        sum: new Float64Array(this.size),
        min: new Float64Array(this.size).fill(Number.POSITIVE_INFINITY),
        max: new Float64Array(this.size).fill(Number.NEGATIVE_INFINITY),
        n: new Uint32Array(this.size),
      };
      this.acc.set(name, a);
    }
    return a;
  }
}

/** Collects the raw rows of [from, to] (inclusive) from several partitions, ordered by time. */
export class RawRows {
  private readonly parts: { rows: SeriesColumns; picked: Int32Array }[] = [];
  private total = 0;
  private readonly names = new Set<string>();

  /** @throws E_HISTORY_LIMIT (from `add`) past maxRows rows or maxCells rows × value names */
  constructor(
    private readonly from: number,
    private readonly to: number,
    private readonly maxRows: number,
    private readonly maxCells: number,
  ) {}

  add(rows: SeriesColumns): void {
    const picked: number[] = [];
    for (let i = 0; i < rows.count; i++) {
      const t = rows.times[i]!;
      if (t >= this.from && t <= this.to) picked.push(i);
    }
    if (picked.length === 0) return;
    this.total += picked.length;
    for (const name of rows.names) this.names.add(name);
    if (this.total > this.maxRows) {
      throw tooMany(`more than ${this.maxRows} readings in the range: ask for a step (downsampling)`);
    }
    if (this.total * Math.max(1, this.names.size) > this.maxCells) {
      throw tooMany(
        `${this.total} readings × ${this.names.size} value names: more than ${this.maxCells}; ask for a step`,
      );
    }
    this.parts.push({ rows, picked: Int32Array.from(picked) });
  }

  result(): { t: number[]; series: Record<string, RawSeries> } {
    // Rows as (part, index) pairs ordered by time; a stable sort keeps arrival order for equal times.
    const order: [number, number][] = [];
    for (let p = 0; p < this.parts.length; p++) for (const i of this.parts[p]!.picked) order.push([p, i]);
    const timeOf = ([p, i]: [number, number]) => this.parts[p]!.rows.times[i]!;
    order.sort((a, b) => timeOf(a) - timeOf(b));
    const t = order.map(timeOf);
    const series: Record<string, RawSeries> = Object.create(null);
    for (const name of this.names) {
      const columnOf = this.parts.map((part) => {
        const j = part.rows.names.indexOf(name);
        return j >= 0 ? part.rows.columns[j] : undefined;
      });
      series[name] = {
        values: order.map(([p, i]) => {
          const v = columnOf[p]?.[i];
          return v === undefined || Number.isNaN(v) ? null : v;
        }),
      };
    }
    return { t, series };
  }
}
