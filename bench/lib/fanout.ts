/**
 * The measurement both fan-out scenarios make (MQTT subscribers, `/live` browsers): senders publish
 * for `seconds`, then the receivers get time to catch up — a system seconds behind must show it in
 * the latency, not lose it — while the system under test, the generator and the machine are metered.
 *
 * Catch-up ends when every delivery owed arrived, when no delivery arrived for `stallSeconds` (e.g.
 * the rest was owed to dropped subscribers), or after `maxCatchUpSeconds`.
 */
import { sleep } from './context.js';
import type { Generator } from './generator.js';
import { type LatencySummary, type Measured, meter, round, summarize } from './stats.js';

export interface FanoutRun {
  /** Messages the senders published. */
  readonly sent: number;
  /** Deliveries owed: `sent` × receivers of each message. */
  readonly expected: number;
  readonly received: number;
  /** Receivers whose connection the system closed during the run (dropped as too slow). */
  readonly dropped: number;
  /** Every delivery arrived within the catch-up time. */
  readonly drained: boolean;
  /** From start to the end of catch-up, s (the metered window). */
  readonly wallSeconds: number;
  /** Deliveries ÷ (last delivery − start): the rate the system delivered at, catch-up included. */
  readonly deliveriesPerSecond: number;
  readonly latency: LatencySummary;
  readonly measured: Measured;
}

export interface CatchUp {
  readonly maxCatchUpSeconds: number;
  readonly stallSeconds: number;
}

/** Deliveries per second from a count and the epoch ms of the start and of the last delivery. */
export function deliveryRate(received: number, startEpochMs: number, lastEpochMs: number): number {
  const seconds = (lastEpochMs - startEpochMs) / 1000;
  return seconds > 0 ? round(received / seconds, 0) : 0;
}

/** @param receiversPerMessage how many receivers each sent message reaches. */
export async function measureFanout(
  sutPids: number | readonly number[],
  receivers: Generator,
  senders: Generator,
  seconds: number,
  receiversPerMessage: number,
  catchUp: CatchUp = { maxCatchUpSeconds: 20, stallSeconds: 3 },
): Promise<FanoutRun> {
  const end = meter(sutPids);
  const t0 = performance.now();
  const startEpochMs = performance.timeOrigin + t0;
  receivers.start();
  senders.start();
  await sleep(seconds * 1000);
  const sent = (await senders.stop()).reduce((n, r) => n + (r.sent ?? 0), 0);
  const expected = sent * receiversPerMessage;
  const deadline = performance.now() + catchUp.maxCatchUpSeconds * 1000;
  let last = -1;
  let lastChange = performance.now();
  let drained = false;
  for (;;) {
    const got = await receivers.progress();
    const now = performance.now();
    if (got >= expected) {
      drained = true;
      break;
    }
    if (got !== last) {
      last = got;
      lastChange = now;
    } else if (now - lastChange >= catchUp.stallSeconds * 1000) break;
    if (now > deadline) break;
    await sleep(200);
  }
  const wallSeconds = (performance.now() - t0) / 1000;
  const parts = await receivers.stop();
  const measured = end();
  await senders.close();
  await receivers.close();
  const received = parts.reduce((n, p) => n + (p.received ?? 0), 0);
  const lastAt = Math.max(0, ...parts.map((p) => p.lastAt ?? 0));
  return {
    sent,
    expected,
    received,
    dropped: parts.reduce((n, p) => n + (p.dropped ?? 0), 0),
    drained,
    wallSeconds: round(wallSeconds),
    deliveriesPerSecond: lastAt
      ? deliveryRate(received, startEpochMs, lastAt)
      : round(received / wallSeconds, 0),
    latency: summarize(parts.flatMap((p) => (p.latency ? [p.latency] : []))),
    measured,
  };
}
