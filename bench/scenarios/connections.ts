/**
 * Connection costs.
 *
 * - idle: 10,000 idle MQTT connections (CONNECT done, keepalive 600 s) over TCP and over WebSocket;
 *   RSS per connection = (RSS with them − RSS before) / count. Targets: bridge ≤ 10 KiB (TCP),
 *   ≤ 15 KiB (WS).
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
  type Scenario,
  type ScenarioOptions,
  type ScenarioResult,
  sleep,
  until,
} from '../lib/context.js';
import { Generator, slices } from '../lib/generator.js';
import { generatorCpu, ProcMonitor, readProc, round } from '../lib/stats.js';
import { type PortPair, type Sut, startAedesSut, startBridgeSut, startMosquittoSut } from '../lib/suts.js';

type Name = 'bridge' | 'aedes' | 'mosquitto';

async function start(
  ctx: BenchContext,
  name: Name,
  ports: PortPair,
  dataDir: string,
  profileDir?: string,
): Promise<Sut> {
  if (name === 'bridge')
    return startBridgeSut(ctx.pin, { ports, dataDir, ...(profileDir ? { cpuProfDir: profileDir } : {}) });
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
          options.profileDir,
        );
        try {
          results.push(await idleOne(ctx, sut, transport, count));
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
 * RSS once it stopped moving: unchanged (within 64 KiB) for 3 s in a row, at most 30 s. A burst of
 * connections leaves V8 with an enlarged young generation and garbage that its memory reducer gives
 * back some seconds later; the idle cost of a connection is the steady state after that, not the
 * transient right after the burst (which read ~20 KiB per connection more).
 */
async function settledRss(pid: number): Promise<number> {
  const deadline = Date.now() + 30_000;
  let last = readProc(pid)?.rssKiB ?? 0;
  let quietSince = Date.now();
  while (Date.now() < deadline) {
    await sleep(500);
    const now = readProc(pid)?.rssKiB ?? 0;
    if (Math.abs(now - last) >= 64) {
      quietSince = Date.now();
      last = now;
    } else if (Date.now() - quietSince >= 3000) {
      return now;
    }
  }
  return last;
}

async function idleOne(
  ctx: BenchContext,
  sut: Sut,
  transport: Transport,
  count: number,
): Promise<ScenarioResult> {
  const target = {
    host: '127.0.0.1',
    port: transport === 'tcp' ? sut.mqttPort : sut.httpPort,
    path: sut.wsPath,
  };
  const before = await settledRss(sut.pid);
  const mon = new ProcMonitor(sut.pid).begin();
  const genCpu = generatorCpu();
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
  const after = await settledRss(sut.pid);
  const gcpu = genCpu();
  const usage = mon.end();
  const connected = await gen.progress();
  await gen.close();
  const perConn = round((after - before) / count, 2);
  ctx.log(
    `idle ${transport} ${sut.name}: ${connected} connections, ${perConn} KiB each (RSS ${round(before / 1024, 1)} → ${round(after / 1024, 1)} MiB)`,
  );
  return {
    group: `idle-${transport}`,
    sut: sut.name,
    baseline: 'mosquitto',
    primary: { name: 'KiB/conn', value: perConn, unit: 'KiB', better: 'lower' },
    params: { transport, connections: count },
    throughput: { value: round(count / connectSeconds, 0), unit: 'connects/s' },
    sutUsage: usage,
    generatorCpuPercent: gcpu.cpuPercent,
    extra: {
      connected,
      rssBeforeMiB: round(before / 1024, 1),
      rssAfterMiB: round(after / 1024, 1),
      kibPerConnection: perConn,
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
        const genCpu = generatorCpu();
        const restartAt = performance.timeOrigin + performance.now();
        await sut.stop();
        const stoppedAt = performance.timeOrigin + performance.now();
        sut = await start(ctx, name, ports, dataDir, options.profileDir);
        const readyAt = performance.timeOrigin + performance.now();
        const mon = new ProcMonitor(sut.pid, 50, 500).begin();
        const all = await until(
          async () => (await gen!.progress()) >= count,
          ctx.quick ? 60_000 : 120_000,
          100,
        );
        const parts = await gen.stop();
        const usage = mon.end();
        const gcpu = genCpu();
        const last = Math.max(...parts.map((p) => p.lastConnectAt ?? 0));
        const connected = parts.reduce((n, p) => n + (p.connected ?? 0), 0);
        const attempts = parts.reduce((n, p) => n + (p.attempts ?? 0), 0) - count;
        const fromReady = round((last - readyAt) / 1000, 2);
        const fromRestart = round((last - restartAt) / 1000, 2);
        const total = readProc(sut.pid)?.cpuSeconds ?? usage.cpuSeconds;
        ctx.log(
          `storm ${sut.name}: ${connected}/${count} back ${fromReady} s after ready (${fromRestart} s after SIGTERM), peak CPU ${usage.peakCpuPercent}%, ${total} CPU s since start`,
        );
        results.push({
          group: 'storm',
          sut: sut.name,
          baseline: 'mosquitto',
          primary: { name: 's to all connected (from ready)', value: fromReady, unit: 's', better: 'lower' },
          params: { transport: 'tcp', devices: count, auth: false },
          throughput: { value: round(count / Math.max(fromReady, 1e-3), 0), unit: 'connects/s' },
          sutUsage: { ...usage, cpuSeconds: round(total) },
          generatorCpuPercent: gcpu.cpuPercent,
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
