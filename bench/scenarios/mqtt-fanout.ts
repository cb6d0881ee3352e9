/**
 * MQTT fan-out: one device publishes telemetry (QoS 1) at a fixed rate over WebSocket to 500
 * subscribers (QoS 0) over WebSocket. Latency = device send → subscriber receive (the payload's seq
 * carries the send time in µs). After the device stops, subscribers keep listening until every
 * delivery arrived (or a drain timeout), so a broker that falls behind shows its full lag.
 * Target: bridge p99 ≤ Mosquitto's p99.
 */
import { rmSync } from 'node:fs';
import { freePort, tempDir } from '../../test/support/services.js';
import type { Transport } from '../lib/conn.js';
import type { BenchContext, Scenario, ScenarioOptions, ScenarioResult } from '../lib/context.js';
import { measureFanout } from '../lib/fanout.js';
import { Generator, slices } from '../lib/generator.js';
import { round } from '../lib/stats.js';
import { type Sut, startAedesSut, startBridgeSut, startMosquittoSut } from '../lib/suts.js';

const SUBSCRIBERS = 500;
const RATE = 100;
const TRANSPORT: Transport = 'ws';
const DEVICE = 'fan-0';

export const mqttFanout: Scenario = {
  name: 'mqtt-fanout',
  description: `1 device → ${SUBSCRIBERS} MQTT subscribers over WebSocket at ${RATE} msg/s`,
  async run(ctx: BenchContext, options: ScenarioOptions = {}): Promise<ScenarioResult[]> {
    const seconds = options.profileDir ? 5 : ctx.quick ? 5 : 10;
    const names = options.profileDir
      ? (['bridge'] as const)
      : ctx.quick
        ? (['bridge', 'mosquitto'] as const)
        : (['bridge', 'mosquitto', 'aedes'] as const);
    const results: ScenarioResult[] = [];
    for (const name of names) {
      const ports = { mqtt: await freePort(), http: await freePort() };
      const dataDir = tempDir('bench-fanout');
      const sut: Sut =
        name === 'bridge'
          ? await startBridgeSut(ctx.pin, {
              ports,
              dataDir,
              ...(options.profileDir ? { cpuProfDir: options.profileDir } : {}),
            })
          : name === 'aedes'
            ? await startAedesSut(ctx.pin, ports)
            : await startMosquittoSut(ctx.pin, ports);
      try {
        results.push(await runOne(ctx, sut, seconds));
      } finally {
        await sut.stop();
        rmSync(dataDir, { recursive: true, force: true });
      }
    }
    return results;
  },
};

async function runOne(ctx: BenchContext, sut: Sut, seconds: number): Promise<ScenarioResult> {
  const target = { host: '127.0.0.1', port: sut.httpPort, path: sut.wsPath };
  const topic = `devices/${DEVICE}/telemetry`;
  const ids = Array.from({ length: SUBSCRIBERS }, (_, i) => `fan-sub-${i}`);
  const subs = await Generator.spawn(
    slices(ids, 2).map((clients) => ({
      task: 'subscribe' as const,
      transport: TRANSPORT,
      target,
      clients,
      topic,
    })),
  );
  const pub = await Generator.spawn([
    { task: 'rate', transport: TRANSPORT, target, devices: [DEVICE], rate: RATE },
  ]);
  const { sent, expected, received, drained, wallSeconds, latency, usage, generatorCpuPercent } =
    await measureFanout(sut.pid, subs, pub, seconds, SUBSCRIBERS);
  ctx.log(
    `mqtt-fanout ${sut.name}: ${received}/${expected} delivered, p50 ${latency.p50} p99 ${latency.p99} max ${latency.max} ms, SUT CPU ${usage.cpuPercent}%, generator ${generatorCpuPercent}%`,
  );
  return {
    group: 'mqtt-fanout',
    sut: sut.name,
    baseline: 'mosquitto',
    primary: { name: 'p99 ms', value: latency.p99, unit: 'ms', better: 'lower' },
    params: { transport: TRANSPORT, subscribers: SUBSCRIBERS, rate: RATE, seconds },
    throughput: { value: round(received / wallSeconds, 0), unit: 'deliveries/s' },
    latencyMs: latency,
    sutUsage: usage,
    generatorCpuPercent,
    extra: {
      sent,
      expected,
      received,
      allDelivered: drained,
      sutCpuMicrosPerDelivery: round((usage.cpuSeconds / Math.max(received, 1)) * 1e6, 2),
    },
  };
}
