/**
 * Room: bridge/history. History older than the bridge's own store, read back from InfluxDB with
 * InfluxQL over `GET /query` (issue 15): InfluxDB 1.x serves it natively, 2.x through its DBRP
 * mapping (every bucket has a virtual one named after it) and 3.x as its InfluxQL API, so one query
 * language reaches them all. (`@influxdata/influxdb-client`'s query API speaks Flux to
 * `/api/v2/query` only, which 1.x and 3.x do not serve; a plain `fetch` is all `/query` needs.)
 *
 * What the bridge wrote (contract §4) is read back in the store's shapes (downsample.ts):
 * - downsampled: `SELECT mean(*), min(*), max(*), count(*) FROM telemetry WHERE device_id = 'D'
 *   AND time >= F AND time <= T GROUP BY time(<step>ms) fill(none)` — epoch-aligned buckets, as the
 *   store makes them, so the two sources' buckets line up;
 * - raw: `SELECT * …` (numeric columns are the values, string columns the tags: device_id, labels);
 * - status: `SELECT online, firmware FROM device_status …`.
 * The statements go in one request; `epoch=ms` gives times as Unix ms.
 */
import type { InfluxConfig } from '../../config.js';
import { ERROR_CODES, TelebridgeError } from '../../errors.js';
import type { BucketSeries, RawSeries } from './downsample.js';
import type { StatusPoint } from './series.js';

export interface InfluxRangeQuery {
  readonly device: string;
  /** Unix ms, inclusive. */
  readonly from: number;
  readonly to: number;
  /** Bucket width, ms; undefined: raw readings. */
  readonly step: number | undefined;
}

export interface InfluxRange {
  readonly t: number[];
  readonly series: Record<string, BucketSeries | RawSeries>;
  readonly status: StatusPoint[];
}

interface QueryResult {
  results?: {
    statement_id: number;
    error?: string;
    series?: { name: string; columns: string[]; values: unknown[][] }[];
  }[];
  error?: string;
}

/** Status changes read back at most (a device flapping all day). */
const MAX_STATUS = 10_000;
const AGGREGATES = ['mean', 'min', 'max', 'count'] as const;

/** An InfluxQL string literal. */
function literal(text: string): string {
  return `'${text.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

export class InfluxHistory {
  private readonly url: URL;
  private readonly headers: Record<string, string> = { accept: 'application/json' };

  constructor(
    private readonly config: InfluxConfig,
    private readonly limits: { readonly maxRawRows: number },
  ) {
    this.url = new URL('/query', config.url);
    if (config.api === 'v1') {
      this.url.searchParams.set('db', config.database);
      if (config.retentionPolicy) this.url.searchParams.set('rp', config.retentionPolicy);
      if (config.username !== undefined) {
        this.headers['authorization'] =
          `Basic ${Buffer.from(`${config.username}:${config.password ?? ''}`).toString('base64')}`;
      }
    } else {
      // 2.x: the bucket's DBRP mapping; 3.x: the database of that name.
      this.url.searchParams.set('db', config.bucket);
      if (config.token) this.headers['authorization'] = `Token ${config.token}`;
    }
    this.url.searchParams.set('epoch', 'ms');
  }

  /**
   * One device's readings (and status changes) in [from, to].
   * @throws E_HISTORY_LIMIT past maxRawRows raw readings; E_STORAGE when InfluxDB does not answer
   */
  async range(q: InfluxRangeQuery): Promise<InfluxRange> {
    const where = `WHERE "device_id" = ${literal(q.device)} AND time >= ${Math.floor(q.from)}ms AND time <= ${Math.floor(q.to)}ms`;
    const telemetry =
      q.step === undefined
        ? `SELECT * FROM "telemetry" ${where} LIMIT ${this.limits.maxRawRows + 1}`
        : `SELECT ${AGGREGATES.map((a) => `${a}(*)`).join(', ')} FROM "telemetry" ${where} GROUP BY time(${q.step}ms) fill(none)`;
    const status = `SELECT "online", "firmware" FROM "device_status" ${where} LIMIT ${MAX_STATUS}`;
    const [rows, changes] = await this.query(`${telemetry}; ${status}`);
    const out = q.step === undefined ? this.raw(rows) : buckets(rows);
    return { ...out, status: statusPoints(changes) };
  }

  private async query(text: string): Promise<({ columns: string[]; values: unknown[][] } | undefined)[]> {
    const url = new URL(this.url);
    url.searchParams.set('q', text);
    let body: QueryResult;
    try {
      const res = await fetch(url, {
        headers: this.headers,
        signal: AbortSignal.timeout(this.config.timeoutMs),
      });
      const raw = await res.text();
      if (!res.ok) throw new Error(`HTTP ${res.status} ${raw.slice(0, 200)}`);
      body = JSON.parse(raw) as QueryResult;
    } catch (err) {
      throw new TelebridgeError(ERROR_CODES.storage, `InfluxDB /query: ${(err as Error).message}`, {
        cause: err,
      });
    }
    if (body.error) throw new TelebridgeError(ERROR_CODES.storage, `InfluxDB /query: ${body.error}`);
    return (body.results ?? []).map((r) => {
      if (r.error) throw new TelebridgeError(ERROR_CODES.storage, `InfluxDB /query: ${r.error}`);
      return r.series?.[0];
    });
  }

  private raw(rows: { columns: string[]; values: unknown[][] } | undefined): Omit<InfluxRange, 'status'> {
    const series: Record<string, RawSeries> = Object.create(null);
    if (!rows) return { t: [], series };
    if (rows.values.length > this.limits.maxRawRows) {
      throw new TelebridgeError(
        ERROR_CODES.historyLimit,
        `more than ${this.limits.maxRawRows} readings in the range: ask for a step (downsampling)`,
      );
    }
    const timeAt = rows.columns.indexOf('time');
    const t = rows.values.map((r) => Number(r[timeAt]));
    rows.columns.forEach((name, j) => {
      if (j === timeAt) return;
      // Fields are numbers; tags (device_id, labels) are strings.
      const column = rows.values.map((r) => r[j]);
      if (!column.every((v) => v === null || typeof v === 'number')) return;
      if (column.every((v) => v === null)) return;
      series[name] = { values: column as (number | null)[] };
    });
    return { t, series };
  }
}

/** `mean_x`, `min_x`, `max_x`, `count_x` columns → per value name {mean, min, max, count}. */
function buckets(rows: { columns: string[]; values: unknown[][] } | undefined): Omit<InfluxRange, 'status'> {
  const series: Record<string, BucketSeries> = Object.create(null);
  if (!rows) return { t: [], series };
  const timeAt = rows.columns.indexOf('time');
  const t = rows.values.map((r) => Number(r[timeAt]));
  rows.columns.forEach((column, j) => {
    const cut = column.indexOf('_');
    const aggregate = column.slice(0, cut) as (typeof AGGREGATES)[number];
    if (cut < 0 || !AGGREGATES.includes(aggregate)) return;
    const name = column.slice(cut + 1);
    let s = series[name];
    if (!s) {
      s = { mean: [], min: [], max: [], count: [] };
      series[name] = s;
    }
    const values = rows.values.map((r) => r[j]);
    if (aggregate === 'count') s.count.push(...values.map((v) => (typeof v === 'number' ? v : 0)));
    else s[aggregate].push(...values.map((v) => (typeof v === 'number' ? v : null)));
  });
  return { t, series };
}

function statusPoints(rows: { columns: string[]; values: unknown[][] } | undefined): StatusPoint[] {
  if (!rows) return [];
  const at = (name: string) => rows.columns.indexOf(name);
  const [time, online, firmware] = [at('time'), at('online'), at('firmware')];
  return rows.values.map((r) => ({
    time: Number(r[time]),
    state: r[online] === true ? 'online' : r[online] === false ? 'offline' : 'unspecified',
    firmware: typeof r[firmware] === 'string' ? (r[firmware] as string) : '',
  }));
}
