/**
 * MQTT 3.1.1 conformance where Aedes 1.2 falls short, against the real bridge on loopback:
 * ill-formed UTF-8 and U+0000 in topics and filters close the connection [MQTT-1.5.3-1, -2]; an
 * empty client id with clean session 0 gets CONNACK 2 [MQTT-3.1.3-8]; overlapping subscriptions
 * deliver at the highest QoS of the matching ones [MQTT-3.3.5-1]; `$` topics may be published to, but
 * filters starting with a wildcard never match them, retained ones included [MQTT-4.7.2-1].
 */
import assert from 'node:assert/strict';
import { connect as netConnect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { MqttClient } from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { publishAcked, startTestBridge, subackCodes, type TestBridge } from './support/bridge.js';
import { waitEvent, waitFor } from './support/wait.js';

let t: TestBridge;
let secret: string;

before(async () => {
  t = await startTestBridge();
  secret = await t.addUser('svc', { publish: ['#'], subscribe: ['#'] });
});
after(() => t.close());

/** A raw MQTT connection: packets parsed as they arrive, `closed` once the server hangs up. */
interface Raw {
  socket: Socket;
  packets: mqttPacket.Packet[];
  closed: Promise<unknown>;
  send(packet: object): void;
  sendBytes(bytes: Buffer): void;
}

async function raw(connectPacket: object): Promise<Raw> {
  const socket = netConnect(t.bridge.ports.mqtt, '127.0.0.1');
  await waitEvent(socket, 'connect');
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  const packets: mqttPacket.Packet[] = [];
  parser.on('packet', (p) => packets.push(p));
  socket.on('data', (d) => parser.parse(d));
  socket.on('error', () => {});
  const r: Raw = {
    socket,
    packets,
    closed: waitEvent(socket, 'close', 10_000),
    send: (p) => socket.write(mqttPacket.generate(p as mqttPacket.Packet)),
    sendBytes: (b) => socket.write(b),
  };
  r.closed.catch(() => {}); // awaited by the tests that expect a close
  if (Buffer.isBuffer(connectPacket)) r.sendBytes(connectPacket);
  else r.send(connectPacket);
  await waitFor('CONNACK', () => packets.find((p) => p.cmd === 'connack'));
  return r;
}

const svcConnect = (clientId: string) => ({
  cmd: 'connect',
  protocolId: 'MQTT',
  protocolVersion: 4,
  clean: true,
  keepalive: 30,
  clientId,
  username: 'svc',
  password: Buffer.from(secret),
});

/** A generated packet with the bytes of `marker` replaced by `bytes` (same length). */
function patched(packet: object, marker: string, bytes: number[]): Buffer {
  const out = Buffer.from(mqttPacket.generate(packet as mqttPacket.Packet));
  const at = out.indexOf(Buffer.from(marker));
  assert.ok(at >= 0);
  Buffer.from(bytes).copy(out, at);
  return out;
}

describe('[MQTT-1.5.3-1, -2] topic and filter strings', () => {
  test('a PUBLISH topic with ill-formed UTF-8 closes the connection; nothing is delivered', async () => {
    const watcher = await t.connect('tcp', { clientId: 'watch-utf8', username: 'svc', password: secret });
    const got: string[] = [];
    watcher.on('message', (topic) => got.push(topic));
    await new Promise((r) => watcher.subscribe('u/#', { qos: 1 }, r));

    const c = await raw(svcConnect('raw-utf8'));
    assert.equal((c.packets[0] as mqttPacket.IConnackPacket).returnCode, 0);
    c.sendBytes(
      patched(
        { cmd: 'publish', topic: 'u/XY', payload: Buffer.from('x'), qos: 1, messageId: 1 },
        'XY',
        [0xc3, 0x28],
      ),
    );
    await c.closed;
    assert.equal(c.packets.filter((p) => p.cmd === 'puback').length, 0);

    // A real U+FFFD is valid UTF-8 and is delivered (and proves the watcher would have seen the other).
    const ok = await raw(svcConnect('raw-fffd'));
    ok.send({ cmd: 'publish', topic: 'u/\ufffd', payload: Buffer.from('y'), qos: 1, messageId: 2 });
    await waitFor('PUBACK', () => ok.packets.find((p) => p.cmd === 'puback'));
    await waitFor('delivery of the valid topic', () => got.includes('u/\ufffd'));
    assert.deepEqual(got, ['u/\ufffd']);
    ok.socket.destroy();
    watcher.end(true);
  });

  test('U+0000 in a PUBLISH topic closes the connection', async () => {
    const c = await raw(svcConnect('raw-nul'));
    c.sendBytes(
      patched(
        { cmd: 'publish', topic: 'u/XY', payload: Buffer.from('x'), qos: 1, messageId: 1 },
        'XY',
        [0x41, 0x00],
      ),
    );
    await c.closed;
    assert.equal(c.packets.filter((p) => p.cmd === 'puback').length, 0);
  });

  test('a SUBSCRIBE or UNSUBSCRIBE filter with U+0000 or ill-formed UTF-8 closes the connection', async () => {
    const cases: Array<[object, number[]]> = [
      [{ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'u/XY', qos: 0 }] }, [0x00, 0x41]],
      [{ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'u/XY', qos: 0 }] }, [0xed, 0xa0]],
      [{ cmd: 'unsubscribe', messageId: 1, unsubscriptions: ['u/XY'] }, [0xff, 0x41]],
    ];
    for (const [packet, bytes] of cases) {
      const c = await raw(svcConnect('raw-sub'));
      c.sendBytes(patched(packet, 'XY', bytes));
      await c.closed;
      assert.equal(c.packets.filter((p) => p.cmd === 'suback' || p.cmd === 'unsuback').length, 0);
    }
  });

  test('a client id with ill-formed UTF-8 is closed before CONNACK', async () => {
    const socket = netConnect(t.bridge.ports.mqtt, '127.0.0.1');
    await waitEvent(socket, 'connect');
    const received: Buffer[] = [];
    socket.on('data', (d) => received.push(d));
    socket.write(patched(svcConnect('id-XY'), 'XY', [0xf8, 0x88]));
    await waitEvent(socket, 'close');
    assert.equal(Buffer.concat(received).length, 0);
  });
});

test('[MQTT-3.1.3-8] an empty client id with clean session 0 gets CONNACK 2', async () => {
  // mqtt-packet refuses to generate it: built by hand (user name and password flags, clean session 0).
  const user = Buffer.from('svc');
  const pass = Buffer.from(secret);
  const str = (b: Buffer) => Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
  const body = Buffer.concat([
    str(Buffer.from('MQTT')),
    Buffer.from([4, 0xc0, 0, 30]),
    str(Buffer.alloc(0)),
    str(user),
    str(pass),
  ]);
  const c = await raw(Buffer.concat([Buffer.from([0x10, body.length]), body]));
  assert.equal((c.packets[0] as mqttPacket.IConnackPacket).returnCode, 2);
  await c.closed;
});

describe('[MQTT-3.3.5-1] overlapping subscriptions', () => {
  /** Subscribes one client to `subs`, publishes each QoS given on `topic`, and returns the QoS of every copy. */
  async function deliveredQos(
    name: string,
    subs: Record<string, 0 | 1>,
    topic: string,
    publishQos: 0 | 1,
  ): Promise<number[]> {
    const sub = await t.connect('tcp', { clientId: `sub-${name}`, username: 'svc', password: secret });
    const pub = await t.connect('tcp', { clientId: `pub-${name}`, username: 'svc', password: secret });
    const copies: number[] = [];
    let sentinel = false;
    sub.on('packetreceive', (p) => {
      if (p.cmd !== 'publish') return;
      if (p.topic === topic) copies.push(p.qos);
      if (p.topic === `sentinel/${name}`) sentinel = true;
    });
    for (const [filter, qos] of Object.entries(subs)) {
      await new Promise((r) => sub.subscribe(filter, { qos }, r));
    }
    await new Promise((r) => sub.subscribe(`sentinel/${name}`, { qos: 1 }, r));
    await new Promise<void>((resolve, reject) =>
      pub.publish(topic, Buffer.from('m'), { qos: publishQos }, (err) => (err ? reject(err) : resolve())),
    );
    // Published after the message: once it arrives, every copy of the message has arrived too.
    await publishAcked(pub, `sentinel/${name}`, Buffer.from('s'));
    await waitFor('the sentinel', () => sentinel);
    for (const c of [sub, pub]) (c as MqttClient).end(true);
    return copies;
  }

  test('a wildcard QoS 0 and a wildcard QoS 1 subscription: one copy at QoS 1', async () => {
    assert.deepEqual(await deliveredQos('w01', { 'o/#': 0, 'o/+': 1 }, 'o/x', 1), [1]);
    assert.deepEqual(await deliveredQos('w10', { 'p/#': 1, 'p/+': 0 }, 'p/x', 1), [1]);
  });

  test('an exact QoS 0 filter does not cap a matching QoS 1 wildcard', async () => {
    assert.deepEqual(await deliveredQos('exact', { 'e/x': 0, 'e/+': 1 }, 'e/x', 1), [1]);
  });

  test('never above the QoS of the PUBLISH', async () => {
    assert.deepEqual(await deliveredQos('q0', { 'z/#': 1, 'z/x': 1 }, 'z/x', 0), [0]);
  });
});

describe('[MQTT-4.7.2-1] $ topics', () => {
  const rights = ['#', '$TopicA/#', '$SYS/#', '$telebridge/#'];
  let dollarSecret: string;
  before(async () => {
    dollarSecret = await t.addUser('dollar', { publish: rights, subscribe: rights });
  });
  const connect = (clientId: string) =>
    t.connect('tcp', { clientId, username: 'dollar', password: dollarSecret });

  test('a client may publish to $TopicA/B; $TopicA/# receives it, # and +/+ never do, live or retained', async () => {
    const dollar = await connect('d-exact');
    const wild = await connect('d-wild');
    const got: Record<string, string[]> = { dollar: [], wild: [] };
    dollar.on('message', (topic) => got['dollar']!.push(topic));
    wild.on('message', (topic) => got['wild']!.push(topic));
    await dollar.subscribeAsync('$TopicA/#', { qos: 1 });
    await wild.subscribeAsync(['#', '+/+'], { qos: 1 });
    const pub = await connect('d-pub');
    await publishAcked(pub, '$TopicA/B', Buffer.from('live'));
    await publishAcked(pub, '$TopicA/R', Buffer.from('kept'), true);
    // Published after them: once it arrives at the wildcard client, so would have the $ ones.
    await publishAcked(pub, 'plain/x', Buffer.from('sentinel'));
    await waitFor('both $ topics at $TopicA/#', () => got['dollar']!.length === 2);
    await waitFor('the sentinel at #', () => got['wild']!.includes('plain/x'));
    assert.deepEqual(got['dollar']!.sort(), ['$TopicA/B', '$TopicA/R']);
    assert.ok(!got['wild']!.some((topic) => topic.startsWith('$')), JSON.stringify(got['wild']));

    // Retained: a new `#` and `+/+` subscriber is not sent `$TopicA/R`; a `$TopicA/+` one is.
    const late = await connect('d-late');
    const lateGot: string[] = [];
    late.on('message', (topic) => lateGot.push(topic));
    await publishAcked(pub, 'plain/r', Buffer.from('retained sentinel'), true);
    await late.subscribeAsync(['#', '+/+'], { qos: 1 });
    await waitFor('the retained sentinel', () => lateGot.includes('plain/r'));
    await late.subscribeAsync('$TopicA/+', { qos: 1 });
    await waitFor('the retained $ topic', () => lateGot.includes('$TopicA/R'));
    assert.deepEqual(
      lateGot.filter((topic) => topic.startsWith('$')),
      ['$TopicA/R'],
      'only through $TopicA/+',
    );
    await publishAcked(pub, '$TopicA/R', Buffer.alloc(0), true);
    await publishAcked(pub, 'plain/r', Buffer.alloc(0), true);
  });

  test('a PUBLISH to $SYS/… or $telebridge/… is acknowledged and dropped; $telebridge cannot be subscribed to', async () => {
    const sub = await connect('d-sys');
    const got: string[] = [];
    sub.on('message', (topic) => got.push(topic));
    await sub.subscribeAsync(['$SYS/#', 'after'], { qos: 1 });
    assert.deepEqual(await subackCodes(sub, ['$telebridge/#', '$telebridge/discarded']), [0x80, 0x80]);
    const pub = await connect('d-sys-pub');
    await publishAcked(pub, '$SYS/fake/new/clients', Buffer.from('victim'));
    await publishAcked(pub, '$telebridge/discarded', Buffer.from('x'));
    await publishAcked(pub, 'after', Buffer.from('sentinel'));
    await waitFor('the sentinel', () => got.includes('after'));
    assert.ok(pub.connected, 'the publisher stays connected');
    assert.deepEqual(
      got.filter((topic) => topic === '$SYS/fake/new/clients' || topic.startsWith('$telebridge')),
      [],
    );
  });
});
