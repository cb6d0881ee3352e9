/**
 * The history store fed from the live broker's stream (history-feed.ts): by the memory broker, whose
 * cursors continue across a restart, and by the Redis broker's reader (a real redis-server), which
 * resumes the store after a restart (the events published meanwhile by another instance are
 * streamed once more and stored without a hole) unless the stream was trimmed past it (then the
 * hole is known: a cursor in it gets gap).
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { RawSeries } from '../src/bridge/history/downsample.js';
import type { StoredEvent } from '../src/bridge/history/engine.js';
import { parseCursor } from '../src/bridge/history/key.js';
import { HistoryStore } from '../src/bridge/history/store.js';
import type { LiveBroker } from '../src/bridge/live/broker.js';
import { MemoryLiveBroker } from '../src/bridge/live/broker-memory.js';
import type { RedisLiveBroker } from '../src/bridge/live/broker-redis.js';
import { HistoryFeed } from '../src/bridge/live/history-feed.js';
import { createLogger } from '../src/log.js';
import { RedisHealth } from '../src/redis.js';
import { openRedisLiveBroker } from './support/live-events.js';
import { startRedis } from './support/redis.js';
import { tempDir } from './support/services.js';
import { waitFor } from './support/wait.js';

const log = createLogger('silent');
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function dir(): string {
  const d = tempDir('history-feed');
  dirs.push(d);
  return join(d, 'history');
}

const T0 = 1_764_115_200_000;
function publish(broker: LiveBroker, device: string, seq: number): void {
  broker.publish({
    kind: 'telemetry',
    device,
    time: T0 + seq,
    body: { seq, time: T0 + seq, values: { v: seq }, labels: { n: `#${seq}` } },
  });
}

/** Every stored event after `cursor` (or 'gap'). */
async function readAfter(store: HistoryStore, cursor: string): Promise<StoredEvent[] | 'gap'> {
  let key = parseCursor(cursor, store.epoch)!;
  const out: StoredEvent[] = [];
  for (;;) {
    const page = await store.after({ key, limit: 1000 });
    if (page === 'gap') return 'gap';
    out.push(...page.events);
    if (page.end) return out;
    key = page.last!;
  }
}

const seqOf = (e: StoredEvent) => (JSON.parse(e.body) as { seq: number }).seq;

test('the memory broker: every event stored by its fields, and cursors that continue across a restart', async () => {
  const d = dir();
  let store = await HistoryStore.open({
    dir: d,
    keys: { type: 'local' },
    retentionMs: 86_400_000,
    maxBytes: 1 << 26,
  });
  let broker = new MemoryLiveBroker({
    historyCount: 10,
    historyBytes: 1 << 20,
    epoch: store.info.epoch!,
    nextPosition: store.info.nextPosition!,
  });
  broker.onMessage(new HistoryFeed(store).append);
  const json: string[] = [];
  broker.onMessage((e) => json.push(String(e.json)));
  for (let seq = 1; seq <= 50; seq++) publish(broker, `d${seq % 3}`, seq);
  const start = `${store.epoch}-0`;
  const stored = await readAfter(store, start);
  assert.notEqual(stored, 'gap');
  // Rebuilt from the fields, each is the message the broker streamed.
  assert.deepEqual(
    (stored as StoredEvent[]).map((e, i) => JSON.parse(json[i]!).cursor === `${store.epoch}-${e.key.major}`),
    Array(50).fill(true),
  );
  const last = broker.head();
  await store.close();

  store = await HistoryStore.open({
    dir: d,
    keys: { type: 'local' },
    retentionMs: 86_400_000,
    maxBytes: 1 << 26,
  });
  broker = new MemoryLiveBroker({
    historyCount: 10,
    historyBytes: 1 << 20,
    epoch: store.info.epoch!,
    nextPosition: store.info.nextPosition!,
  });
  broker.onMessage(new HistoryFeed(store).append);
  for (let seq = 51; seq <= 60; seq++) publish(broker, 'd0', seq);
  assert.equal(broker.head(), `${store.epoch}-60`, 'the same epoch, positions continuing');
  const across = await readAfter(store, last);
  assert.deepEqual(
    (across as StoredEvent[]).map(seqOf),
    Array.from({ length: 10 }, (_, i) => 51 + i),
  );
  await store.close();
});

const redis = await startRedis();
const skip = 'skip' in redis ? redis.skip : undefined;

describe('the Redis broker feeds the store', { skip }, () => {
  let prefixes = 0;
  after(async () => {
    if (!('skip' in redis)) await redis.stop();
  });

  async function instance(
    keyPrefix: string,
    store: HistoryStore | undefined,
    historyCount = 1000,
  ): Promise<{ broker: RedisLiveBroker; health: RedisHealth }> {
    if ('skip' in redis) throw new Error('no redis');
    const health = new RedisHealth(log);
    const broker = await openRedisLiveBroker(redis.url, health, {
      keyPrefix,
      historyCount,
      blockMs: 200,
      ...(store ? { history: new HistoryFeed(store) } : {}),
    });
    return { broker, health };
  }
  const stream = (prefix: string) => ({ type: 'external' as const, stream: `test ${prefix}` });
  const close = async (i: { broker: RedisLiveBroker; health: RedisHealth }) => {
    await i.broker.close();
    i.health.close();
  };

  for (const trimmed of [false, true]) {
    test(
      trimmed
        ? 'the stream trimmed past the store while it was away: the hole is known (gap), later events are stored'
        : 'after a restart the reader streams what it missed to the store: no hole',
      async () => {
        const prefix = `hf${++prefixes}`;
        const d = dir();
        const options = { dir: d, keys: stream(prefix), retentionMs: 86_400_000, maxBytes: 1 << 26 };
        let store = await HistoryStore.open(options);
        // A small stream (MAXLEN ~ 10) when it is to be trimmed past what the store holds.
        const count = trimmed ? 10 : 1000;
        let a = await instance(prefix, store, count);
        const b = await instance(prefix, undefined, count);
        for (let seq = 1; seq <= 20; seq++) publish(b.broker, 'dev', seq);
        await waitFor('A to read them all', async () => (await store.stats()).events === 20);
        const cursor = a.broker.head();
        await close(a);
        await store.close();
        // While A is away: 200 more (more than a trimmed stream keeps).
        for (let seq = 21; seq <= 220; seq++) publish(b.broker, 'dev', seq);
        const newest = () => {
          const e = b.broker.latest([{ kind: 'telemetry', device: 'dev' }])[0];
          return e ? (JSON.parse(String(e.json)) as { seq: number }).seq : 0;
        };
        await waitFor('B to read them', () => newest() === 220);

        store = await HistoryStore.open(options);
        assert.equal(
          store.info.newestKey && `${store.info.newestKey.major}-${store.info.newestKey.minor}`,
          cursor,
        );
        a = await instance(prefix, store, count);
        for (let seq = 221; seq <= 230; seq++) publish(b.broker, 'dev', seq);
        await waitFor('A to store the last one', async () => {
          const r = await store.range({ device: 'dev', from: T0, to: T0 + 1000 });
          return (r.series['v'] as RawSeries | undefined)?.values.includes(230);
        });
        const resumed = await readAfter(store, cursor);
        if (trimmed) assert.equal(resumed, 'gap');
        else {
          assert.deepEqual(
            (resumed as StoredEvent[]).map(seqOf),
            Array.from({ length: 210 }, (_, i) => 21 + i),
          );
        }
        await close(a);
        await close(b);
        await store.close();
      },
    );
  }
});
