/**
 * Room: bridge/storage. The bridge's own health figures as InfluxDB line protocol, so the bundled Grafana shows the bridge
 * from the same database as the telemetry (no Prometheus needed). The composition root calls
 * `lines()` every `INFLUX_SELF_METRICS_MS` and appends the result to the spool like any reading.
 *
 * Written (timestamps in ms, every field a float so types never conflict across versions):
 * - `bridge_health,instance=<id>` — one point per call:
 *   `connections` (all listeners) and `connections_<listener>`; `live_clients`;
 *   `messages` (all topic kinds) and `messages_<kind>`; `rejected`; `samples_received`;
 *   `samples_rejected`; `points_written`; `dead_lettered`; `write_failures`; `backlog`;
 *   `spool_bytes` — counters are running totals (Grafana takes `non_negative_derivative`), gauges
 *   are current values;
 *   `write_seconds_mean`, `e2e_latency_mean_s`, `e2e_latency_p99_s` — over the time since the previous
 *   call (absent when nothing was observed in it; p99 is the upper bound of the histogram bucket);
 *   `uptime_s`, `rss_bytes`, `heap_used_bytes` of the process.
 * - `bridge_rejections,instance=<id>,reason=<reason>` with field `total` (running total), one point
 *   per reason seen so far.
 */
import type { Metrics } from '../../metrics.js';

export interface SelfMetricsOptions {
  /** Tag `instance`: tells bridges apart in scale-out. Default: the host name. */
  readonly instance: string;
  /** Measurement of the health point. Default `bridge_health`. */
  readonly measurement?: string;
  /** Measurement of the per-reason rejection totals. Default `bridge_rejections`. */
  readonly rejectionsMeasurement?: string;
}

interface HistogramState {
  sum: number;
  count: number;
  buckets: Map<string, number>;
}

/** What `prom-client`'s `get()` returns, reduced to what is read here. */
interface MetricSnapshot {
  values: Array<{ value: number; labels: Record<string, string | number | undefined>; metricName?: string }>;
}

/**
 * Builds the self-metrics lines from a metrics registry; keeps the previous histogram totals so the
 * latency figures describe the last interval, not the whole uptime.
 * @example
 * const self = new SelfMetrics(metrics, { instance: hostname() });
 * setInterval(async () => storage.append(await self.lines()), config.influx.selfMetricsMs);
 */
export class SelfMetrics {
  private readonly measurement: string;
  private readonly rejectionsMeasurement: string;
  private readonly instanceTag: string;
  private previous = new Map<string, HistogramState>();

  constructor(
    private readonly metrics: Metrics,
    options: SelfMetricsOptions,
  ) {
    this.measurement = escapeMeasurement(options.measurement ?? 'bridge_health');
    this.rejectionsMeasurement = escapeMeasurement(options.rejectionsMeasurement ?? 'bridge_rejections');
    this.instanceTag = `instance=${escapeTag(options.instance || 'unknown')}`;
  }

  /** The lines for one instant, `nowMs` (Unix ms) as their timestamp. Never empty. */
  async lines(nowMs: number = Date.now()): Promise<string[]> {
    const m = this.metrics;
    const [connections, messages, rejected, samplesReceived, samplesRejected, pointsWritten, deadLettered] =
      await Promise.all([
        snapshot(m.connections),
        snapshot(m.messages),
        snapshot(m.rejected),
        snapshot(m.samplesReceived),
        snapshot(m.samplesRejected),
        snapshot(m.pointsWritten),
        snapshot(m.deadLettered),
      ]);
    const [writeFailures, backlog, spoolBytes, liveClients, writeSeconds, e2e] = await Promise.all([
      snapshot(m.writeFailures),
      snapshot(m.backlog),
      snapshot(m.spoolBytes),
      snapshot(m.liveClients),
      snapshot(m.writeSeconds),
      snapshot(m.e2eLatency),
    ]);

    const fields = new Map<string, number>();
    fields.set('connections', total(connections));
    for (const [listener, value] of byLabel(connections, 'listener'))
      fields.set(`connections_${listener}`, value);
    fields.set('live_clients', total(liveClients));
    fields.set('messages', total(messages));
    for (const [kind, value] of byLabel(messages, 'topic_kind')) fields.set(`messages_${kind}`, value);
    fields.set('rejected', total(rejected));
    fields.set('samples_received', total(samplesReceived));
    fields.set('samples_rejected', total(samplesRejected));
    fields.set('points_written', total(pointsWritten));
    fields.set('dead_lettered', total(deadLettered));
    fields.set('write_failures', total(writeFailures));
    fields.set('backlog', total(backlog));
    fields.set('spool_bytes', total(spoolBytes));

    const write = this.interval('write', writeSeconds);
    if (write.count > 0) fields.set('write_seconds_mean', write.sum / write.count);
    const latency = this.interval('e2e', e2e);
    if (latency.count > 0) {
      fields.set('e2e_latency_mean_s', latency.sum / latency.count);
      const p99 = quantileUpperBound(latency, 0.99);
      if (p99 !== undefined) fields.set('e2e_latency_p99_s', p99);
    }

    const memory = process.memoryUsage();
    fields.set('uptime_s', process.uptime());
    fields.set('rss_bytes', memory.rss);
    fields.set('heap_used_bytes', memory.heapUsed);

    const out = [`${this.measurement},${this.instanceTag} ${formatFields(fields)} ${Math.trunc(nowMs)}`];
    for (const [reason, value] of byLabel(rejected, 'reason')) {
      out.push(
        `${this.rejectionsMeasurement},${this.instanceTag},reason=${escapeTag(reason)} total=${formatNumber(value)} ${Math.trunc(nowMs)}`,
      );
    }
    return out;
  }

  /** The histogram's sum, count and buckets since the previous call (all of it on the first). */
  private interval(key: string, histogram: MetricSnapshot): HistogramState {
    const now: HistogramState = { sum: 0, count: 0, buckets: new Map() };
    for (const v of histogram.values) {
      if (v.metricName?.endsWith('_sum')) now.sum += v.value;
      else if (v.metricName?.endsWith('_count')) now.count += v.value;
      else if (v.metricName?.endsWith('_bucket')) {
        const le = String(v.labels['le']);
        now.buckets.set(le, (now.buckets.get(le) ?? 0) + v.value);
      }
    }
    const before = this.previous.get(key);
    this.previous.set(key, now);
    if (!before || now.count < before.count) return now; // first call, or the registry was reset
    const buckets = new Map<string, number>();
    for (const [le, value] of now.buckets) buckets.set(le, value - (before.buckets.get(le) ?? 0));
    return { sum: now.sum - before.sum, count: now.count - before.count, buckets };
  }
}

async function snapshot(metric: { get(): Promise<unknown> | unknown }): Promise<MetricSnapshot> {
  return (await metric.get()) as MetricSnapshot;
}

function total(s: MetricSnapshot): number {
  let sum = 0;
  for (const v of s.values) sum += v.value;
  return sum;
}

function byLabel(s: MetricSnapshot, label: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const v of s.values) {
    const key = v.labels[label];
    if (key === undefined) continue;
    // Field and tag names stay within the characters every InfluxDB version and Grafana accept.
    const name = String(key).replace(/[^A-Za-z0-9_.-]/g, '_');
    out.set(name, (out.get(name) ?? 0) + v.value);
  }
  return out;
}

/** Smallest bucket bound holding `q` of the observations (cumulative buckets); undefined for +Inf. */
function quantileUpperBound(h: HistogramState, q: number): number | undefined {
  const target = h.count * q;
  const bounds = [...h.buckets.entries()]
    .filter(([le]) => le !== '+Inf')
    .map(([le, n]) => [Number(le), n] as const)
    .sort((a, b) => a[0] - b[0]);
  for (const [le, n] of bounds) if (n >= target) return le;
  return undefined;
}

function formatFields(fields: Map<string, number>): string {
  const parts: string[] = [];
  for (const [name, value] of fields) {
    if (Number.isFinite(value)) parts.push(`${escapeTag(name)}=${formatNumber(value)}`);
  }
  return parts.join(',');
}

/** A float field: InfluxDB parses `1` as a float too, so one type per field forever. */
function formatNumber(value: number): string {
  return Number.isFinite(value) ? String(value) : '0';
}

/** Tag keys, tag values and field keys: escape comma, equals sign and space. */
function escapeTag(text: string): string {
  return text.replace(/[,= \\]/g, (c) => `\\${c}`).replace(/\n/g, '\\n');
}

function escapeMeasurement(text: string): string {
  return text.replace(/[, \\]/g, (c) => `\\${c}`);
}
