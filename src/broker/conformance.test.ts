import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import mqttPacket from 'mqtt-packet';
import { MalformedStringError, Utf8FieldInspector } from './conformance.js';
import { FixedHeaderReader } from './guard.js';

const LIMIT = 65_536;

/** Feeds `bytes` to a fresh guard reader with string inspection, cut at `cuts`. */
function feed(bytes: Buffer, cuts: number[] = []): Error | undefined {
  const reader = new FixedHeaderReader(LIMIT, new Utf8FieldInspector());
  let from = 0;
  for (const cut of [...cuts.filter((c) => c > 0 && c < bytes.length).sort((a, b) => a - b), bytes.length]) {
    const err = reader.feed(bytes.subarray(from, cut));
    if (err) return err;
    from = cut;
  }
  return undefined;
}

const gen = (packet: object) => mqttPacket.generate(packet as mqttPacket.Packet);

/** Replaces the first occurrence of `marker` (same length) in a generated packet by raw bytes. */
function patch(packet: Buffer, marker: string, raw: number[]): Buffer {
  const at = packet.indexOf(Buffer.from(marker));
  assert.ok(at >= 0 && raw.length === Buffer.byteLength(marker));
  const out = Buffer.from(packet);
  Buffer.from(raw).copy(out, at);
  return out;
}

const connect = gen({
  cmd: 'connect',
  protocolId: 'MQTT',
  protocolVersion: 4,
  clean: true,
  keepalive: 30,
  clientId: 'dev-XY',
  username: 'user-ZW',
  password: Buffer.from([0xff, 0x00]),
  will: { topic: 'will/QQ', payload: Buffer.from([0xff, 0xfe, 0x00]), qos: 0, retain: false },
});
const publish = gen({
  cmd: 'publish',
  topic: 'a/XY',
  payload: Buffer.from([0xff, 0, 0xc0]),
  qos: 1,
  messageId: 7,
});
const subscribe = gen({
  cmd: 'subscribe',
  messageId: 3,
  subscriptions: [
    { topic: 'ok/#', qos: 0 },
    { topic: 'x/XY', qos: 1 },
  ],
});
const unsubscribe = gen({ cmd: 'unsubscribe', messageId: 4, unsubscriptions: ['ok/+', 'x/XY'] });

test('well-formed packets pass, including binary payloads, passwords and will messages', () => {
  for (const p of [connect, publish, subscribe, unsubscribe]) assert.equal(feed(p), undefined);
  // A real U+FFFD (EF BF BD) and other non-ASCII text are valid topics.
  assert.equal(
    feed(gen({ cmd: 'publish', topic: 'a/\ufffd/é/😀', payload: Buffer.alloc(0), qos: 0 })),
    undefined,
  );
});

test('[MQTT-1.5.3-1] ill-formed UTF-8 in a topic, filter, client id, user name or will topic is refused', () => {
  const bad: Array<[Buffer, string]> = [
    [publish, 'XY'],
    [subscribe, 'XY'],
    [unsubscribe, 'XY'],
    [connect, 'XY'],
    [connect, 'ZW'],
    [connect, 'QQ'],
  ];
  for (const [packet, marker] of bad) {
    for (const raw of [
      [0xff, 0x41], // never valid
      [0xc0, 0xaf], // overlong '/'
      [0x41, 0xc3], // truncated sequence
    ]) {
      assert.ok(feed(patch(packet, marker, raw)) instanceof MalformedStringError, `${marker} ${raw}`);
    }
  }
  // An encoded surrogate (U+D800) is ill-formed too.
  const surrogate = gen({ cmd: 'publish', topic: 'a/XYZ', payload: Buffer.alloc(0), qos: 0 });
  assert.ok(feed(patch(surrogate, 'XYZ', [0xed, 0xa0, 0x80])) instanceof MalformedStringError);
});

test('[MQTT-1.5.3-2] U+0000 in a topic or filter is refused', () => {
  assert.ok(feed(patch(publish, 'XY', [0x41, 0x00])) instanceof MalformedStringError);
  assert.ok(feed(patch(subscribe, 'XY', [0x00, 0x41])) instanceof MalformedStringError);
});

test('fuzz: any split of valid packets passes; any split of a broken one fails the same way', () => {
  const stream = Buffer.concat([connect, publish, subscribe, unsubscribe, publish]);
  const broken = Buffer.concat([connect, publish, patch(subscribe, 'XY', [0xe2, 0x28])]);
  fc.assert(
    fc.property(fc.array(fc.nat(stream.length), { maxLength: 40 }), (cuts) => {
      assert.equal(feed(stream, cuts), undefined);
      assert.ok(feed(broken, cuts) instanceof MalformedStringError);
    }),
    { numRuns: 2000 },
  );
});

test('fuzz: random topic bytes, any split: refused exactly when not well-formed UTF-8 or holding U+0000', () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 1, maxLength: 40 }), fc.array(fc.nat(60)), (raw, cuts) => {
      const bytes = Buffer.from(raw);
      const marker = 'M'.repeat(bytes.length);
      const topic = `t/${marker}`;
      const packet = patch(gen({ cmd: 'publish', topic, payload: Buffer.alloc(3), qos: 0 }), marker, [
        ...bytes,
      ]);
      // Oracle independent of the validator: decoding replaces ill-formed bytes, so re-encoding differs.
      const wellFormed = Buffer.from(bytes.toString('utf8'), 'utf8').equals(bytes);
      const err = feed(packet, cuts);
      assert.equal(err instanceof MalformedStringError, !wellFormed || bytes.includes(0));
    }),
    { numRuns: 3000 },
  );
});
