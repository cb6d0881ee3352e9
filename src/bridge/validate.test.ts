import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { BUILTIN_SCHEMAS } from '../config.js';
import { REJECT_REASONS } from '../errors.js';
import { loadSchemas } from '../schemas/registry.js';
import { validate } from './validate.js';

const schemas = loadSchemas(BUILTIN_SCHEMAS);
const telemetry = schemas.match('devices/d1/telemetry')!;
const status = schemas.match('devices/d1/status')!;
const Telemetry = schemas.type('telemetry.v1.Telemetry');
const NOW = 1_764_115_200_000;

const encode = (message: object) => Buffer.from(Telemetry.encode(message).finish());

test('a good message becomes a reading with plain numbers; time 0 is the receive time', () => {
  const result = validate(
    telemetry,
    'devices/d1/telemetry',
    encode({
      device_id: 'd1',
      seq: 41,
      samples: [{ time_unix_ms: 0, values: { t: 21.5 }, labels: { room: 'a' } }],
    }),
    16_384,
    NOW,
  );
  assert.ok(result.ok && result.kind === 'telemetry');
  assert.deepEqual(result.reading, {
    deviceId: 'd1',
    seq: 41,
    receivedAt: NOW,
    samples: [{ time: NOW, values: { t: 21.5 }, labels: { room: 'a' } }],
  });
});

test('the edges of the time window are inclusive', () => {
  for (const [time, ok] of [
    [NOW - 30 * 86_400_000, true],
    [NOW - 30 * 86_400_000 - 1, false],
    [NOW + 300_000, true],
    [NOW + 300_001, false],
  ] as const) {
    const r = validate(
      telemetry,
      'devices/d1/telemetry',
      encode({ device_id: 'd1', samples: [{ time_unix_ms: time, values: { v: 1 } }] }),
      16_384,
      NOW,
    );
    assert.equal(r.ok, ok, `time ${time - NOW}`);
  }
});

test('the size check comes first', () => {
  const r = validate(telemetry, 'devices/d1/telemetry', Buffer.alloc(100, 0xff), 99, NOW);
  assert.ok(!r.ok && r.reason === 'too_large');
});

test('a status message becomes a status change', () => {
  const DeviceStatus = schemas.type('telemetry.v1.DeviceStatus');
  const r = validate(
    status,
    'devices/d1/status',
    Buffer.from(DeviceStatus.encode({ state: 2, firmware: '1.0' }).finish()),
    16_384,
    NOW,
  );
  assert.ok(r.ok && r.kind === 'status');
  assert.deepEqual(r.status, { deviceId: 'd1', state: 'offline', firmware: '1.0', time: NOW });
});

test('random and mutated payloads never throw and always give a known outcome (fuzz)', () => {
  const good = encode({
    device_id: 'd1',
    seq: 7,
    samples: [{ time_unix_ms: NOW, values: { t: 1, h: 2 }, labels: { a: 'b' } }],
  });
  const outcome = (payload: Buffer) => {
    const r = validate(telemetry, 'devices/d1/telemetry', payload, 16_384, NOW);
    if (!r.ok) assert.ok((REJECT_REASONS as readonly string[]).includes(r.reason));
    else assert.equal(r.kind, 'telemetry');
  };
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 512 }), (bytes) => outcome(Buffer.from(bytes))),
    {
      numRuns: Number(process.env['FUZZ_RUNS'] ?? 3000),
    },
  );
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.nat(good.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }),
      (edits) => {
        const copy = Buffer.from(good);
        for (const [at, byte] of edits) copy[at] = byte;
        outcome(copy);
      },
    ),
    { numRuns: Number(process.env['FUZZ_RUNS'] ?? 3000) },
  );
});
