import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RECORD_HEADER_BYTES } from '../record-file.js';
import { BatchEncoder, EventReader, fieldsJson, type HistoryInput } from './codec.js';

const key = (major: number) => ({ major, minor: 0 });

/** Encodes `events` into one batch and reads them back: kind, device, time, fields as JSON. */
function roundTrip(events: HistoryInput[]): [string, string, number, string][] {
  const encoder = new BatchEncoder(1 << 20);
  for (const e of events) assert.equal(encoder.add(e), true);
  const record = encoder.finish()!;
  const r = new EventReader(record.subarray(RECORD_HEADER_BYTES));
  const out: [string, string, number, string][] = [];
  while (r.next()) out.push([r.kind, r.device, r.time, r.body()]);
  return out;
}

test('events stored as fields come back as the JSON the live broker streams, byte for byte', () => {
  const events: HistoryInput[] = [
    {
      kind: 'telemetry',
      device: 'd1',
      key: key(1),
      time: 1_764_115_200_123,
      seq: 42,
      values: { temperature_c: 21.5, neg: -0.000123, big: 1e21, zero: -0 },
      labels: { site: 'lab "A"\n', 'ünï.code': '日本語 ✓', empty: '' },
    },
    { kind: 'telemetry', device: 'd2', key: key(2), time: 5, seq: 0, values: {}, labels: {} },
    { kind: 'status', device: 'd1', key: key(3), time: 7, state: 'offline', firmware: '1.2.0 "beta"' },
    { kind: 'status', device: 'd3', key: key(4), time: 8, state: 'online', firmware: '' },
    // From Redis: only the JSON.
    {
      kind: 'telemetry',
      device: 'd4',
      key: key(5),
      time: 9,
      json: '{"seq":1,"time":9,"values":{"v":1},"labels":{}}',
    },
    // A firmware too long for a names entry (u16 length): kept as JSON, read back the same.
    { kind: 'status', device: 'd5', key: key(6), time: 10, state: 'online', firmware: 'x'.repeat(70_000) },
  ];
  assert.deepEqual(
    roundTrip(events),
    events.map((e) => [e.kind, e.device, e.time, fieldsJson(e)]),
  );
  // fieldsJson is the hub's order: seq, time, values, labels / state, firmware, time.
  assert.equal(
    fieldsJson(events[0]!),
    JSON.stringify({
      seq: 42,
      time: 1_764_115_200_123,
      values: events[0]!.values,
      labels: events[0]!.labels,
    }),
  );
});

test('a batch that fills up refuses the next event, which starts the next batch', () => {
  const encoder = new BatchEncoder(16 << 10);
  let added = 0;
  const e = (k: number): HistoryInput => ({
    kind: 'telemetry',
    device: `dev-${k % 50}`,
    key: key(k),
    time: k,
    seq: k,
    values: { a: k, b: k / 2, c: -k },
    labels: { site: `s${k % 3}` },
  });
  let k = 1;
  while (encoder.add(e(k))) {
    added++;
    k++;
  }
  assert.ok(added > 50, `${added} events in 16 KiB`);
  const first = encoder.finish()!;
  assert.ok(first.length <= 16 << 10);
  assert.equal(encoder.add(e(k)), true);
  const r = new EventReader(first.subarray(RECORD_HEADER_BYTES));
  let n = 0;
  while (r.next()) {
    n++;
    assert.equal(r.body(), fieldsJson(e(n)));
  }
  assert.equal(n, added);
});
