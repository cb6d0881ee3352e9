import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import mqttPacket from 'mqtt-packet';
import { WS_BINARY, wsFrame } from '../ws-frame.js';
import type { DeliveredPacket } from './aedes-internals.js';
import { Qos0Encoder } from './encoded-publish.js';

const payload = Buffer.from('reading');

/** A packet as Aedes hands one to each subscription: a new object per subscriber. */
function routed(over: Partial<DeliveredPacket> = {}): DeliveredPacket {
  return { topic: 'a/b', qos: 0, payload, retain: false, brokerId: 'A', brokerCounter: 7, ...over };
}

/**
 * What Aedes's deliver0 writes for a routed packet: a copy with QoS 0 through mqtt-packet's
 * `writeToStream`, chunk by chunk (corked until the next tick).
 */
async function aedesWrites(packet: DeliveredPacket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const conn = new Writable({
    write(chunk: Buffer, _encoding, done) {
      chunks.push(Buffer.from(chunk));
      done();
    },
  });
  mqttPacket.writeToStream({ ...packet, cmd: 'publish', qos: 0 } as mqttPacket.IPublishPacket, conn);
  await new Promise((resolve) => setImmediate(resolve));
  return Buffer.concat(chunks);
}

test('the bytes are what Aedes writes for the packet at QoS 0: live, retained, a QoS 1 one downgraded', async () => {
  const encoder = new Qos0Encoder();
  for (const packet of [
    routed(),
    routed({ retain: true, brokerCounter: 8 }),
    routed({ qos: 1, brokerCounter: 9 }),
    routed({ topic: 'é/ü', payload: Buffer.alloc(20_000, 1), brokerCounter: 10 }),
  ]) {
    assert.deepEqual(encoder.encode(packet).bytes, await aedesWrites(packet));
  }
});

test('one encoding and one frame per message, however many packet objects carry it', () => {
  const encoder = new Qos0Encoder();
  const first = encoder.encode(routed());
  const frame = first.frame;
  for (let i = 0; i < 3; i++) {
    const again = encoder.encode(routed());
    assert.equal(again, first);
    assert.equal(again.frame, frame, 'the same frame buffer');
  }
  assert.deepEqual(frame, wsFrame(first.bytes, WS_BINARY));
});

test('another identity is another encoding: another broker (a relayed message) with the same counter, retain, counter', () => {
  const encoder = new Qos0Encoder();
  const a = encoder.encode(routed());
  // Cluster mode: a message relayed from broker B may carry the counter a local one had.
  const other = Buffer.from('other');
  const b = encoder.encode(routed({ brokerId: 'B', payload: other }));
  assert.notEqual(b, a);
  assert.ok(b.bytes.includes(other));
  const retained = encoder.encode(routed({ brokerId: 'B', payload: other, retain: true }));
  assert.notEqual(retained, b);
  assert.equal(retained.bytes[0], 0x31, 'PUBLISH with RETAIN');
  assert.notEqual(encoder.encode(routed({ brokerCounter: 8 })), encoder.encode(routed({ brokerCounter: 9 })));
});

test('a packet without an identity is encoded each time, never served from the cache', () => {
  const encoder = new Qos0Encoder();
  const one = encoder.encode(routed({ brokerCounter: 0 }));
  const two = encoder.encode(routed({ brokerCounter: 0, payload: Buffer.from('changed') }));
  assert.ok(two.bytes.includes(Buffer.from('changed')));
  assert.notEqual(one, two);
});

test('[MQTT-3.3.1-2] DUP is 0 at QoS 0, even for a resent QoS 1 message', () => {
  const encoder = new Qos0Encoder();
  const bytes = encoder.encode(routed({ qos: 1, dup: true })).bytes;
  assert.equal(bytes[0]! & 0x08, 0);
  assert.equal(bytes[0]! & 0x06, 0, 'QoS 0');
});
