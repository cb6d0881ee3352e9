import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import mqttPacket from 'mqtt-packet';
import { FixedHeaderReader, MalformedLengthError, PacketTooLargeError } from './guard.js';

/** The fixed header of a PUBLISH announcing `remaining` bytes. */
function header(remaining: number): Buffer {
  const bytes = [0x30];
  let n = remaining;
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    bytes.push(b);
  } while (n > 0);
  return Buffer.from(bytes);
}

test('a packet announcing more than the limit is refused at its header, before any body byte', () => {
  const reader = new FixedHeaderReader(65_536);
  const err = reader.feed(header(200 * 1024 * 1024));
  assert.ok(err instanceof PacketTooLargeError);
  assert.equal(err.limit, 65_536);
});

test('the header split one byte a chunk is refused at the byte that makes the length certain', () => {
  // [limit, announced remaining length, header bytes fed when refused, announced size then]
  const cases: [number, number, number, number][] = [
    // 0x30 0x88 0x27: after 0x88 only 8 is known (more bytes follow); 5000 is certain at the last byte.
    [1000, 5000, 3, 5000 + 3],
    // 0x30 0xE4 0x27: the low seven bits alone (100) already exceed 50, one byte before the end.
    [50, 100 + 39 * 128, 2, 100 + 2],
    // 0x30 0x80 0x80 0x80 0x64: nothing is known until the fourth length byte.
    [65_536, 200 * 1024 * 1024, 5, 200 * 1024 * 1024 + 5],
  ];
  for (const [limit, remaining, cutAt, announced] of cases) {
    const reader = new FixedHeaderReader(limit);
    // The header and the first body bytes, one byte a chunk.
    const bytes = Buffer.concat([header(remaining), Buffer.alloc(16)]);
    let err: Error | undefined;
    let fedBytes = 0;
    for (const b of bytes) {
      fedBytes++;
      err = reader.feed(Buffer.from([b]));
      if (err) break;
    }
    assert.ok(err instanceof PacketTooLargeError, `limit ${limit}, length ${remaining}`);
    assert.equal(fedBytes, cutAt, `limit ${limit}, length ${remaining}: refused after byte ${fedBytes}`);
    assert.equal(err.announced, announced);
    assert.equal(err.limit, limit);
  }
});

test('a fifth length byte is malformed', () => {
  const reader = new FixedHeaderReader(268_435_455 + 5);
  const err = reader.feed(Buffer.from([0x30, 0x80, 0x80, 0x80, 0x80, 0x01]));
  assert.ok(err instanceof MalformedLengthError || err instanceof PacketTooLargeError);
});

test('real packets at and under the limit pass, however they are chunked (property)', () => {
  fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ minLength: 0, maxLength: 300 }), { minLength: 1, maxLength: 8 }),
      fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 20 }),
      (payloads, cuts) => {
        const stream = Buffer.concat(
          payloads.map((p, i) =>
            mqttPacket.generate({
              cmd: 'publish',
              topic: `t/${i}`,
              payload: Buffer.from(p),
              qos: 0,
              retain: false,
              dup: false,
            }),
          ),
        );
        const largest = Math.max(
          ...payloads.map(
            (p, i) =>
              mqttPacket.generate({
                cmd: 'publish',
                topic: `t/${i}`,
                payload: Buffer.from(p),
                qos: 0,
                retain: false,
                dup: false,
              }).length,
          ),
        );
        const reader = new FixedHeaderReader(largest);
        let offset = 0;
        let c = 0;
        while (offset < stream.length) {
          const size = cuts[c++ % cuts.length]!;
          assert.equal(reader.feed(stream.subarray(offset, offset + size)), undefined);
          offset += size;
        }
        const tight = new FixedHeaderReader(largest - 1);
        assert.ok(tight.feed(stream) instanceof PacketTooLargeError);
      },
    ),
    { numRuns: Number(process.env['FUZZ_RUNS'] ?? 2000) },
  );
});

test('random bytes never throw and never report both ok and an error (fuzz)', () => {
  fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 20 }),
      fc.integer({ min: 2, max: 100_000 }),
      (chunks, limit) => {
        const reader = new FixedHeaderReader(limit);
        for (const chunk of chunks) {
          const err = reader.feed(chunk);
          if (err) {
            assert.ok(err instanceof PacketTooLargeError || err instanceof MalformedLengthError);
            break;
          }
        }
      },
    ),
    { numRuns: Number(process.env['FUZZ_RUNS'] ?? 5000) },
  );
});
