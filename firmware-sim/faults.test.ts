import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BUILTIN_SCHEMAS } from '../src/config.js';
import { loadSchemas } from '../src/schemas/registry.js';
import { codec, type WireSample } from './codec.js';
import { buildFault, FAULT_SEQ_BASE } from './faults.js';

const Telemetry = loadSchemas(BUILTIN_SCHEMAS).type('telemetry.v1.Telemetry');
const sample: WireSample = { time_unix_ms: Date.now(), values: { temperature_c: 21, counter: 7 } };
let n = FAULT_SEQ_BASE;
const next = () => ++n;
const build = (kind: Parameters<typeof buildFault>[0], opts = {}) =>
  buildFault(kind, 'dev', sample, next, codec().telemetry, opts);
const decode = (b: Buffer) =>
  Telemetry.toObject(Telemetry.decode(b), { longs: Number }) as {
    device_id: string;
    seq: number;
    samples: { time_unix_ms: number; values: Record<string, number>; labels: Record<string, string> }[];
  };

test('malformed never decodes', () => {
  assert.throws(() => Telemetry.decode(build('malformed')[0]!.payload));
});

test('oversize is a valid message just over the size', () => {
  const [m] = build('oversize', { oversizeBytes: 17_000 });
  assert.ok(m!.payload.length > 17_000 && m!.payload.length < 20_000);
  assert.ok(decode(m!.payload).samples.length > 1);
});

test('wrong device, clock skew, NaN: one defect each, fault-space seq, no counter', () => {
  const wrong = decode(build('wrongDevice')[0]!.payload);
  assert.notEqual(wrong.device_id, 'dev');
  const skew = decode(build('clockSkew')[0]!.payload);
  assert.ok(skew.samples[0]!.time_unix_ms > Date.now() + 5 * 60_000);
  const nan = decode(build('nan')[0]!.payload);
  assert.ok(Number.isNaN(nan.samples[0]!.values['temperature_c']));
  for (const m of [wrong, skew, nan]) {
    assert.ok(m.seq > FAULT_SEQ_BASE);
    assert.equal(m.samples[0]!.values['counter'], undefined);
    assert.ok(m.samples[0]!.labels['fault']);
  }
  assert.equal(sample.values['counter'], 7, 'the real sample is not mutated');
});

test('burst: N valid messages with distinct fault seqs', () => {
  const burst = build('burst', { burstSize: 5 });
  assert.equal(burst.length, 5);
  assert.equal(new Set(burst.map((m) => decode(m.payload).seq)).size, 5);
});
