/**
 * Connection costs.
 *
 * - idle: 10,000 idle MQTT connections (CONNECT done, keepalive 600 s) over TCP and over WebSocket;
 *   RSS per connection = (settled RSS with them − settled RSS before) / count, read the same way for
 *   every system (IDLE_SETTLE below). Targets: bridge ≤ 10 KiB (TCP), ≤ 15 KiB (WS). Each row also
 *   says where the memory went (/proc/<pid>/smaps: malloc heap, anonymous pages, files) and what a
 *   connection cost in CPU while connecting.
 * - storm: 5,000 devices connected over TCP; the system is restarted (SIGTERM, start again on the
 *   same ports) and every device reconnects at once (jitter 0–250 ms, retry 200–500 ms while
 *   refused): time from the restart to all connected, peak CPU (share of one core over 500 ms).
 *
 * The bridge runs with BRIDGE_AUTH=off here: with authentication every first login after a restart
 * costs one scrypt (~40 ms, registry.ts), so a 5,000-device storm is ~200 s of one core by design;
 * that cost is reported from the registry's own parameters, not measured here.
 */
import { rmSync } from 'node:fs';
import { freePort, tempDir } from '../../test/support/services.js';
import type { Transport } from '../lib/conn.js';
import {
  type BenchContext,
  meteredFields,
  profileDirFor,
  type Scenario,
  type ScenarioOptions,
  type ScenarioResult,
  sleep,
  until,
} from '../lib/context.js';
import { Generator, slices } from '../lib/generator.js';
import { meter, readProc, round, type SmapsRss, smapsRss } from '../lib/stats.js';
import { type PortPair, type Sut, startAedesSut, startBridgeSut, startMosquittoSut } from '../lib/suts.js';

type Name = 'bridge' | 'aedes' | 'mosquitto';

async function start(
  ctx: BenchContext,
  name: Name,
  ports: PortPair,
  dataDir: string,
  profileDir?: string,
): Promise<Sut> {
  if (name === 'bridge') return startBridgeSut(ctx.pin, { ports, dataDir, cpuProfDir: profileDir });
  if (name === 'aedes') return startAedesSut(ctx.pin, ports);
  return startMosquittoSut(ctx.pin, ports);
}

function names(ctx: BenchContext, options: ScenarioOptions): Name[] {
  if (options.profileDir) return ['bridge'];
  return ctx.quick ? ['bridge', 'mosquitto'] : ['bridge', 'mosquitto', 'aedes'];
}

export const idle: Scenario = {
  name: 'idle',
  description: 'idle MQTT connections over TCP and WebSocket: RSS per connection',
  async run(ctx, options = {}) {
    const count = ctx.quick ? 2000 : 10_000;
    const results: ScenarioResult[] = [];
    for (const transport of ['tcp', 'ws'] as Transport[]) {
      for (const name of names(ctx, options)) {
        const dataDir = tempDir('bench-idle');
        const sut = await start(
          ctx,
          name,
          { mqtt: await freePort(), http: await freePort() },
          dataDir,
          profileDirFor(options, `idle-${transport}`, name),
        );
        try {
          // A profile is of the connecting only: no need to wait for RSS to settle.
          results.push(await idleOne(ctx, sut, transport, count, !options.profileDir));
        } finally {
          await sut.stop();
          rmSync(dataDir, { recursive: true, force: true });
        }
      }
    }
    return results;
  },
};

/**
 * When the idle benchmark reads RSS — the same rule for every system, before and after connecting:
 * sampled every 500 ms from the moment the last connection got its CONNACK (or the system was up);
 * read at the first moment, no earlier than `minSeconds`, at which it stayed within `toleranceKiB`
 * for the last `quietSeconds`; at `maxSeconds` the last sample is taken and marked unsettled.
 *
 * Why not at once: right after a burst of connections V8 may still hold an enlarged young generation
 * and the burst's garbage (measured at 2,000 connections: ~20 KiB per connection more); its memory
 * reducer gives that back after about 8 s of low allocation. The idle cost of a connection is the
 * steady state after that. (At 10,000 connections the bridge's RSS was flat from the last CONNACK to
 * +30 s: 18.4 KiB TCP, 24.8 KiB WS, `node dist/bench/idle-memory.js --process --n 10000` on
 * 2026-12-02.) Mosquitto (no GC) is flat from the start and is read at `minSeconds`.
 */
export interface SettleRule {
  readonly minSeconds: number;
  readonly quietSeconds: number;
  readonly maxSeconds: number;
  readonly toleranceKiB: number;
}

export const IDLE_SETTLE: SettleRule = { minSeconds: 10, quietSeconds: 3, maxSeconds: 30, toleranceKiB: 64 };
/** `--quick`: the same rule, shorter (its numbers are a smoke test, not the reference). */
export const IDLE_SETTLE_QUICK: SettleRule = {
  minSeconds: 5,
  quietSeconds: 2,
  maxSeconds: 15,
  toleranceKiB: 64,
};

/** The settled reading of samples (seconds since the start, RSS KiB) in time order, or undefined yet. */
export function settledReading(
  samples: readonly { t: number; kib: number }[],
  rule: SettleRule,
): { t: number; kib: number; settled: boolean } | undefined {
  const last = samples[samples.length - 1];
  if (!last || last.t < rule.minSeconds) return undefined;
  let lo = last.kib;
  let hi = last.kib;
  for (let i = samples.length - 1; i >= 0; i--) {
    const s = samples[i]!;
    lo = Math.min(lo, s.kib);
    hi = Math.max(hi, s.kib);
    if (hi - lo > rule.toleranceKiB) break;
    if (last.t - s.t >= rule.quietSeconds) return { ...last, settled: true };
  }
  return last.t >= rule.maxSeconds ? { ...last, settled: false } : undefined;
}

/** Samples a process's RSS until `settledReading` gives a reading (RSS in KiB, seconds waited). */
async function settledRss(
  pid: number,
  rule: SettleRule,
): Promise<{ kib: number; seconds: number; settled: boolean }> {
  const t0 = performance.now();
  const samples: { t: number; kib: number }[] = [];
  for (;;) {
    samples.push({ t: (performance.now() - t0) / 1000, kib: readProc(pid)?.rssKiB ?? 0 });
    const r = settledReading(samples, rule);
    if (r) return { kib: r.kib, seconds: round(r.t, 1), settled: r.settled };
    await sleep(500);
  }
}

/** Per-connection KiB of each kind of mapping between two smaps readings. */
function perConnection(before: SmapsRss, after: SmapsRss, count: number): Record<string, number> {
  const kib = (k: keyof SmapsRss) => round((after[k] - before[k]) / 1024 / count, 2);
  return {
    mallocHeapKiBPerConn: kib('brk'),
    anonKiBPerConn: round(kib('anon') + kib('anonBig'), 2),
    fileKiBPerConn: kib('file'),
  };
}

async function idleOne(
  ctx: BenchContext,
  sut: Sut,
  transport: Transport,
  count: number,
  settle: boolean,
): Promise<ScenarioResult> {
  const target = {
    host: '127.0.0.1',
    port: transport === 'tcp' ? sut.mqttPort : sut.httpPort,
    path: sut.wsPath,
  };
  const rule = ctx.quick ? IDLE_SETTLE_QUICK : IDLE_SETTLE;
  const before = settle
    ? await settledRss(sut.pid, rule)
    : { kib: readProc(sut.pid)?.rssKiB ?? 0, seconds: 0, settled: false };
  const mapsBefore = smapsRss(sut.pid);
  const end = meter(sut.pid);
  const t0 = performance.now();
  const ids = Array.from({ length: count }, (_, i) => `idle-${transport}-${i}`);
  const gen = await Generator.spawn(
    slices(ids, 2).map((clients) => ({
      task: 'hold' as const,
      transport,
      target,
      clients,
      reconnect: false,
      concurrency: 50,
    })),
  );
  const connectSeconds = (performance.now() - t0) / 1000;
  // CPU per connection: the connecting only (the settling below is idle).
  const measured = end();
  const transient = readProc(sut.pid)?.rssKiB ?? 0;
  const after = settle ? await settledRss(sut.pid, rule) : { kib: transient, seconds: 0, settled: false };
  const mapsAfter = smapsRss(sut.pid);
  const connected = await gen.progress();
  await gen.close();
  const perConn = round((after.kib - before.kib) / count, 2);
  ctx.log(
    `idle ${transport} ${sut.name}: ${connected} connections, ${perConn} KiB each (RSS ${round(before.kib / 1024, 1)} → ${round(after.kib / 1024, 1)} MiB, read ${after.seconds} s after connecting${after.settled ? '' : ', not settled'}; ${round((transient - before.kib) / count, 2)} KiB right after)`,
  );
  return {
    group: `idle-${transport}`,
    sut: sut.name,
    baseline: 'mosquitto',
    primary: { name: 'KiB/conn', value: perConn, unit: 'KiB', better: 'lower' },
    params: { transport, connections: count },
    throughput: { value: round(count / connectSeconds, 0), unit: 'connects/s' },
    ...meteredFields(measured, sut.cores, connected, 'connection'),
    extra: {
      connected,
      rssBeforeMiB: round(before.kib / 1024, 1),
      rssAfterMiB: round(after.kib / 1024, 1),
      kibPerConnection: perConn,
      kibPerConnectionRightAfterConnecting: round((transient - before.kib) / count, 2),
      secondsToSettleBefore: before.seconds,
      secondsToSettleAfter: after.seconds,
      settled: before.settled && after.settled,
      ...perConnection(mapsBefore, mapsAfter, count),
    },
  };
}

export const storm: Scenario = {
  name: 'storm',
  description: 'devices reconnecting after a restart: time to all connected, peak CPU',
  async run(ctx, options = {}) {
    const count = ctx.quick ? 1000 : 5000;
    const results: ScenarioResult[] = [];
    for (const name of names(ctx, options)) {
      const dataDir = tempDir('bench-storm');
      const ports = { mqtt: await freePort(), http: await freePort() };
      let sut = await start(ctx, name, ports, dataDir);
      let gen: Generator | undefined;
      try {
        const ids = Array.from({ length: count }, (_, i) => `storm-${i}`);
        gen = await Generator.spawn(
          slices(ids, 2).map((clients) => ({
            task: 'hold' as const,
            transport: 'tcp' as const,
            target: { host: '127.0.0.1', port: ports.mqtt },
            clients,
            reconnect: true,
            concurrency: 50,
          })),
        );
        gen.arm();
        await gen.progress(); // every worker armed before the restart
        const restartAt = performance.timeOrigin + performance.now();
        await sut.stop();
        const stoppedAt = performance.timeOrigin + performance.now();
        sut = await start(ctx, name, ports, dataDir, profileDirFor(options, 'storm', name));
        const readyAt = performance.timeOrigin + performance.now();
        const end = meter(sut.pid);
        const all = await until(
          async () => (await gen!.progress()) >= count,
          ctx.quick ? 60_000 : 120_000,
          100,
        );
        const parts = await gen.stop();
        const measured = end();
        const last = Math.max(...parts.map((p) => p.lastConnectAt ?? 0));
        const connected = parts.reduce((n, p) => n + (p.connected ?? 0), 0);
        const attempts = parts.reduce((n, p) => n + (p.attempts ?? 0), 0) - count;
        const fromReady = round((last - readyAt) / 1000, 2);
        const fromRestart = round((last - restartAt) / 1000, 2);
        // CPU since the process started: start-up and every reconnection.
        const total = readProc(sut.pid)?.cpuSeconds ?? measured.usage.cpuSeconds;
        const m = meteredFields(
          { ...measured, usage: { ...measured.usage, cpuSeconds: round(total, 3) } },
          sut.cores,
          connected,
          'connection',
        );
        ctx.log(
          `storm ${sut.name}: ${connected}/${count} back ${fromReady} s after ready (${fromRestart} s after SIGTERM), peak CPU ${measured.usage.peakCpuPercent}%, ${total} CPU s since start, ${m.cpuPer.micros} µs/connection`,
        );
        results.push({
          group: 'storm',
          sut: sut.name,
          baseline: 'mosquitto',
          primary: { name: 's to all connected (from ready)', value: fromReady, unit: 's', better: 'lower' },
          params: { transport: 'tcp', devices: count, auth: false },
          throughput: { value: round(count / Math.max(fromReady, 1e-3), 0), unit: 'connects/s' },
          ...m,
          extra: {
            allConnected: all,
            connected,
            reconnectAttempts: attempts,
            secondsFromSigterm: fromRestart,
            stopSeconds: round((stoppedAt - restartAt) / 1000, 2),
            startSeconds: round((readyAt - stoppedAt) / 1000, 2),
            errors: parts
              .flatMap((p) => p.errors ?? [])
              .slice(0, 3)
              .join('; '),
          },
        });
      } finally {
        await gen?.close();
        await sut.stop();
        rmSync(dataDir, { recursive: true, force: true });
      }
    }
    return results;
  },
};
