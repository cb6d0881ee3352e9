/**
 * What the in-memory live broker adds to the LiveBroker contract (test/live-broker-contract.test.ts):
 * its history is bounded by bytes too, and its latest state by the number of feeds.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { publishSeq } from '../../../test/support/live-events.js';
import { MemoryLiveBroker } from './broker-memory.js';

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
