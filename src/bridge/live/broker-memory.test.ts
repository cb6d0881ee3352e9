import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { LiveEvent } from './broker.js';
import { MemoryLiveBroker } from './broker-memory.js';

function publish(broker: MemoryLiveBroker, device: string, seq: number, pad = ''): void {
  broker.publish({
    kind: 'telemetry',
    device,
    time: seq,
    body: { seq, time: seq, values: { v: seq }, labels: pad ? { pad } : {} },
  });
}

function collect(broker: MemoryLiveBroker): LiveEvent[] {
  const events: LiveEvent[] = [];
  broker.onMessage((e) => events.push(e));
  return events;
}

test('JSON is built once with type, feed, device and cursor first; snapshot form swaps only the type', () => {
  const broker = new MemoryLiveBroker({ historyCount: 10, historyBytes: 1 << 20 });
  const events = collect(broker);
  publish(broker, 'd1', 1);
  const e = events[0]!;
  const parsed = JSON.parse(String(e.json));
  assert.deepEqual(Object.keys(parsed).slice(0, 4), ['type', 'feed', 'device', 'cursor']);
  assert.equal(parsed.type, 'telemetry');
  assert.equal(parsed.feed, 'telemetry/d1');
  assert.equal(parsed.cursor, e.cursor);
  assert.deepEqual(JSON.parse(String(e.snapshotJson())), { ...parsed, type: 'snapshot' });
  assert.equal(e.snapshotJson(), e.snapshotJson(), 'built once');
  assert.equal(e.json, e.json, 'built once');
});

test('an event read later (resume, snapshot) has the JSON it would have had when published', () => {
  const broker = new MemoryLiveBroker({ historyCount: 10, historyBytes: 1 << 20 });
  publish(broker, 'd1', 1, 'x');
  publish(broker, 'd1', 2);
  const [first, second] = broker.after(`${broker.epoch}-0`, 10) as LiveEvent[];
  assert.deepEqual(JSON.parse(String(first!.json)), {
    type: 'telemetry',
    feed: 'telemetry/d1',
    device: 'd1',
    cursor: `${broker.epoch}-1`,
    seq: 1,
    time: 1,
    values: { v: 1 },
    labels: { pad: 'x' },
  });
  assert.equal(broker.latest([{ kind: 'telemetry', device: 'd1' }])[0], second);
});

test('after(): exact replay inside the history, [] at the head, gap when too old, foreign or malformed', () => {
  const broker = new MemoryLiveBroker({ historyCount: 5, historyBytes: 1 << 20 });
  const events = collect(broker);
  for (let i = 1; i <= 8; i++) publish(broker, 'd1', i);
  // History holds 4..8: resuming after 3 is still exact; after 2 is not.
  const page = broker.after(events[2]!.cursor, 100);
  assert.notEqual(page, 'gap');
  assert.deepEqual(
    (page as LiveEvent[]).map((e) => e.position),
    [4, 5, 6, 7, 8],
  );
  assert.equal(broker.after(events[1]!.cursor, 100), 'gap');
  assert.deepEqual(broker.after(events[7]!.cursor, 100), []);
  assert.deepEqual(
    (broker.after(events[4]!.cursor, 2) as LiveEvent[]).map((e) => e.position),
    [6, 7],
  );
  assert.equal(broker.after(`${broker.epoch}-99`, 10), 'gap', 'from the future');
  assert.equal(broker.after('zzz-3', 10), 'gap', 'another epoch');
  assert.equal(broker.after('nonsense', 10), 'gap');
  const other = new MemoryLiveBroker({ historyCount: 5, historyBytes: 1 << 20 });
  assert.notEqual(other.epoch, broker.epoch);
});

test('history is bounded by bytes as well as count', () => {
  const broker = new MemoryLiveBroker({ historyCount: 1000, historyBytes: 10_000 });
  for (let i = 1; i <= 100; i++) publish(broker, 'd1', i, 'x'.repeat(900));
  const { count, bytes } = broker.historyStats();
  assert.ok(bytes <= 10_000, `${bytes} bytes`);
  assert.ok(count >= 9 && count <= 10, `${count} events`);
});

test('latest(): newest per feed, matching patterns, in cursor order', () => {
  const broker = new MemoryLiveBroker({ historyCount: 10, historyBytes: 1 << 20 });
  publish(broker, 'b', 1);
  publish(broker, 'a', 2);
  publish(broker, 'b', 3);
  broker.publish({ kind: 'status', device: 'a', time: 4, body: { state: 'online', firmware: '', time: 4 } });
  const all = broker.latest([{ kind: undefined, device: undefined }]);
  assert.deepEqual(
    all.map((e) => [e.feed, e.position]),
    [
      ['telemetry/a', 2],
      ['telemetry/b', 3],
      ['status/a', 4],
    ],
  );
  assert.deepEqual(
    broker.latest([{ kind: 'telemetry', device: 'b' }]).map((e) => e.position),
    [3],
  );
  assert.deepEqual(
    broker.latest([{ kind: undefined, device: 'a' }]).map((e) => e.feed),
    ['telemetry/a', 'status/a'],
  );
});

test('latest state is bounded: least recently updated feeds go first', () => {
  const broker = new MemoryLiveBroker({ historyCount: 10, historyBytes: 1 << 20, maxFeeds: 2 });
  publish(broker, 'a', 1);
  publish(broker, 'b', 2);
  publish(broker, 'a', 3);
  publish(broker, 'c', 4);
  assert.deepEqual(
    broker.latest([{ kind: undefined, device: undefined }]).map((e) => e.device),
    ['a', 'c'],
  );
});
