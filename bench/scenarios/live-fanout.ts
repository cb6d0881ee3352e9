/**
 * `/live` fan-out: 1,000 browsers (WebSocket, JSON, token from the bridge's token service)
 * subscribed to `telemetry/+` while 100 devices publish 100 readings/s in total over MQTT/TCP.
 * Latency = device send → browser receive (the reading's seq carries the send time in µs).
 * Baseline: a Socket.IO server broadcasting the same JSON object to the same number of browsers.
 * Target: bridge p99 ≤ 50 ms. CPU per delivery and peak RSS are of every bridge instance together.
 *
 * Hook for issue 9 (scale-out): `instances` > 1 with `redisUrl` starts that many bridges sharing
 * Redis; browsers are spread round-robin over them and devices connect to the first, so the
 * latency includes the hop through Redis.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { withAuth } from '../../src/cli/auth.js';
import { freePort, tempDir } from '../../test/support/services.js';
import {
  type BenchContext,
  meteredFields,
  profileDirFor,
  type Scenario,
  type ScenarioOptions,
  type ScenarioResult,
} from '../lib/context.js';
import { measureFanout } from '../lib/fanout.js';
import { Generator } from '../lib/generator.js';
import { round } from '../lib/stats.js';
import { type Sut, startBridgeSut, startSocketIoSut } from '../lib/suts.js';
import type { WorkerTask } from '../lib/worker-protocol.js';

const BROWSERS = 1000;
const DEVICES = 100;
const RATE = 100;
const BROWSER_WORKERS = 3;

export interface LiveFanoutOptions extends ScenarioOptions {
  /** Bridges to run (scale-out, issue 9); default 1. More than one needs `redisUrl`. */
  readonly instances?: number;
  readonly redisUrl?: string;
  /**
   * Browsers offer permessage-deflate, as real ones do (default false). Compressed frames are counted,
   * not read, so latency covers only uncompressed ones: read the bridge's CPU per delivery.
   */
  readonly deflate?: boolean;
  /** Also run the Socket.IO baseline (default true; not with profileDir, instances or deflate). */
  readonly baseline?: boolean;
  /** The row's group and system name (default `live-fanout`, `bridge` or `bridge×<instances>`). */
  readonly group?: string;
  readonly sutName?: string;
}

export const liveFanout: Scenario & {
  run(ctx: BenchContext, options?: LiveFanoutOptions): Promise<ScenarioResult[]>;
} = {
  name: 'live-fanout',
  description: `${BROWSERS} /live browsers, ${DEVICES} devices, ${RATE} readings/s in total`,
  async run(ctx: BenchContext, options: LiveFanoutOptions = {}): Promise<ScenarioResult[]> {
    const seconds = options.profileDir ? 5 : ctx.quick ? 3 : 10;
    const instances = options.instances ?? 1;
    if (instances > 1 && !options.redisUrl) throw new Error('live-fanout: several instances need redisUrl');
    const results: ScenarioResult[] = [];

    const dataDir = tempDir('bench-live');
    const bridges: Sut[] = [];
    const group = options.group ?? 'live-fanout';
    const name = options.sutName ?? (instances > 1 ? `bridge×${instances}` : 'bridge');
    try {
      // Signed as the bridges will check it: the data dir's key, or the cluster's in Redis.
      const env = { BRIDGE_DATA_DIR: dataDir, ...(options.redisUrl ? { REDIS_URL: options.redisUrl } : {}) };
      const { token } = await withAuth({ env }, ({ tokens }) =>
        tokens.create({ feeds: ['telemetry/+'], ttlSeconds: 3600 }),
      );
      for (let i = 0; i < instances; i++) {
        bridges.push(
          await startBridgeSut(ctx.pin, {
            ports: { mqtt: await freePort(), http: await freePort() },
            dataDir,
            cpuProfDir: profileDirFor(options, group, name),
            // One data dir (token key) for every instance; each its own history store.
            env: {
              ...(options.redisUrl ? { REDIS_URL: options.redisUrl } : {}),
              BRIDGE_HISTORY_DIR: join(dataDir, `history-${i}`),
            },
          }),
        );
      }
      const first = bridges[0]!;
      const browsers: WorkerTask[] = Array.from({ length: BROWSER_WORKERS }, (_, w) => {
        const sut = bridges[w % bridges.length]!;
        return {
          task: 'live',
          target: { host: '127.0.0.1', port: sut.httpPort },
          count: share(w),
          token,
          feeds: ['telemetry/+'],
          ...(options.deflate ? { deflate: true } : {}),
        };
      });
      results.push(
        await runOne(
          ctx,
          group,
          name,
          bridges,
          browsers,
          {
            task: 'rate',
            transport: 'tcp',
            target: { host: '127.0.0.1', port: first.mqttPort },
            devices: deviceIds(),
            rate: RATE,
          },
          seconds,
          instances,
        ),
      );
    } finally {
      for (const b of bridges) await b.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
    if (options.profileDir || instances > 1 || options.deflate || options.baseline === false) return results;

    const sio = await startSocketIoSut(ctx.pin, await freePort());
    try {
      const target = { host: '127.0.0.1', port: sio.httpPort };
      const browsers: WorkerTask[] = Array.from({ length: BROWSER_WORKERS }, (_, w) => ({
        task: 'sio',
        target,
        count: share(w),
      }));
      results.push(
        await runOne(
          ctx,
          'live-fanout',
          'socketio',
          [sio],
          browsers,
          { task: 'sio-rate', target, devices: deviceIds(), rate: RATE },
          seconds,
          1,
        ),
      );
    } finally {
      await sio.stop();
    }
    return results;
  },
};

/** Browsers of worker `w`: BROWSERS split as evenly as possible. */
function share(w: number): number {
  return Math.floor(BROWSERS / BROWSER_WORKERS) + (w < BROWSERS % BROWSER_WORKERS ? 1 : 0);
}

function deviceIds(): string[] {
  return Array.from({ length: DEVICES }, (_, i) => `live-${i}`);
}

async function runOne(
  ctx: BenchContext,
  group: string,
  name: string,
  suts: readonly Sut[],
  browserTasks: WorkerTask[],
  deviceTask: WorkerTask,
  seconds: number,
  instances: number,
): Promise<ScenarioResult> {
  const browsers = await Generator.spawn(browserTasks);
  const devices = await Generator.spawn([deviceTask]);
  const browserCount = browserTasks.reduce((n, t) => n + ('count' in t ? t.count : 0), 0);
  const run = await measureFanout(
    suts.map((s) => s.pid),
    browsers,
    devices,
    seconds,
    browserCount,
    {
      maxCatchUpSeconds: ctx.quick ? 10 : 15,
      stallSeconds: 3,
    },
  );
  const { sent, expected, received, drained, latency, measured } = run;
  const m = meteredFields(measured, suts[0]!.cores, received, 'delivery');
  ctx.log(
    `live-fanout ${name}: ${received}/${expected} delivered, p50 ${latency.p50} p99 ${latency.p99} max ${latency.max} ms, ${m.cpuPer.micros} µs/delivery, SUT CPU ${measured.usage.cpuPercent}%, peak RSS ${measured.usage.peakRssMiB} MiB, generator ${measured.generatorCpuPercent}%`,
  );
  return {
    group,
    sut: name,
    baseline: 'socketio',
    primary: { name: 'p99 ms', value: latency.p99, unit: 'ms', better: 'lower' },
    params: { browsers: browserCount, devices: DEVICES, rate: RATE, seconds, instances },
    throughput: { value: run.deliveriesPerSecond, unit: 'deliveries/s' },
    latencyMs: latency,
    ...m,
    extra: {
      sent,
      expected,
      received,
      deliveredFraction: expected > 0 ? round(received / expected, 4) : 0,
      allDelivered: drained,
    },
  };
}
