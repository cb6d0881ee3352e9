/**
 * The LiveBroker contract (src/bridge/live/broker.ts), one suite run against both implementations:
 * the in-memory broker of a single instance and the Redis Streams broker of a cluster (a real
 * redis-server). What each implementation adds of its own (bytes bound and feed bound in memory;
 * sharing, late start and outages on Redis) is tested beside it.
 *
 * - `publish` builds the message's JSON once: type, feed, device and cursor first; the snapshot form
 *   differs only in its type, and is built once.
 * - Every listener gets every event, the same object, in cursor order; an event is in `after()` and
 *   `latest()` before any listener sees it.
 * - `after()` replays exactly, `[]` at the head, pages by `limit`, and answers `gap` for a cursor
 *   that is malformed, from another epoch or the future, or older than the bounded history.
 * - `latest()` holds the newest event of every feed matching the patterns, in cursor order.
 */
import assert from 'node:assert/strict';
import type { LiveBroker, LiveEvent } from '../src/bridge/live/broker.js';
import { MemoryLiveBroker } from '../src/bridge/live/broker-memory.js';
import { type FeedPattern, parseFeedFilter } from '../src/feeds.js';
import { createLogger } from '../src/log.js';
import { RedisHealth } from '../src/redis.js';
import { contractSuite } from './support/contract.js';
import { openRedisLiveBroker, publishSeq, seqs } from './support/live-events.js';
import { startRedis } from './support/redis.js';
import { waitFor } from './support/wait.js';

/** An implementation: opens fresh brokers (each its own history), and closes them all. */
interface Brokers {
  open(historyCount: number): Promise<LiveBroker>;
  close(): Promise<void>;
}

const log = createLogger('silent');
const ALL: FeedPattern[] = [{ kind: undefined, device: undefined }];

function contract(name: string, open: () => Promise<Brokers | { skip: string }>) {
  contractSuite(`LiveBroker contract: ${name}`, open, ({ test, subject }) => {
    /** A broker with a listener that records, and checks what the contract promises at delivery. */
    async function brokerUnderTest(historyCount = 100) {
      const broker = await subject().open(historyCount);
      const events: LiveEvent[] = [];
      const violations: string[] = [];
      broker.onMessage((e) => {
        const previous = events.at(-1);
        if (previous && previous.position >= e.position && previous.cursor !== e.cursor) {
          violations.push(`${e.cursor} after ${previous.cursor}`);
        }
        if (!broker.latest(ALL).some((l) => l.cursor === e.cursor)) {
          violations.push(`${e.cursor} not in latest() when delivered`);
        }
        if (previous && broker.after(previous.cursor, 1) !== 'gap') {
          const next = broker.after(previous.cursor, 1) as readonly LiveEvent[];
          if (next[0]?.cursor !== e.cursor) violations.push(`${e.cursor} not in after() when delivered`);
        }
        events.push(e);
      });
      return { broker, events, violations };
    }

    test('JSON built once: type, feed, device, cursor first; the snapshot form swaps only the type', async () => {
      const { broker, events } = await brokerUnderTest();
      const second: LiveEvent[] = [];
      broker.onMessage((e) => second.push(e));
      publishSeq(broker, 'd1', 1);
      await waitFor('the event', () => events.length === 1 && second.length === 1);
      const e = events[0]!;
      assert.equal(second[0], e, 'every listener gets the same event');
      const parsed = JSON.parse(String(e.json));
      assert.deepEqual(Object.keys(parsed).slice(0, 4), ['type', 'feed', 'device', 'cursor']);
      assert.deepEqual(
        [parsed.type, parsed.feed, parsed.device, parsed.cursor],
        ['telemetry', 'telemetry/d1', 'd1', e.cursor],
      );
      assert.deepEqual(JSON.parse(String(e.snapshotJson())), { ...parsed, type: 'snapshot' });
      assert.equal(e.snapshotJson(), e.snapshotJson(), 'the snapshot form is built once');
    });

    test('listeners get every event in cursor order, already in after() and latest()', async () => {
      const { broker, events, violations } = await brokerUnderTest();
      for (let i = 1; i <= 30; i++) publishSeq(broker, `d${i % 4}`, i);
      await waitFor('30 events', () => events.length === 30);
      assert.deepEqual(
        seqs(events),
        Array.from({ length: 30 }, (_, i) => i + 1),
      );
      assert.deepEqual(violations, []);
    });

    test('after(): exact replay, [] at the head, pages by limit; gap when unknown', async () => {
      const { broker, events } = await brokerUnderTest();
      for (let i = 1; i <= 8; i++) publishSeq(broker, 'd1', i);
      await waitFor('8 events', () => events.length === 8);
      assert.deepEqual(seqs(broker.after(events[2]!.cursor, 100)), [4, 5, 6, 7, 8]);
      assert.deepEqual(seqs(broker.after(events[4]!.cursor, 2)), [6, 7]);
      assert.deepEqual(broker.after(events[7]!.cursor, 100), []);
      assert.equal(broker.after('nonsense', 100), 'gap', 'malformed');
      assert.equal(broker.after('', 100), 'gap', 'empty');
      assert.equal(broker.after('zzz-3', 100), 'gap', 'another epoch');
      const future = events[7]!.cursor.replace(/\d+$/, (n) => String(Number(n) + 1_000_000));
      assert.equal(broker.after(future, 100), 'gap', 'from the future');
    });

    test('bounded history: older cursors get gap; the newest historyCount still replay', async () => {
      const { broker, events } = await brokerUnderTest(5);
      for (let i = 1; i <= 12; i++) publishSeq(broker, 'd1', i);
      await waitFor('12 events', () => events.length === 12);
      // The newest 5 are kept: resuming after the 7th is exact, after the 6th is not.
      assert.deepEqual(seqs(broker.after(events[6]!.cursor, 100)), [8, 9, 10, 11, 12]);
      assert.equal(broker.after(events[5]!.cursor, 100), 'gap');
    });

    test('latest(): the newest per feed, matching the patterns, in cursor order', async () => {
      const { broker, events } = await brokerUnderTest();
      publishSeq(broker, 'b', 1);
      publishSeq(broker, 'a', 2);
      publishSeq(broker, 'b', 3);
      broker.publish({
        kind: 'status',
        device: 'a',
        time: 4,
        body: { state: 'online', firmware: '', time: 4 },
      });
      await waitFor('4 events', () => events.length === 4);
      assert.deepEqual(
        broker.latest(ALL).map((e) => [e.feed, e.cursor]),
        [
          ['telemetry/a', events[1]!.cursor],
          ['telemetry/b', events[2]!.cursor],
          ['status/a', events[3]!.cursor],
        ],
      );
      assert.deepEqual(seqs(broker.latest([parseFeedFilter('telemetry/b') as FeedPattern])), [3]);
      assert.deepEqual(
        broker.latest([parseFeedFilter('+/a') as FeedPattern]).map((e) => e.feed),
        ['telemetry/a', 'status/a'],
      );
    });
  });
}

/** Every broker `make` opened, closed in the order opened, then `stop`. */
function brokers(make: (historyCount: number) => Promise<LiveBroker>, stop = async () => {}): Brokers {
  const opened: LiveBroker[] = [];
  return {
    async open(historyCount) {
      const broker = await make(historyCount);
      opened.push(broker);
      return broker;
    },
    async close() {
      for (const broker of opened) await broker.close();
      await stop();
    },
  };
}

contract('in memory', async () =>
  brokers(async (historyCount) => new MemoryLiveBroker({ historyCount, historyBytes: 1 << 20 })),
);

contract('Redis Streams (redis-server)', async () => {
  const redis = await startRedis();
  if ('skip' in redis) return redis;
  const health = new RedisHealth(log);
  let prefixes = 0;
  return brokers(
    (historyCount) =>
      openRedisLiveBroker(redis.url, health, { keyPrefix: `contract${++prefixes}`, historyCount }),
    async () => {
      health.close();
      await redis.stop();
    },
  );
});
