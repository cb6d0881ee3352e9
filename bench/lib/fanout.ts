/**
 * The measurement both fan-out scenarios make (MQTT subscribers, `/live` browsers): senders publish
 * for `seconds`, then the receivers get up to 20 s to catch up — a system seconds behind must show
 * it in the latency, not lose it — while the system under test and the generator are metered.
 */
import { sleep, until } from './context.js';
import type { Generator } from './generator.js';
import { generatorCpu, type LatencySummary, ProcMonitor, summarize } from './stats.js';

export interface FanoutRun {
  /** Messages the senders published. */
  readonly sent: number;
  /** Deliveries owed: `sent` × receivers of each message. */
  readonly expected: number;
  readonly received: number;
  /** Every delivery arrived within the catch-up time. */
  readonly drained: boolean;
  /** From start to the last delivery (or the end of catch-up), s. */
  readonly wallSeconds: number;
  readonly latency: LatencySummary;
  readonly usage: ReturnType<ProcMonitor['end']>;
  readonly generatorCpuPercent: number;
}

/** @param receiversPerMessage how many receivers each sent message reaches. */
export async function measureFanout(
  sutPid: number,
  receivers: Generator,
  senders: Generator,
  seconds: number,
  receiversPerMessage: number,
): Promise<FanoutRun> {
  const mon = new ProcMonitor(sutPid).begin();
  const genCpu = generatorCpu();
  const t0 = performance.now();
  receivers.start();
  senders.start();
  await sleep(seconds * 1000);
  const sent = (await senders.stop()).reduce((n, r) => n + (r.sent ?? 0), 0);
  const expected = sent * receiversPerMessage;
  const drained = await until(async () => (await receivers.progress()) >= expected, 20_000, 200);
  const wallSeconds = (performance.now() - t0) / 1000;
  const parts = await receivers.stop();
  const generatorCpuPercent = genCpu().cpuPercent;
  const usage = mon.end();
  await senders.close();
  await receivers.close();
  return {
    sent,
    expected,
    received: parts.reduce((n, p) => n + (p.received ?? 0), 0),
    drained,
    wallSeconds,
    latency: summarize(parts.flatMap((p) => (p.latency ? [p.latency] : []))),
    usage,
    generatorCpuPercent,
  };
}
