/**
 * The real bridge as a child process, for tests that kill it: `node dist/src/main.js` when the build is
 * fresh (every `src/**.ts` older than its `.js`), else `node --import tsx src/main.ts`. It listens on
 * free loopback ports chosen here (so a restart can take the same ones) with a data dir that outlives
 * it; its JSON log lines are parsed as they come; `/metrics`, `/readyz` are read over HTTP. Stopped
 * only by its own PID: SIGTERM (graceful) or SIGKILL (crash).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { projectRoot } from '../../src/paths.js';
import { ledger } from './influx.js';
import { freePort, tempDir } from './services.js';
import { waitFor } from './wait.js';

/** The repository root (this file runs from test/support or dist/test/support). */
export const repoRoot = projectRoot;

/** True when dist/src holds a .js newer than every .ts of src/ (tests and declarations aside). */
function distIsFresh(root: string): boolean {
  const src = join(root, 'src');
  const stack = [src];
  while (stack.length > 0) {
    const dir = stack.pop() as string;
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) stack.push(path);
      else if (entry.name.endsWith('.ts') && !/\.(test|d)\.ts$/.test(entry.name)) {
        const js = join(root, 'dist', relative(root, path)).replace(/\.ts$/, '.js');
        if (!existsSync(js) || statSync(js).mtimeMs < statSync(path).mtimeMs) return false;
      }
    }
  }
  return true;
}

let cachedCommand: { args: string[]; built: boolean } | undefined;

/** The node arguments that run the bridge: the build when fresh, the sources through tsx otherwise. */
export function bridgeCommand(): { command: string; args: string[]; built: boolean } {
  if (!cachedCommand) {
    const root = repoRoot();
    cachedCommand = distIsFresh(root)
      ? { args: [join(root, 'dist', 'src', 'main.js')], built: true }
      : // tsx by its absolute URL: the child's working directory is a temporary one.
        { args: ['--import', import.meta.resolve('tsx'), join(root, 'src', 'main.ts')], built: false };
  }
  return { command: process.execPath, ...cachedCommand };
}

export interface BridgeExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** ms since the process was spawned */
  readonly at: number;
}

/** The loss ledger from one /metrics scrape (one consistent snapshot). */
export interface Ledger {
  readonly received: number;
  readonly accounted: number;
  readonly written: number;
  readonly rejected: number;
  readonly deadLettered: number;
  readonly backlog: number;
  readonly refused: number;
  readonly recovered: number;
}

export interface BridgeProcess {
  readonly pid: number;
  readonly ports: { readonly mqtt: number; readonly http: number };
  readonly dataDir: string;
  /** The environment given on top of the parent's (pass it back to `spawnBridge` to restart alike). */
  readonly env: Record<string, string>;
  readonly mqttUrl: string;
  /** JSON log lines (stdout) parsed so far. */
  readonly logs: Record<string, unknown>[];
  /** The last 20 kB of stderr and non-JSON stdout, for failure messages. */
  output(): string;
  readonly exited: Promise<BridgeExit>;
  readonly alive: boolean;
  url(path: string): string;
  metricsText(): Promise<string>;
  /** Sum of the series of `name` whose labels include `labels`; 0 when absent. */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  ledger(): Promise<Ledger>;
  readyz(): Promise<{ status: number; body: { status: string; reason?: string } }>;
  /** SIGKILL: a crash. Resolves on exit. */
  kill(): Promise<BridgeExit>;
  /** SIGTERM, then SIGKILL if still alive after `killAfterMs` (default 30 000). Resolves on exit. */
  terminate(killAfterMs?: number): Promise<BridgeExit>;
}

export interface SpawnBridgeOptions {
  /** On top of the defaults (free ports, data dir, JSON logs at info, no self-metrics). */
  readonly env?: Record<string, string>;
  /** Kept after the process ends; the caller removes it. Default: a new temp dir. */
  readonly dataDir?: string;
  /** Default: free ports picked now. Pass the ports of an earlier process to restart on them. */
  readonly ports?: { mqtt: number; http: number };
  /** How long /healthz may take to answer, ms. Default 30 000 (tsx compiles on the fly). */
  readonly readyTimeoutMs?: number;
}

/** Parses Prometheus text: the series of `name` (exact metric name) with their labels and values. */
export function parseSeries(text: string, name: string): { labels: Record<string, string>; value: number }[] {
  const out: { labels: Record<string, string>; value: number }[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || line.startsWith('#')) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== ' ' && rest[0] !== '{') continue;
    const labels: Record<string, string> = {};
    let valuePart = rest;
    if (rest[0] === '{') {
      const end = rest.lastIndexOf('}');
      for (const m of rest.slice(1, end).matchAll(/([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
        labels[m[1] as string] = (m[2] as string).replace(/\\(.)/g, '$1');
      valuePart = rest.slice(end + 1);
    }
    const value = Number(valuePart.trim().split(/\s+/)[0]);
    if (!Number.isNaN(value)) out.push({ labels, value });
  }
  return out;
}

/**
 * Spawns the bridge and resolves once `/healthz` answers 200. Throws (after killing it) when it
 * exits or does not answer in time.
 */
export async function spawnBridge(options: SpawnBridgeOptions = {}): Promise<BridgeProcess> {
  const dataDir = options.dataDir ?? tempDir('bridge-proc');
  const ports = options.ports ?? { mqtt: await freePort(), http: await freePort() };
  const env: Record<string, string> = {
    BRIDGE_HOST: '127.0.0.1',
    BRIDGE_MQTT_PORT: String(ports.mqtt),
    BRIDGE_HTTP_PORT: String(ports.http),
    BRIDGE_MQTTS_PORT: '0',
    BRIDGE_DATA_DIR: dataDir,
    INFLUX_SELF_METRICS_MS: '0',
    LOG_LEVEL: 'info',
    ...options.env,
  };
  const { command, args } = bridgeCommand();
  const started = Date.now();
  const child: ChildProcess = spawn(command, args, {
    cwd: repoRoot(),
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Record<string, unknown>[] = [];
  let other = '';
  let partial = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    const text = partial + chunk.toString();
    const lines = text.split('\n');
    partial = lines.pop() ?? '';
    for (const l of lines) {
      if (!l) continue;
      try {
        logs.push(JSON.parse(l) as Record<string, unknown>);
      } catch {
        other = (other + l + '\n').slice(-20_000);
      }
    }
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    other = (other + chunk.toString()).slice(-20_000);
  });
  let alive = true;
  const exited = new Promise<BridgeExit>((resolve) =>
    child.once('exit', (code, signal) => {
      alive = false;
      resolve({ code, signal, at: Date.now() - started });
    }),
  );
  const base = `http://127.0.0.1:${ports.http}`;
  const signal = async (sig: NodeJS.Signals): Promise<BridgeExit> => {
    if (alive) child.kill(sig);
    return exited;
  };
  const metricsText = async () => {
    const res = await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(5000) });
    if (!res.ok) throw new Error(`/metrics: HTTP ${res.status}`);
    return res.text();
  };
  const proc: BridgeProcess = {
    pid: child.pid ?? -1,
    ports,
    dataDir,
    env,
    mqttUrl: `mqtt://127.0.0.1:${ports.mqtt}`,
    logs,
    output: () => other,
    exited,
    get alive() {
      return alive;
    },
    url: (path) => `${base}${path}`,
    metricsText,
    async metric(name, labels = {}) {
      return parseSeries(await metricsText(), name)
        .filter((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v))
        .reduce((sum, s) => sum + s.value, 0);
    },
    async ledger() {
      const text = await metricsText();
      const one = (name: string) => parseSeries(text, name).reduce((sum, s) => sum + s.value, 0);
      // The shared arithmetic (test/support/influx.ts) over this one scrape.
      const l = await ledger({
        getSingleMetricAsString: async (name) =>
          parseSeries(text, name)
            .map((s) => `${name} ${s.value}`)
            .join('\n'),
      });
      return {
        ...l,
        rejected: one('bridge_samples_rejected_total'),
        deadLettered: one('bridge_dead_lettered_points_total'),
        backlog: one('bridge_backlog_points'),
        refused: one('bridge_samples_refused_total'),
        recovered: one('bridge_spool_recovered_points_total'),
      };
    },
    async readyz() {
      const res = await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(5000) });
      return { status: res.status, body: (await res.json()) as { status: string; reason?: string } };
    },
    kill: () => signal('SIGKILL'),
    async terminate(killAfterMs = 30_000) {
      const timer = setTimeout(() => {
        if (alive) child.kill('SIGKILL');
      }, killAfterMs);
      try {
        return await signal('SIGTERM');
      } finally {
        clearTimeout(timer);
      }
    },
  };
  try {
    await waitFor(
      'the bridge process to answer /healthz',
      async () => {
        if (!alive) throw new Error(`bridge exited early: ${other}`);
        const res = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(1000) });
        await res.arrayBuffer();
        return res.status === 200;
      },
      { timeoutMs: options.readyTimeoutMs ?? 30_000, intervalMs: 50 },
    );
  } catch (err) {
    await proc.kill();
    throw new Error(`${(err as Error).message}\n--- bridge output ---\n${other}`, { cause: err });
  }
  return proc;
}
