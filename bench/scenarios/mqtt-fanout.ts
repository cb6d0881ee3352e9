/**
 * MQTT fan-out: one device publishes telemetry at QoS 0 over WebSocket at a fixed rate to 500
 * subscribers (QoS 0) over WebSocket, at 100 msg/s (50,000 deliveries/s offered) and at 1,000 msg/s
 * (500,000 offered: more than any of the systems delivers on one core, so it shows what each does
 * when overloaded). Latency = device send → subscriber receive (the payload's seq carries the send
 * time in µs). After the device stops, subscribers keep listening until every delivery arrived, no
 * delivery came for 3 s, or a catch-up limit, so a broker that falls behind shows its full lag.
 *
 * Bridge, Mosquitto and plain Aedes in the same run, each started fresh for each rate and pinned to
 * core 0; the subscribers (fast-read raw clients, conn.ts) and the device run on core 1.
 *
 * Per row: deliveries/s (received ÷ time to the last delivery), p50/p99/max, SUT CPU µs per
 * delivery, peak RSS, subscribers dropped (closed by the server; for the bridge also its own counter
 * on /metrics when it exposes one, `bridge_*subscriber*_{dropped,disconnected}*_total`) and the
 * fraction of owed deliveries that arrived. Targets (issue 14 point 2, 3) are judged in report.ts.
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
} from '../lib/context.js';
import { measureFanout } from '../lib/fanout.js';
import { Generator, slices } from '../lib/generator.js';
import { round } from '../lib/stats.js';
import { type Sut, startAedesSut, startBridgeSut, startMosquittoSut } from '../lib/suts.js';

export const SUBSCRIBERS = 500;
/** Messages per second the device publishes; each row group is `mqtt-fanout-<rate>`. */
export const RATES = [100, 1000] as const;
const TRANSPORT: Transport = 'ws';
const DEVICE = 'fan-0';
const SUBSCRIBER_WORKERS = 2;

export const fanoutGroup = (rate: number) => `mqtt-fanout-${rate}`;

/** A bridge counter of dropped subscribers in Prometheus text, summed over its labels; else undefined. */
export function droppedSubscribersCounter(metricsText: string): number | undefined {
  let total: number | undefined;
  for (const line of metricsText.split('\n')) {
    const m = /^(bridge_[a-z_]*subscriber[a-z_]*_total)(?:\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m || !/(dropped|disconnected)/.test(m[1]!)) continue;
    const v = Number(m[2]);
    if (Number.isFinite(v)) total = (total ?? 0) + v;
  }
  return total;
}

export const mqttFanout: Scenario = {
  name: 'mqtt-fanout',
  description: `1 device → ${SUBSCRIBERS} MQTT subscribers over WebSocket, QoS 0, at ${RATES.join(' and ')} msg/s`,
  async run(ctx: BenchContext, options: ScenarioOptions = {}): Promise<ScenarioResult[]> {
    const seconds = options.profileDir ? 5 : ctx.quick ? 3 : 10;
    const names = options.profileDir
      ? (['bridge'] as const)
      : ctx.quick
        ? (['bridge', 'mosquitto'] as const)
        : (['bridge', 'mosquitto', 'aedes'] as const);
    const results: ScenarioResult[] = [];
    for (const rate of RATES) {
      for (const name of names) {
        const ports = { mqtt: await freePort(), http: await freePort() };
        const dataDir = tempDir('bench-fanout');
        const sut: Sut =
          name === 'bridge'
            ? await startBridgeSut(ctx.pin, {
                ports,
                dataDir,
                cpuProfDir: profileDirFor(options, fanoutGroup(rate), 'bridge'),
              })
            : name === 'aedes'
              ? await startAedesSut(ctx.pin, ports)
              : await startMosquittoSut(ctx.pin, ports);
        try {
          results.push(await runOne(ctx, sut, rate, seconds, ctx.quick || rate > 100 ? 10 : 15));
        } finally {
          await sut.stop();
          rmSync(dataDir, { recursive: true, force: true });
        }
      }
    }
    return results;
  },
};

async function runOne(
  ctx: BenchContext,
  sut: Sut,
  rate: number,
  seconds: number,
  maxCatchUpSeconds: number,
): Promise<ScenarioResult> {
  const target = { host: '127.0.0.1', port: sut.httpPort, path: sut.wsPath };
  const topic = `devices/${DEVICE}/telemetry`;
  const ids = Array.from({ length: SUBSCRIBERS }, (_, i) => `fan-sub-${i}`);
  const subs = await Generator.spawn(
    slices(ids, SUBSCRIBER_WORKERS).map((clients) => ({
      task: 'subscribe' as const,
      transport: TRANSPORT,
      target,
      clients,
      topic,
    })),
  );
  const pub = await Generator.spawn([
    { task: 'rate', transport: TRANSPORT, target, devices: [DEVICE], rate, qos: 0 },
  ]);
  const run = await measureFanout(sut.pid, subs, pub, seconds, SUBSCRIBERS, {
    maxCatchUpSeconds,
    stallSeconds: 3,
  });
  const { sent, expected, received, dropped, drained, latency, measured } = run;
  const counted =
    sut.name === 'bridge'
      ? droppedSubscribersCounter(
          await fetch(`http://127.0.0.1:${sut.httpPort}/metrics`)
            .then((r) => r.text())
            .catch(() => ''),
        )
      : undefined;
  const deliveredFraction = expected > 0 ? round(received / expected, 4) : 0;
  const m = meteredFields(measured, sut.cores, received, 'delivery');
  ctx.log(
    `mqtt-fanout ${rate}/s ${sut.name}: ${received}/${expected} delivered (${round(deliveredFraction * 100, 1)} %), ${run.deliveriesPerSecond}/s, p50 ${latency.p50} p99 ${latency.p99} max ${latency.max} ms, ${dropped} dropped, ${m.cpuPer.micros} µs/delivery, SUT CPU ${measured.usage.cpuPercent}%, peak RSS ${measured.usage.peakRssMiB} MiB, generator ${measured.generatorCpuPercent}%`,
  );
  const primary =
    rate > 100
      ? {
          name: 'deliveries/s',
          value: run.deliveriesPerSecond,
          unit: 'deliveries/s',
          better: 'higher' as const,
        }
      : { name: 'p99 ms', value: latency.p99, unit: 'ms', better: 'lower' as const };
  return {
    group: fanoutGroup(rate),
    sut: sut.name,
    baseline: 'mosquitto',
    primary,
    params: { transport: TRANSPORT, subscribers: SUBSCRIBERS, rate, qos: 0, seconds },
    throughput: { value: run.deliveriesPerSecond, unit: 'deliveries/s' },
    latencyMs: latency,
    ...m,
    extra: {
      sent,
      expected,
      offeredDeliveriesPerSecond: rate * SUBSCRIBERS,
      received,
      deliveredFraction,
      allDelivered: drained,
      subscribersDropped: dropped,
      ...(counted !== undefined ? { subscribersDroppedByBridgeCounter: counted } : {}),
      catchUpSeconds: round(run.wallSeconds - seconds, 1),
    },
  };
}
