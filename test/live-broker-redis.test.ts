/**
 * What the Redis Streams live broker adds to the LiveBroker contract (test/live-broker-contract.test.ts),
 * against a real redis-server: cursors shared between two brokers on one Redis, a broker started
 * later that finds the history and the latest state, a Redis outage, and lost events never silent:
 * a publisher's skipped number is a gap, a repeated one is not delivered twice.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import type { LiveEvent } from '../src/bridge/live/broker.js';
import type { RedisLiveBroker } from '../src/bridge/live/broker-redis.js';
import { parseFeedFilter } from '../src/feeds.js';
import { createLogger } from '../src/log.js';
import { RedisHealth } from '../src/redis.js';
import { openRedisLiveBroker, publishSeq, seqs } from './support/live-events.js';
import { startRedis } from './support/redis.js';
import { waitFor } from './support/wait.js';

const redis = await startRedis();
const skip = 'skip' in redis ? redis.skip : undefined;
const log = createLogger('silent');
let prefixes = 0;

async function open(
  keyPrefix: string,
  historyCount = 100,
): Promise<{ broker: RedisLiveBroker; events: LiveEvent[]; health: RedisHealth }> {
  if ('skip' in redis) throw new Error('no redis');
  const health = new RedisHealth(log);
  const broker = await openRedisLiveBroker(redis.url, health, { keyPrefix, historyCount });
  const events: LiveEvent[] = [];
  broker.onMessage((e) => events.push(e));
  return { broker, events, health };
}

describe('RedisLiveBroker', { skip }, () => {
  after(async () => {
    if (!('skip' in redis)) await redis.stop();
  });

  test('two brokers on one stream: same events, same cursors, same order; resume across them', async () => {
    const prefix = `t${++prefixes}`;
    const a = await open(prefix);
    const b = await open(prefix);
    try {
      for (let i = 1; i <= 20; i++) publishSeq(i % 2 ? a.broker : b.broker, `d${i % 3}`, i);
      await waitFor('both to read 20 events', () => a.events.length === 20 && b.events.length === 20);
      assert.deepEqual(
        a.events.map((e) => e.cursor),
        b.events.map((e) => e.cursor),
      );
      assert.deepEqual(
        a.events.map((e) => String(e.json)),
        b.events.map((e) => String(e.json)),
      );
      const first = JSON.parse(String(a.events[0]!.json));
      assert.deepEqual(Object.keys(first).slice(0, 4), ['type', 'feed', 'device', 'cursor']);
      assert.equal(first.cursor, a.events[0]!.cursor);
      assert.match(a.events[0]!.cursor, /^\d+-\d+$/);
      assert.deepEqual(JSON.parse(String(a.events[0]!.snapshotJson())), { ...first, type: 'snapshot' });
      // A cursor seen on A resumes exactly on B.
      // (two publishers: the stream's order, not the publish calls', is the order)
      assert.deepEqual(seqs(b.broker.after(a.events[9]!.cursor, 100)), seqs(a.events.slice(10)));
      assert.deepEqual(seqs(b.broker.after(a.events[9]!.cursor, 3)), seqs(a.events.slice(10, 13)));
      assert.deepEqual(b.broker.after(a.events[19]!.cursor, 100), []);
      assert.equal(b.broker.after('nonsense', 100), 'gap');
      assert.equal(b.broker.after('zz1-5', 100), 'gap', 'a single-instance cursor');
      assert.equal(b.broker.after(`${Date.now() + 60_000}-0`, 100), 'gap', 'from the future');
      const latest = b.broker.latest([parseFeedFilter('telemetry/+') as never]);
      const newestPerDevice = new Map(a.events.map((e) => [e.device, e.cursor]));
      assert.deepEqual(
        latest.map((e) => e.cursor),
        [...newestPerDevice.values()].sort(
          (x, y) => a.events.findIndex((e) => e.cursor === x) - a.events.findIndex((e) => e.cursor === y),
        ),
      );
    } finally {
      await a.broker.close();
      await b.broker.close();
      a.health.close();
      b.health.close();
    }
  });

  test('a broker started later loads the history and the latest state of every feed', async () => {
    const prefix = `t${++prefixes}`;
    const a = await open(prefix, 5);
    try {
      publishSeq(a.broker, 'old', 1);
      for (let i = 2; i <= 12; i++) publishSeq(a.broker, 'busy', i);
      await waitFor('12 events', () => a.events.length === 12);
      const late = await open(prefix, 5);
      try {
        // 'old' fell out of the history but its snapshot is still there.
        const latest = late.broker.latest([parseFeedFilter('telemetry/+') as never]);
        assert.deepEqual(seqs(latest), [1, 12]);
        assert.deepEqual(seqs(late.broker.after(a.events[8]!.cursor, 100)), [10, 11, 12]);
        publishSeq(late.broker, 'busy', 13);
        await waitFor('the new event on both', () => late.events.length === 1 && a.events.length === 13);
        assert.equal(late.events[0]!.cursor, a.events[12]!.cursor);
      } finally {
        await late.broker.close();
        late.health.close();
      }
    } finally {
      await a.broker.close();
      a.health.close();
    }
  });

  test("a publisher's numbering: a skipped number is a gap (told, and resumes across it refused); a repeat is not delivered", async () => {
    if ('skip' in redis) return;
    const prefix = `t${++prefixes}`;
    const reader = await open(prefix);
    const seen: (number | 'gap')[] = [];
    reader.broker.onMessage((e) => seen.push(JSON.parse(String(e.json)).seq as number));
    reader.broker.onGap(() => seen.push('gap'));
    const raw = await reader.health.connect({ url: redis.url }, 'raw');
    const add = (n: number, seq: number) =>
      raw.xadd(`${prefix}:stream`, '*', 'e', `telemetry\x1fd9\x1f${seq}\x1f{"seq":${seq}}`, 'p', `pubX:${n}`);
    try {
      await add(1, 1);
      await add(2, 2);
      await add(4, 4); // number 3 never arrived: lost on the way
      await add(4, 4); // resent after a reconnect
      await add(5, 5);
      await waitFor('five entries read', () => seen.filter((s) => s !== 'gap').length >= 4);
      assert.deepEqual(seen, [1, 2, 'gap', 4, 5]);
      const cursors = reader.events.map((e) => e.cursor);
      assert.equal(reader.broker.after(cursors[1]!, 10), 'gap', 'a resume from before the loss');
      assert.deepEqual(seqs(reader.broker.after(cursors[2]!, 10)), [5], 'from after it: exact');
      assert.equal(reader.broker.gaps, 1);
    } finally {
      raw.disconnect();
      await reader.broker.close();
      reader.health.close();
    }
  });

  test('Redis restarts: not ready and events dropped while away; the reader resumes after, with a gap', async () => {
    if ('skip' in redis) return;
    const prefix = `t${++prefixes}`;
    const a = await open(prefix);
    const order: (number | 'gap')[] = [];
    a.broker.onMessage((e) => order.push(JSON.parse(String(e.json)).seq as number));
    a.broker.onGap(() => order.push('gap'));
    try {
      publishSeq(a.broker, 'd1', 1);
      await waitFor('first event', () => a.events.length === 1);
      assert.deepEqual(a.health.readiness(), { ok: true });
      await redis.stop();
      // Each connection notices the outage on its own socket's close, not all in one turn: wait
      // until the publisher has too, or this publish would still be written to the dead socket.
      await waitFor('not ready, the publisher down', () =>
        /redis unavailable \(.*live-pub/.test(a.health.readiness().reason ?? ''),
      );
      publishSeq(a.broker, 'd1', 2);
      assert.equal(a.broker.dropped, 1);
      await redis.start();
      await waitFor('ready again', () => a.health.readiness().ok, { timeoutMs: 15_000 });
      publishSeq(a.broker, 'd1', 3);
      await waitFor('the event after the outage', () => a.events.length === 2, { timeoutMs: 15_000 });
      assert.deepEqual(seqs(a.events), [1, 3]);
      // Event 2 was dropped: said before event 3, never a silent hole.
      assert.deepEqual(order, [1, 'gap', 3]);
      assert.equal(a.broker.after(a.events[0]!.cursor, 10), 'gap');
    } finally {
      await a.broker.close();
      a.health.close();
    }
  });

  test('close() during an outage returns (the XREAD stranded in the reconnecting client is not awaited)', async () => {
    if ('skip' in redis) return;
    const a = await open(`t${++prefixes}`);
    try {
      publishSeq(a.broker, 'd1', 1);
      await waitFor('first event', () => a.events.length === 1); // the reader is blocked in XREAD again
      await redis.stop();
      await waitFor('the reader down', () => /live-reader/.test(a.health.readiness().reason ?? ''));
      let closed = false;
      void a.broker.close().then(() => {
        closed = true;
      });
      // Polled, not awaited: a close() that hangs leaves no handle and would end the run silently.
      await waitFor('close() to return', () => closed, { timeoutMs: 5000 });
    } finally {
      await a.broker.close();
      a.health.close();
      if (!redis.running) await redis.start();
    }
  });
});
