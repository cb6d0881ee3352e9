/**
 * Live brokers for tests: a telemetry event whose sequence number says which it is, the sequence
 * numbers of what a broker returned, and a Redis live broker with the tests' settings.
 */
import type { LiveBroker, LiveEvent } from '../../src/bridge/live/broker.js';
import { type RedisBrokerOptions, RedisLiveBroker } from '../../src/bridge/live/broker-redis.js';
import { createLogger } from '../../src/log.js';
import type { RedisHealth } from '../../src/redis.js';

/** Publishes telemetry `seq` of `device` (time = seq; `pad` makes the event bigger). */
export function publishSeq(broker: LiveBroker, device: string, seq: number, pad = ''): void {
  broker.publish({
    kind: 'telemetry',
    device,
    time: seq,
    body: { seq, time: seq, values: { v: seq }, labels: pad ? { pad } : {} },
  });
}

/** The telemetry sequence numbers of `events`, or 'gap'. */
export const seqs = (events: readonly LiveEvent[] | 'gap'): number[] | 'gap' =>
  events === 'gap' ? 'gap' : events.map((e) => JSON.parse(String(e.json)).seq as number);

/**
 * A Redis live broker on a test's redis-server: a silent log, 1 MiB of history bytes and short
 * blocking reads (so close() returns quickly); `health` stays the caller's to close.
 */
export function openRedisLiveBroker(
  url: string,
  health: RedisHealth,
  options: Pick<RedisBrokerOptions, 'keyPrefix'> & Partial<RedisBrokerOptions>,
): Promise<RedisLiveBroker> {
  return RedisLiveBroker.open({
    redis: { url },
    health,
    log: silent,
    historyCount: 100,
    historyBytes: 1 << 20,
    blockMs: 500,
    ...options,
  });
}

const silent = createLogger('silent');
