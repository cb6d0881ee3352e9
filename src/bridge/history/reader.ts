/**
 * Room: bridge/history. One read path for a device's history over a time window, whatever holds it:
 * the bridge's own store for what arrived while it kept it, InfluxDB (when configured) for what is
 * older. `/api/history` and `/live`'s `history` both read through here.
 *
 * ```
 *   from ─────────────── cut ──────────────────────── to
 *   │ InfluxDB (/query)  │ store (store.range)          │     cut = heldSince,
 *   └────────────────────┴──────────────────────────────┘     aligned up to a bucket edge
 * ```
 * The store holds every event that arrived since `heldSince` (retention dropped what came before;
 * a fresh store: since it opened), so it answers for samples timed from then on, and InfluxDB, where
 * older samples were written long ago, answers for the time before. (The one sample this misses: one
 * timed after the cut that arrived before it, from a device whose clock runs ahead — at most
 * the 5 minutes of lead validation allows, at the cut only. Moving the cut 5 minutes later instead would
 * ask InfluxDB for readings it may not have written yet whenever the store is fresh.) With a step
 * the cut is moved up to a bucket edge, so no bucket is split between the two sources (both make
 * the same epoch-aligned buckets). Without InfluxDB, or when it fails, the answer holds what the
 * store has and says from when it is complete (`completeFrom`).
 */
import { ERROR_CODES, TelebridgeError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { BucketSeries, RawSeries } from './downsample.js';
import {
  checkRange,
  DEFAULT_HISTORY_LIMITS,
  type DevicesQuery,
  type HistoryLimits,
  type RangeQuery,
} from './engine.js';
import type { InfluxHistory } from './influx-query.js';
import type { HistoryKey } from './key.js';
import type { StatusPoint } from './series.js';
import type { HistoryStore } from './store.js';

/** A device's history over a window, as `/api/history` and `/live` send it. */
export interface HistoryAnswer {
  readonly device: string;
  /** The window, Unix ms, inclusive. */
  readonly from: number;
  readonly to: number;
  /** Bucket width, ms; null: raw readings. */
  readonly step: number | null;
  /** Bucket start times (downsampled) or reading times (raw), ascending. */
  readonly t: number[];
  readonly series: Record<string, BucketSeries | RawSeries>;
  readonly status: StatusPoint[];
  /** The newest key the store's part reflects (the `/live` seam); undefined without a store. */
  readonly asOf: HistoryKey | undefined;
  /** Undefined when the whole window was read; else the answer is complete from this time on. */
  readonly completeFrom: number | undefined;
}

export interface HistoryReaderOptions {
  readonly store?: HistoryStore | undefined;
  readonly influx?: InfluxHistory | undefined;
  readonly limits?: Partial<HistoryLimits>;
  readonly log: Logger;
}

type Part = Pick<HistoryAnswer, 't' | 'series' | 'status'>;

export class HistoryReader {
  readonly limits: HistoryLimits;
  readonly store: HistoryStore | undefined;
  private readonly influx: InfluxHistory | undefined;
  private failureLogged = false;

  constructor(private readonly options: HistoryReaderOptions) {
    this.store = options.store;
    this.influx = options.influx;
    this.limits = { ...DEFAULT_HISTORY_LIMITS, ...options.limits };
  }

  /** False when neither a store nor InfluxDB is there to read. */
  get available(): boolean {
    return this.store !== undefined || this.influx !== undefined;
  }

  /**
   * One device's readings and status changes in [from, to], raw or downsampled.
   * @throws E_HISTORY_RANGE / E_HISTORY_LIMIT on a bad query; E_STORAGE when no source answered
   */
  async range(q: RangeQuery): Promise<HistoryAnswer> {
    const step = checkRange(q, this.limits);
    const { device, from, to } = q;
    const base = { device, from, to, step: step ?? null };
    if (!this.store) {
      if (!this.influx) throw new TelebridgeError(ERROR_CODES.storage, 'history is off on this bridge');
      const old = await this.influx.range({ device, from, to, step });
      return { ...base, ...old, asOf: undefined, completeFrom: undefined };
    }
    const held = await this.store.range({ device, from, to, ...(step !== undefined ? { step } : {}) });
    const cut = held.heldSince;
    if (from >= cut) return { ...base, ...part(held), asOf: held.asOf, completeFrom: undefined };
    if (!this.influx) return { ...base, ...part(held), asOf: held.asOf, completeFrom: cut };
    const edge = step === undefined ? cut : Math.ceil(cut / step) * step;
    let old: Part;
    try {
      old = await this.influx.range({ device, from, to: Math.min(to, edge - 1), step });
      this.failureLogged = false;
    } catch (err) {
      if ((err as TelebridgeError).code !== ERROR_CODES.storage) throw err;
      if (!this.failureLogged) {
        this.failureLogged = true;
        this.options.log.warn(
          { err: (err as Error).message },
          'history: InfluxDB did not answer; answers hold what the bridge kept',
        );
      }
      return { ...base, ...part(held), asOf: held.asOf, completeFrom: cut };
    }
    const merged = concat(old, since(held, edge), step !== undefined);
    if (step === undefined && merged.t.length > this.limits.maxRawRows) {
      throw new TelebridgeError(
        ERROR_CODES.historyLimit,
        `more than ${this.limits.maxRawRows} readings in the range: ask for a step (downsampling)`,
      );
    }
    return { ...base, ...merged, asOf: held.asOf, completeFrom: undefined };
  }

  /** The feeds with history in a window (the store's; InfluxDB is asked per device only). */
  async feeds(q: DevicesQuery): Promise<string[]> {
    return this.store ? this.store.devices(q) : [];
  }
}

function part(r: Part): Part {
  return { t: r.t, series: r.series, status: r.status };
}

/** The part of `r` from time `edge` on (its times are ascending). */
function since(r: Part, edge: number): Part {
  let i = 0;
  while (i < r.t.length && r.t[i]! < edge) i++;
  const series: Record<string, BucketSeries | RawSeries> = Object.create(null);
  for (const name of Object.keys(r.series)) {
    const s = r.series[name]!;
    series[name] =
      'values' in s
        ? { values: s.values.slice(i) }
        : { mean: s.mean.slice(i), min: s.min.slice(i), max: s.max.slice(i), count: s.count.slice(i) };
  }
  return { t: r.t.slice(i), series, status: r.status.filter((p) => p.time >= edge) };
}

/** `a` then `b` (every time of `a` before every time of `b`); a value missing on one side is null. */
function concat(a: Part, b: Part, bucketed: boolean): Part {
  const names = new Set([...Object.keys(a.series), ...Object.keys(b.series)]);
  const series: Record<string, BucketSeries | RawSeries> = Object.create(null);
  const nulls = (n: number) => new Array<number | null>(n).fill(null);
  const zeros = (n: number) => new Array<number>(n).fill(0);
  for (const name of names) {
    const x = Object.hasOwn(a.series, name) ? a.series[name] : undefined;
    const y = Object.hasOwn(b.series, name) ? b.series[name] : undefined;
    if (bucketed) {
      const bx = x as BucketSeries | undefined;
      const by = y as BucketSeries | undefined;
      const pick = (s: BucketSeries | undefined, k: 'mean' | 'min' | 'max', n: number) => s?.[k] ?? nulls(n);
      series[name] = {
        mean: [...pick(bx, 'mean', a.t.length), ...pick(by, 'mean', b.t.length)],
        min: [...pick(bx, 'min', a.t.length), ...pick(by, 'min', b.t.length)],
        max: [...pick(bx, 'max', a.t.length), ...pick(by, 'max', b.t.length)],
        count: [...(bx?.count ?? zeros(a.t.length)), ...(by?.count ?? zeros(b.t.length))],
      };
    } else {
      const rx = x as RawSeries | undefined;
      const ry = y as RawSeries | undefined;
      series[name] = { values: [...(rx?.values ?? nulls(a.t.length)), ...(ry?.values ?? nulls(b.t.length))] };
    }
  }
  return { t: [...a.t, ...b.t], series, status: [...a.status, ...b.status] };
}
