/**
 * The bridge's own cost per message, without MQTT: the pipeline (`Pipeline.handle`: schema, decode,
 * validation) with its real sinks — storage (line protocol, spool with fdatasync and group commit,
 * the InfluxDB writer into a real InfluxDB 1.6) and the live hub with no browser connected — in
 * one process. One-sample `Telemetry` from 100 devices, as the ingest scenario sends, handed in
 * rounds of `--window` messages (the next round once every message of the last one is safe), and
 * the writer sends full batches (INFLUX_BATCH_SIZE, the flush interval set to its maximum) until
 * storage is closed, which writes the rest: so what is grouped into one disk write or one request
 * does not depend on the machine's speed, and instruction counts repeat.
 *
 * Per rep: CPU µs per message of this process (every thread: the thread pool's writes and gzip
 * included) from the first message until InfluxDB confirmed the last, and the acknowledged rate.
 * With `--callgrind` it runs itself under `valgrind --tool=callgrind` (V8 single-threaded, the heap
 * collected before the measured rep), counting instructions only in the last of three reps: a figure
 * that moves little with the machine's load, for comparing two versions of the code (issue 14,
 * docs/decisions.md). Run both versions at the same time and compare: a few percent remain.
 *
 *   node dist/bench/pipeline.js [--messages 200000] [--window 800] [--reps 3] [--profile out.cpuprofile]
 *   node dist/bench/pipeline.js --callgrind [--messages 20000]
 *
 * InfluxDB is pinned to core 1 and this process to core 0 when `taskset` works.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { LiveHub } from '../src/bridge/live/hub.js';
import { Pipeline } from '../src/bridge/pipeline.js';
import { openStorage } from '../src/bridge/storage/open-storage.js';
import type { IngestVerdict } from '../src/broker/ingest-port.js';
import { BUILTIN_SCHEMAS, loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { createMetrics } from '../src/metrics.js';
import { loadSchemas } from '../src/schemas/registry.js';
import { startInfluxd } from '../test/support/influx.js';
import { findBinary, tempDir } from '../test/support/services.js';
import { median } from './lib/stats.js';
import { nodeScript } from './lib/suts.js';

const DEVICES = 100;

const { values: args } = parseArgs({
  options: {
    messages: { type: 'string' },
    window: { type: 'string', default: '800' },
    reps: { type: 'string', default: '3' },
    profile: { type: 'string' },
    callgrind: { type: 'boolean', default: false },
    'callgrind-child': { type: 'string' },
  },
});

if (args.callgrind) await runUnderCallgrind();
else await measure();

/** Re-runs this script under callgrind (instrumentation off until the measured rep) and reports. */
async function runUnderCallgrind(): Promise<void> {
  const valgrind = findBinary('valgrind');
  if (!valgrind) throw new Error('valgrind not found');
  const messages = args.messages ?? '20000';
  const out = tempDir('pipeline-callgrind');
  const child = spawn(
    valgrind,
    [
      '--tool=callgrind',
      '--instr-atstart=no',
      `--callgrind-out-file=${out}/callgrind.out`,
      process.execPath,
      // V8 compiles and marks on the main thread: otherwise when optimised code arrives depends on
      // how valgrind schedules its threads, and the count moves by several percent.
      ...nodeScript('bench/pipeline', ['--single-threaded', '--expose-gc', '--no-flush-bytecode']),
      '--messages',
      messages,
      '--window',
      args.window,
      '--callgrind-child',
      out,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let collected: number | undefined;
  const onLine = (line: string) => {
    const toggle = /^callgrind (on|off) (\d+)$/.exec(line);
    if (toggle) {
      execFileSync('callgrind_control', ['-i', toggle[1]!, toggle[2]!], { stdio: 'ignore' });
      writeFileSync(`${out}/${toggle[1]}`, '');
      return;
    }
    const m = /Collected : (\d+)/.exec(line);
    if (m) collected = Number(m[1]);
    else if (/^rep/.test(line) || /rror/.test(line)) console.log(line);
  };
  for (const stream of [child.stdout, child.stderr]) {
    let rest = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      const lines = (rest + chunk).split('\n');
      rest = lines.pop() ?? '';
      for (const line of lines) onLine(line);
    });
  }
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  rmSync(out, { recursive: true, force: true });
  if (code !== 0 || collected === undefined) throw new Error(`callgrind run failed (exit ${code})`);
  console.log(
    `${collected} instructions in the measured rep: ${Math.round(collected / Number(messages))} per message`,
  );
}

async function measure(): Promise<void> {
  const callgrindDir = args['callgrind-child'];
  const messages = Number(args.messages ?? 200_000);
  const window = Number(args.window);
  const reps = callgrindDir ? 3 : Number(args.reps);
  const influx = await startInfluxd();
  if ('skip' in influx) throw new Error(influx.skip);
  pin(influx.process.child.pid!, 1);
  pin(process.pid, 0);
  const schemas = loadSchemas(BUILTIN_SCHEMAS);
  const payloads = telemetryPayloads(schemas, messages);
  const topics = Array.from({ length: DEVICES }, (_, d) => `devices/dev-${d}/telemetry`);
  const perMessage: number[] = [];
  try {
    for (let rep = 0; rep < reps; rep++) {
      const last = rep === reps - 1;
      const db = `pipeline_${Date.now()}`;
      await influx.query(`CREATE DATABASE "${db}"`);
      const dataDir = tempDir('pipeline');
      const config = loadConfig({
        BRIDGE_DATA_DIR: dataDir,
        INFLUX_URL: influx.url,
        INFLUX_API: 'v1',
        INFLUX_DATABASE: db,
        INFLUX_SELF_METRICS_MS: '0',
        INFLUX_FLUSH_INTERVAL_MS: '60000',
        LOG_LEVEL: 'warn',
      });
      const log = createLogger('warn');
      const metrics = createMetrics();
      const storage = await openStorage({ config, log, metrics });
      if (!storage) throw new Error('storage is off');
      const hub = new LiveHub({ config, log, metrics });
      const pipeline = new Pipeline({ config, log, metrics, schemas, sinks: [storage, hub] });
      // From a collected heap: whether a full collection falls inside the measured rep does not
      // depend on what the warm-up left.
      (globalThis as { gc?: () => void }).gc?.();
      if (callgrindDir && last) await handshake(callgrindDir, 'on');
      const profiler = args.profile && last ? await startProfiler() : undefined;
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      await drive(pipeline, topics, payloads, window);
      const acked = performance.now() - t0;
      await storage.close(60_000); // writes what is left
      const cpu = process.cpuUsage(cpu0);
      if (profiler) writeFileSync(args.profile!, JSON.stringify(await profiler.stop()));
      if (callgrindDir && last) await handshake(callgrindDir, 'off');
      await hub.close();
      const rows = await influx.rows('SELECT count(temperature_c) FROM telemetry', db);
      const stored = Number(rows[0]?.['count'] ?? 0);
      rmSync(dataDir, { recursive: true, force: true });
      const micros = (cpu.user + cpu.system) / messages;
      perMessage.push(micros);
      console.log(
        `rep ${rep}: ${micros.toFixed(2)} µs CPU per message (user ${(cpu.user / messages).toFixed(2)}, system ${(cpu.system / messages).toFixed(2)}), ${Math.round(messages / (acked / 1000))} msg/s acknowledged, ${stored} of ${messages} in InfluxDB`,
      );
      if (stored !== messages) throw new Error(`InfluxDB holds ${stored} points, not ${messages}`);
    }
  } finally {
    await influx.stop();
  }
  if (!callgrindDir) {
    console.log(
      `median ${median(perMessage).toFixed(2)} µs per message, min ${Math.min(...perMessage).toFixed(2)}`,
    );
  }
}

/** Hands messages to the pipeline in rounds of `window`, each once the last one is safe. */
async function drive(
  pipeline: Pipeline,
  topics: string[],
  payloads: Buffer[],
  window: number,
): Promise<void> {
  for (let start = 0; start < payloads.length; start += window) {
    const end = Math.min(start + window, payloads.length);
    const waits: Promise<IngestVerdict>[] = [];
    for (let i = start; i < end; i++) {
      const device = i % DEVICES;
      const verdict = pipeline.handle(`dev-${device}`, topics[device]!, payloads[i]!);
      if ('then' in verdict) waits.push(verdict);
    }
    await Promise.all(waits);
  }
}

function telemetryPayloads(schemas: ReturnType<typeof loadSchemas>, n: number): Buffer[] {
  const Telemetry = schemas.type('telemetry.v1.Telemetry');
  const base = Date.now() - 600_000;
  return Array.from({ length: n }, (_, i) =>
    Buffer.from(
      Telemetry.encode({
        device_id: `dev-${i % DEVICES}`,
        seq: i + 1,
        samples: [
          {
            time_unix_ms: base + i,
            values: { temperature_c: 21.5, humidity: 40.25, pressure_hpa: 1013.2 },
          },
        ],
      }).finish(),
    ),
  );
}

function pin(pid: number, core: number): void {
  const taskset = findBinary('taskset');
  if (!taskset) return;
  try {
    execFileSync(taskset, ['-a', '-cp', String(core), String(pid)], { stdio: 'ignore' });
  } catch {
    // One core, or not allowed: unpinned.
  }
}

/** Asks the parent to switch callgrind's instrumentation, and waits until it did. */
async function handshake(dir: string, state: 'on' | 'off'): Promise<void> {
  console.log(`callgrind ${state} ${process.pid}`);
  while (!existsSync(`${dir}/${state}`)) await sleep(20);
}

async function startProfiler(): Promise<{ stop(): Promise<unknown> }> {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  return {
    async stop() {
      const { profile } = await session.post('Profiler.stop');
      session.disconnect();
      return profile;
    },
  };
}

// The thread pool and InfluxDB's HTTP agent keep the loop alive.
process.exit(0);
