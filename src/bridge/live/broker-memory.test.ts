/**
 * What the in-memory live broker adds to the LiveBroker contract (test/live-broker-contract.test.ts):
 * its history is bounded by bytes too, and its latest state by the number of feeds.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryLiveBroker } from './broker-memory.js';

function publish(broker: MemoryLiveBroker, device: string, seq: number, pad = ''): void {
  broker.publish({
    kind: 'telemetry',
    device,
    time: seq,
    body: { seq, time: seq, values: { v: seq }, labels: pad ? { pad } : {} },
  });
}

test('history is bounded by bytes as well as count', () => {
  const broker = new MemoryLiveBroker({ historyCount: 1000, historyBytes: 10_000 });
  for (let i = 1; i <= 100; i++) publish(broker, 'd1', i, 'x'.repeat(900));
  const { count, bytes } = broker.historyStats();
  assert.ok(bytes <= 10_000, `${bytes} bytes`);
  assert.ok(count >= 9 && count <= 10, `${count} events`);
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
