/**
 * MQTT fan-out (issue 14, points 2 and 3) through the real bridge: a QoS 0 delivery is encoded once
 * per message and written pre-framed (src/broker/fanout.ts), so the bytes each subscriber gets must
 * be exactly what plain Aedes writes, over TCP and over WebSocket, retained and live, with
 * overlapping subscriptions; a subscriber that stops reading is dropped at
 * BRIDGE_SUBSCRIBER_BUFFER_BYTES and counted in `bridge_subscribers_dropped_total` while the others
 * get everything; and what the bridge holds for such subscribers is bounded by that allowance, not
 * by what is published.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Aedes } from 'aedes';
import type { MqttClient } from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { topicMatches } from '../src/topics.js';
import { connectMqtt, startTestBridge, type TestBridge } from './support/bridge.js';
import { type BridgeProcess, spawnBridge } from './support/bridge-process.js';
import { type RawMqtt, rawMqtt } from './support/raw-mqtt.js';
import { waitFor } from './support/wait.js';

/** Publishes and resolves once the client wrote it (QoS 0) or got its PUBACK (QoS 1). */
function publish(
  client: MqttClient,
  topic: string,
  payload: Buffer,
  qos: 0 | 1,
  retain = false,
): Promise<void> {
  return new Promise((resolve, reject) =>
    client.publish(topic, payload, { qos, retain }, (err) => (err ? reject(err) : resolve())),
  );
}

/** Retained before the subscribers come, stored at either QoS; then live ones at QoS 0 and 1. */
const RETAINED: Array<[string, string, 0 | 1]> = [
  ['fan/r/x', 'kept', 0],
  ['fan/r2', 'kept too', 0],
];
const LIVE: Array<[string, Buffer, 0 | 1]> = [
  ['fan/a/x', Buffer.from('matches both filters'), 0],
  ['fan/b', Buffer.from('published at QoS 1'), 1],
  ['fan/é/x', Buffer.alloc(200, 0x41), 0], // a non-ASCII topic; a frame with a 2-byte length
  ['fan/big', Buffer.alloc(70_000, 0x42), 0], // 3-byte MQTT length, 8-byte frame length
  ['fan/empty', Buffer.alloc(0), 0],
];
const FILTERS = [
  { topic: 'fan/#', qos: 0 as const },
  { topic: 'fan/+/x', qos: 0 as const },
];
/**
 * A retained message goes out once per matching filter of a SUBSCRIBE (handled as one SUBSCRIBE per
 * filter, [MQTT-3.8.4-4]); a live one once per client (Aedes's dedupe).
 */
const RETAINED_COPIES = RETAINED.reduce(
  (n, [topic]) => n + FILTERS.filter((f) => topicMatches(f.topic, topic)).length,
  0,
);

/**
 * Retained messages first, then a subscriber with overlapping QoS 0 filters, then live messages at
 * QoS 0 and 1; resolves with every byte each subscriber received, once all arrived.
 */
async function scenario(
  publisherUrl: string,
  targets: Record<string, Parameters<typeof rawMqtt>[0]>,
): Promise<Record<string, Buffer>> {
  const pub = await connectMqtt(publisherUrl, { clientId: `pub-${Object.keys(targets).join('-')}` });
  try {
    for (const [topic, text, qos] of RETAINED) await publish(pub, topic, Buffer.from(text), qos, true);
    const subs: Record<string, RawMqtt> = {};
    for (const [name, target] of Object.entries(targets)) {
      subs[name] = await rawMqtt(target, `sub-${name}`, { subscriptions: FILTERS });
      await waitFor(
        `${name}: the retained messages`,
        () => subs[name]!.publishes().length === RETAINED_COPIES,
      );
    }
    for (const [topic, payload, qos] of LIVE) await publish(pub, topic, payload, qos);
    const out: Record<string, Buffer> = {};
    for (const [name, sub] of Object.entries(subs)) {
      await waitFor(`${name}: every message`, () => sub.publishes().length === RETAINED_COPIES + LIVE.length);
      out[name] = Buffer.concat(sub.bytes);
      sub.close();
    }
    return out;
  } finally {
    for (const [topic] of RETAINED) await publish(pub, topic, Buffer.alloc(0), 1, true);
    pub.end(true);
  }
}

describe('the bytes on the wire', () => {
  let t: TestBridge;
  let aedes: Aedes;
  let aedesPort = 0;
  const server = createServer((socket) => aedes.handle(socket));
  before(async () => {
    // Packets up to 128 KiB: a frame over 65,535 bytes has an 8-byte length.
    t = await startTestBridge({
      BRIDGE_AUTH: 'off',
      BRIDGE_DEVICE_RATE: '0',
      BRIDGE_MAX_PACKET_BYTES: '131072',
    });
    aedes = await Aedes.createBroker();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    aedesPort = (server.address() as { port: number }).port;
  });
  after(async () => {
    server.close();
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
    await t.close();
  });

  test('are what plain Aedes writes: over TCP and WebSocket, retained and live, overlapping subscriptions', async () => {
    const reference = await scenario(`mqtt://127.0.0.1:${aedesPort}`, { aedes: { tcp: aedesPort } });
    const bridge = await scenario(t.mqttUrl('tcp'), {
      tcp: { tcp: t.bridge.ports.mqtt },
      ws: { ws: t.mqttUrl('ws') },
    });
    // CONNACK, SUBACK, the retained messages (RETAIN set), the live ones once each (RETAIN clear).
    assert.ok(reference['aedes']!.length > 70_000);
    assert.ok(bridge['tcp']!.equals(reference['aedes']!), 'TCP: the same bytes as Aedes');
    assert.ok(
      bridge['ws']!.equals(reference['aedes']!),
      'WebSocket: the same bytes as Aedes, in binary frames',
    );
  });

  test('a retained message kept at QoS 1 goes to a QoS 0 subscription at QoS 0 [MQTT-3.3.5-1]', async () => {
    // Plain Aedes caps a retained message only at a subscription whose filter is its topic.
    const pub = await t.connect('tcp', { clientId: 'pub-kept-q1' });
    const payload = Buffer.from('kept at QoS 1');
    await publish(pub, 'fan/q1/kept', payload, 1, true);
    for (const [name, target] of Object.entries({
      tcp: { tcp: t.bridge.ports.mqtt },
      ws: { ws: t.mqttUrl('ws') },
    })) {
      const sub = await rawMqtt(target, `sub-kept-${name}`, {
        subscriptions: [{ topic: 'fan/q1/#', qos: 0 }],
      });
      await waitFor(`${name}: the retained message`, () => sub.publishes().length === 1);
      const expected = mqttPacket.generate({
        cmd: 'publish',
        topic: 'fan/q1/kept',
        payload,
        qos: 0,
        retain: true,
        dup: false,
      });
      assert.ok(Buffer.concat(sub.bytes).subarray(-expected.length).equals(expected), name);
      sub.close();
    }
    await publish(pub, 'fan/q1/kept', Buffer.alloc(0), 1, true);
    pub.end(true);
  });
});

describe('slow subscribers', () => {
  const ALLOWANCE = 64 * 1024;
  let t: TestBridge;
  before(async () => {
    t = await startTestBridge({
      BRIDGE_AUTH: 'off',
      BRIDGE_DEVICE_RATE: '0',
      BRIDGE_SUBSCRIBER_BUFFER_BYTES: String(ALLOWANCE),
    });
  });
  after(() => t.close());

  test('one that stops reading is dropped past BRIDGE_SUBSCRIBER_BUFFER_BYTES and counted, over TCP and WebSocket; the others get everything', async () => {
    const filter = [{ topic: 'slow/t', qos: 0 as const }];
    const frozenTcp = await rawMqtt({ tcp: t.bridge.ports.mqtt }, 'frozen-tcp', { subscriptions: filter });
    const frozenWs = await rawMqtt({ ws: t.mqttUrl('ws') }, 'frozen-ws', { subscriptions: filter });
    const tcp = await rawMqtt({ tcp: t.bridge.ports.mqtt }, 'reader-tcp', { subscriptions: filter });
    const ws = await rawMqtt({ ws: t.mqttUrl('ws') }, 'reader-ws', { subscriptions: filter });
    const gone = new Set<string>();
    t.bridge.broker.aedes.on('clientDisconnect', (client) => gone.add(client.id));
    frozenTcp.freeze();
    frozenWs.freeze();

    const pub = await t.connect('tcp', { clientId: 'slow-pub' });
    const payload = Buffer.alloc(16 * 1024, 0x33);
    let sent = 0;
    const dropped = () => t.metric('bridge_subscribers_dropped_total', { reason: 'buffer' });
    // Bounded: loopback's buffers take a few MB per frozen socket before the bridge holds any.
    const readersAt = () => Math.min(tcp.publishes().length, ws.publishes().length);
    while (sent < 3000 && (await dropped()) < 2) {
      await publish(pub, 'slow/t', payload, 0);
      sent++;
      // The readers share this process with the publisher: let them keep up (a healthy reader).
      if (sent % 32 === 0) await waitFor('the readers', () => readersAt() >= sent - 32);
    }
    for (let i = 0; i < 20; i++, sent++) await publish(pub, 'slow/t', payload, 0);
    await waitFor(
      'both readers to get every message',
      () => tcp.publishes().length === sent && ws.publishes().length === sent,
    );
    assert.equal(await dropped(), 2);
    assert.equal(await t.metric('bridge_subscribers_dropped_total'), 2, 'nothing else dropped');
    await waitFor(
      'the frozen ones to be disconnected',
      () => gone.has('frozen-tcp') && gone.has('frozen-ws'),
    );
    assert.ok(!gone.has('reader-tcp') && !gone.has('reader-ws'));
    for (const c of [frozenTcp, frozenWs, tcp, ws]) c.close();
  });
});

/** The bridge process's resident set, and its high-water mark, bytes (/proc). */
function memory(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]) * 1024;
  return { rss: kib('VmRSS'), hwm: kib('VmHWM') };
}

describe('memory', { skip: process.platform !== 'linux' ? 'reads /proc' : undefined }, () => {
  let bridge: BridgeProcess;
  before(async () => {
    bridge = await spawnBridge({
      env: { BRIDGE_AUTH: 'off', BRIDGE_DEVICE_RATE: '0', BRIDGE_SUBSCRIBER_BUFFER_BYTES: String(64 * 1024) },
    });
  });
  after(() => bridge.terminate());

  test('what the bridge holds for subscribers that stop reading is bounded by the allowance, not by what is published', async () => {
    const FROZEN = 20;
    const PUBLISHED = 120 * 1024 * 1024;
    const filter = [{ topic: 'mem/t', qos: 0 as const }];
    const wsUrl = bridge.url('/mqtt').replace(/^http/, 'ws');
    const frozen: RawMqtt[] = [];
    for (let i = 0; i < FROZEN; i++) {
      const sub = await rawMqtt(i % 2 ? { ws: wsUrl } : { tcp: bridge.ports.mqtt }, `mem-frozen-${i}`, {
        subscriptions: filter,
      });
      sub.freeze();
      frozen.push(sub);
    }
    const reader = await rawMqtt({ tcp: bridge.ports.mqtt }, 'mem-reader', { subscriptions: filter });
    const pub = await connectMqtt(bridge.mqttUrl, { clientId: 'mem-pub' });
    const before = memory(bridge.pid);
    const payload = Buffer.alloc(2048, 0x44);
    const messages = PUBLISHED / payload.length;
    for (let i = 1; i <= messages; i++) {
      await publish(pub, 'mem/t', payload, 0);
      // The reader shares this process with the publisher: let it keep up (a healthy reader).
      if (i % 256 === 0) await waitFor('the reader', () => reader.publishes().length >= i - 256);
    }
    await waitFor('the reader to get every message', () => reader.publishes().length === messages, {
      timeoutMs: 60_000,
    });
    const grown = memory(bridge.pid).hwm - before.rss;
    console.log(
      `${FROZEN} frozen subscribers, ${PUBLISHED / 2 ** 20} MiB published: peak RSS ${(before.rss / 2 ** 20).toFixed(0)} → ${(memory(bridge.pid).hwm / 2 ** 20).toFixed(0)} MiB`,
    );
    assert.equal(await bridge.metric('bridge_subscribers_dropped_total', { reason: 'buffer' }), FROZEN);
    // Without the allowance, each frozen subscriber would hold all it was sent past what the kernel
    // took (~4 MB): 20 × ~116 MiB of messages, shared between them, and their bookkeeping.
    assert.ok(grown < 48 * 2 ** 20, `peak RSS grew ${(grown / 2 ** 20).toFixed(0)} MiB`);
    pub.end(true);
    reader.close();
    for (const sub of frozen) sub.close();
  });
});
