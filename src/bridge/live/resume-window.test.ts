import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { eventBytesAtMost, eventJson, HistoryRing, jsonBytesAtMost } from './resume-window.js';

const text = fc.string({
  unit: fc.oneof(
    fc.constantFrom('a', 'Z', '_', '.', ' ', '"', '\\', '\n', '\u0000', '\u007f', 'é', '€'),
    fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }),
  ),
});
const number = fc.oneof(
  fc.double(),
  fc.integer(),
  fc.constantFrom(Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, -0, 1e21, -Number.MIN_VALUE),
);

test('the size bound of an event is never below the bytes of its JSON', () => {
  const body = fc.record({
    seq: number,
    time: number,
    values: fc.dictionary(text, number, { maxKeys: 6 }),
    labels: fc.dictionary(text, text, { maxKeys: 6 }),
  });
  // An epoch is base 36 and hex digits (broker-memory.ts).
  const epochs = fc.stringMatching(/^[0-9a-z]{1,16}$/);
  fc.assert(
    fc.property(text, epochs, fc.nat({ max: 2 ** 53 - 1 }), body, (device, epoch, position, b) => {
      const cursor = `${epoch}-${position}`;
      const json = eventJson('telemetry', `telemetry/${device}`, device, cursor, JSON.stringify(b));
      const bound = eventBytesAtMost('telemetry', `telemetry/${device}`, device, cursor.length, b);
      assert.ok(bound >= json.length, `${bound} < ${json.length}: ${json}`);
    }),
    { numRuns: 3000 },
  );
});

test('the bound is exact for plain ASCII strings and close for typical readings', () => {
  assert.equal(jsonBytesAtMost({}), 2);
  assert.equal(
    jsonBytesAtMost({ firmware: '1.2.0', state: 'online' }),
    '{"firmware":"1.2.0","state":"online"}'.length,
  );
  assert.equal(jsonBytesAtMost({ labels: {} }), '{"labels":{}}'.length);
  const reading = {
    seq: 41,
    time: 1_764_115_200_000,
    values: { temperature_c: 21.5 },
    labels: { room: 'lab' },
  };
  const exact = JSON.stringify(reading).length;
  // Numbers are counted at their widest: 17 for an integer, 24 for a double.
  assert.equal(jsonBytesAtMost(reading), exact + (17 - 2) + (17 - 13) + (24 - 4));
});

test('the ring keeps its byte bound with the bound of each event', () => {
  const evicted: number[] = [];
  const ring = new HistoryRing<{ bytes: number; id: number }>(100, 1000, (e) => evicted.push(e.id));
  for (let id = 0; id < 10; id++) ring.push({ bytes: 300, id });
  assert.equal(ring.size, 3);
  assert.equal(ring.bytes, 900);
  assert.deepEqual(evicted, [0, 1, 2, 3, 4, 5, 6]);
  ring.push({ bytes: 5000, id: 10 });
  assert.equal(ring.size, 1, 'the newest event is always kept');
});
