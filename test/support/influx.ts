/**
 * Real time-series servers for storage tests, each on a free loopback port with every file in a temp
 * dir: InfluxDB 1.6 (`influxd`, the v1 `/write` API, InfluxQL read-back) and VictoriaMetrics (serves
 * `/api/v2/write` and `/write`; read back with `/api/v1/export`). Plus a fault proxy that the test
 * controls, to make a healthy server look down, overloaded or rate-limited.
 */
import { writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { freePort, httpOk, type RunningProcess, requireBinary, startProcess, tempDir } from './services.js';

export interface InfluxdServer {
  readonly url: string;
  readonly port: number;
  readonly process: RunningProcess;
  /** Runs InfluxQL through `/query` (POST, so CREATE/DROP work too); returns the parsed JSON. */
  query(q: string, db?: string): Promise<InfluxQueryResult>;
  /** The rows of the first series of the first statement as objects (column → value). */
  rows(q: string, db?: string): Promise<Record<string, unknown>[]>;
  stop(): Promise<void>;
}

export interface InfluxQueryResult {
  results: {
    statement_id: number;
    error?: string;
    series?: { name: string; columns: string[]; values: unknown[][] }[];
  }[];
}

/** `{ skip }` when influxd is missing (and CI is not set), else the server. */
export async function startInfluxd(
  options: { database?: string; port?: number; dir?: string } = {},
): Promise<InfluxdServer | { skip: string }> {
  const bin = requireBinary('influxd', 'influxdb');
  if (!bin.path) return { skip: bin.skip ?? 'influxd missing' };
  const dir = options.dir ?? tempDir('influxd');
  const port = options.port ?? (await freePort());
  const rpcPort = await freePort();
  const conf = join(dir, 'influxdb.conf');
  writeFileSync(
    conf,
    `reporting-disabled = true
bind-address = "127.0.0.1:${rpcPort}"
[meta]
  dir = "${join(dir, 'meta')}"
[data]
  dir = "${join(dir, 'data')}"
  wal-dir = "${join(dir, 'wal')}"
  query-log-enabled = false
  index-version = "inmem"
[coordinator]
  log-queries-after = "0s"
[monitor]
  store-enabled = false
[subscriber]
  enabled = false
[continuous_queries]
  enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:${port}"
  log-enabled = false
  max-body-size = 25000000
[logging]
  level = "warn"
`,
  );
  const url = `http://127.0.0.1:${port}`;
  const proc = await startProcess({
    name: 'influxd',
    command: bin.path,
    args: ['run', '-config', conf],
    dir,
    keepDir: options.dir !== undefined,
    ready: async () =>
      (await fetch(`${url}/ping`)
        .then((r) => r.status === 204)
        .catch(() => false)) as boolean,
  });
  const query = async (q: string, db?: string): Promise<InfluxQueryResult> => {
    const body = new URLSearchParams({ q, ...(db ? { db } : {}), epoch: 'ms' });
    const res = await fetch(`${url}/query`, { method: 'POST', body });
    const json = (await res.json()) as InfluxQueryResult;
    const error = json.results?.find((r) => r.error)?.error;
    if (!res.ok || error) throw new Error(`InfluxQL ${q}: ${res.status} ${error ?? JSON.stringify(json)}`);
    return json;
  };
  if (options.database) await query(`CREATE DATABASE "${options.database}"`);
  return {
    url,
    port,
    process: proc,
    query,
    async rows(q, db) {
      const series = (await query(q, db)).results[0]?.series?.[0];
      if (!series) return [];
      return series.values.map((v) => Object.fromEntries(series.columns.map((c, i) => [c, v[i]])));
    },
    stop: () => proc.stop(),
  };
}

export interface VictoriaServer {
  readonly url: string;
  readonly process: RunningProcess;
  /** Every series whose name matches the regexp, as exported by `/api/v1/export` (after a flush). */
  exportSeries(nameRegexp: string): Promise<VmSeries[]>;
  stop(): Promise<void>;
}

export interface VmSeries {
  metric: Record<string, string>;
  values: number[];
  timestamps: number[];
}

export async function startVictoria(): Promise<VictoriaServer | { skip: string }> {
  const bin = requireBinary('victoria-metrics', 'victoria-metrics');
  if (!bin.path) return { skip: bin.skip ?? 'victoria-metrics missing' };
  const dir = tempDir('vm');
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const proc = await startProcess({
    name: 'victoria-metrics',
    command: bin.path,
    args: [
      `-storageDataPath=${join(dir, 'data')}`,
      `-httpListenAddr=127.0.0.1:${port}`,
      '-retentionPeriod=100y',
      '-loggerLevel=ERROR',
      '-search.disableCache',
    ],
    dir,
    ready: () => httpOk(`${url}/health`),
  });
  return {
    url,
    process: proc,
    async exportSeries(nameRegexp) {
      await fetch(`${url}/internal/force_flush`).then((r) => r.arrayBuffer());
      const params = new URLSearchParams({ 'match[]': `{__name__=~"${nameRegexp}"}`, start: '0' });
      const res = await fetch(`${url}/api/v1/export?${params}`);
      const text = await res.text();
      if (!res.ok) throw new Error(`export: ${res.status} ${text}`);
      return text
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as VmSeries);
    },
    stop: () => proc.stop(),
  };
}

/** What the fault proxy does with the next requests. */
export type FaultMode =
  | { kind: 'pass' }
  /** Answer `status` (with `headers`) instead of forwarding, `times` times (default: until changed). */
  | { kind: 'status'; status: number; headers?: Record<string, string>; body?: string; times?: number }
  /** Accept the connection and never answer (a hung server → client timeout). */
  | { kind: 'hang'; times?: number };

export interface ProxyRequest {
  readonly at: number;
  readonly path: string;
  readonly status: number;
  readonly bodyBytes: number;
}

export interface FaultProxy {
  readonly url: string;
  setMode(mode: FaultMode): void;
  /** Every request seen, with the status the client got. */
  readonly requests: ProxyRequest[];
  close(): Promise<void>;
}

/** A small HTTP proxy in front of `target` whose failures the test switches on and off. */
export async function startFaultProxy(target: string): Promise<FaultProxy> {
  let mode: FaultMode = { kind: 'pass' };
  let remaining = Number.POSITIVE_INFINITY;
  const requests: ProxyRequest[] = [];
  const hung = new Set<ServerResponse>();
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const record = (status: number) =>
        requests.push({ at: Date.now(), path: req.url ?? '', status, bodyBytes: body.length });
      const current = mode;
      if (current.kind !== 'pass' && remaining > 0) {
        remaining--;
        if (remaining === 0) mode = { kind: 'pass' };
        if (current.kind === 'hang') {
          hung.add(res);
          record(0);
          return;
        }
        record(current.status);
        res.writeHead(current.status, { 'content-type': 'application/json', ...current.headers });
        res.end(current.body ?? JSON.stringify({ error: `fault proxy: ${current.status}` }));
        return;
      }
      const t = new URL(target);
      const fwd = request(
        {
          host: t.hostname,
          port: t.port,
          method: req.method,
          path: req.url,
          headers: { ...req.headers, host: t.host },
        },
        (up) => {
          record(up.statusCode ?? 0);
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      fwd.on('error', () => {
        record(502);
        res.writeHead(502).end();
      });
      fwd.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    setMode(next) {
      mode = next;
      remaining = next.kind !== 'pass' && next.times !== undefined ? next.times : Number.POSITIVE_INFINITY;
      if (next.kind === 'pass') {
        for (const res of hung) res.destroy();
        hung.clear();
      }
    },
    async close() {
      for (const res of hung) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Log lines captured from a pino logger (JSON objects), for asserting "one line per burst". */
export function captureLog(): { stream: NodeJS.WritableStream; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n'))
        if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { stream, lines };
}

/** The loss ledger's two sides from a metrics registry (see src/bridge/storage/open-storage.ts). */
export async function ledger(registry: { getSingleMetricAsString(name: string): Promise<string> }) {
  const v = async (name: string) => {
    const text = await registry.getSingleMetricAsString(name);
    const m = /\s(-?[\d.e+]+)\s*$/m.exec(text.trim());
    return m ? Number(m[1]) : 0;
  };
  const received = await v('bridge_samples_received_total');
  const accounted =
    (await v('bridge_influx_points_written_total')) +
    (await v('bridge_samples_rejected_total')) +
    (await v('bridge_dead_lettered_points_total')) +
    (await v('bridge_backlog_points'));
  return { received, accounted, written: await v('bridge_influx_points_written_total') };
}
