/**
 * What the in-memory live broker adds to the LiveBroker contract (test/live-broker-contract.test.ts):
 * its history is bounded by bytes too, its latest state by the number of feeds, and an event's JSON
 * is built when first read.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { publishSeq } from '../../../test/support/live-events.js';
import type { LiveEvent } from './broker.js';
import { MemoryLiveBroker } from './broker-memory.js';

test('an event read later (resume, snapshot) has the JSON it would have had when published', () => {
  // The memory broker builds an event's JSON on first read (issue 14), not when it is published.
  const broker = new MemoryLiveBroker({ historyCount: 10, historyBytes: 1 << 20 });
  publishSeq(broker, 'd1', 1, 'x');
  publishSeq(broker, 'd1', 2);
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
  assert.equal(first!.json, first!.json, 'built once');
  assert.equal(broker.latest([{ kind: 'telemetry', device: 'd1' }])[0], second);
});

test('history is bounded by bytes as well as count', () => {
  const broker = new MemoryLiveBroker({ historyCount: 1000, historyBytes: 10_000 });
  for (let i = 1; i <= 100; i++) publishSeq(broker, 'd1', i, 'x'.repeat(900));
  const { count, bytes } = broker.historyStats();
  assert.ok(bytes <= 10_000, `${bytes} bytes`);
  assert.ok(count >= 9 && count <= 10, `${count} events`);
});

test('latest state is bounded: least recently updated feeds go first', () => {
  const broker = new MemoryLiveBroker({ historyCount: 10, historyBytes: 1 << 20, maxFeeds: 2 });
  publishSeq(broker, 'a', 1);
  publishSeq(broker, 'b', 2);
  publishSeq(broker, 'a', 3);
  publishSeq(broker, 'c', 4);
  assert.deepEqual(
    broker.latest([{ kind: undefined, device: undefined }]).map((e) => e.device),
    ['a', 'c'],
  );
});
