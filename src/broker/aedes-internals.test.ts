/**
 * Each internal of aedes-internals.ts against the real package (no services): the start-up checks
 * find what is there and name what is not; each replaced method does what the broker relies on.
 * The behaviours built on them are tested end to end too: the fan-out's deliveries (max QoS, dedupe,
 * release, drops) in src/broker/fanout.test.ts, test/mqtt-fanout.test.ts,
 * test/security-conformance.test.ts and test/security-frozen.test.ts,
 * the socket read guard in test/security-packets.test.ts, the read hold in test/ingest-rate.test.ts,
 * the relay fallback and close in test/scale-redis-outage.test.ts, retained messages on Redis in
 * test/scale-cluster.test.ts, and a will on another device's topic in test/security-devices.test.ts.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Socket, connect as tcpConnect } from 'node:net';
import { Duplex, PassThrough, Readable } from 'node:stream';
import { test } from 'node:test';
import { Aedes, type Client } from 'aedes';
import mqttPacket from 'mqtt-packet';
import { rawMqtt } from '../../test/support/raw-mqtt.js';
import {
  AEDES_VERSION,
  checkAedesInternals,
  checkRelayInternals,
  type DeliveredPacket,
  firstDelivery,
  holdReads,
  interceptSocketReads,
  isDrainTimeout,
  type MqEmitter,
  pushOnward,
  releaseReads,
  replaceDeliveries,
  retainedStreamsAsReadable,
  subscriptionsOf,
} from './aedes-internals.js';

/** A connected MQTT client of `aedes` over an in-memory stream; `out` collects what Aedes writes. */
async function connectClient(aedes: Aedes, clientId: string): Promise<{ client: Client; out: Buffer[] }> {
  const out: Buffer[] = [];
  const inbound = new PassThrough();
  const stream = new Duplex({
    read() {},
    write(chunk: Buffer, _encoding, done) {
      out.push(chunk);
      done();
    },
  });
  inbound.on('data', (chunk) => stream.push(chunk));
  const client = aedes.handle(stream);
  const ready = once(aedes, 'clientReady');
  inbound.write(
    mqttPacket.generate({
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: 4,
      clientId,
      clean: true,
      keepalive: 0,
    }),
  );
  await ready;
  return { client, out };
}

test('checkAedesInternals passes on the pinned Aedes and names the version and what is missing otherwise', async () => {
  const aedes = await Aedes.createBroker();
  try {
    assert.doesNotThrow(() => checkAedesInternals(aedes));
  } finally {
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
  }
  const lacking = {
    handle: (conn: unknown) => ({ conn, deliverQoS: () => {}, subscriptions: {}, close() {} }),
  } as unknown as Aedes;
  assert.throws(
    () => checkAedesInternals(lacking),
    (err: Error & { code?: string }) => {
      assert.equal(err.code, 'E_INTERNALS');
      assert.match(err.message, /^aedes \d+\.\d+\.\d+ is not the one telebridge is built for/);
      assert.match(err.message, new RegExp(`aedes ${AEDES_VERSION.replaceAll('.', '\\.')}`));
      assert.match(err.message, /client\.deliver0 is missing/);
      assert.match(err.message, /client\.duplicates is missing/);
      assert.match(err.message, /client\._keepaliveTimer is missing/);
      return true;
    },
  );
});

test('replaceDeliveries: the replacement is what a new subscription delivers through; subscriptionsOf shows it', async () => {
  const aedes = await Aedes.createBroker();
  try {
    const { client } = await connectClient(aedes, 'sub-1');
    const seen: DeliveredPacket[] = [];
    replaceDeliveries(client, ({ deliver0 }) => ({
      deliver0: (packet, done) => {
        seen.push(packet);
        deliver0(packet, done);
      },
      deliverQoS: () => assert.fail('no QoS 1 subscription here'),
    }));
    await new Promise<void>((resolve) => client.subscribe({ topic: 'a/+', qos: 0 }, () => resolve()));
    assert.deepEqual(subscriptionsOf(client)['a/+']?.qos, 0);
    await new Promise<void>((resolve) =>
      aedes.publish(
        { cmd: 'publish', topic: 'a/b', payload: Buffer.from('x'), qos: 0, retain: false, dup: false },
        () => resolve(),
      ),
    );
    assert.equal(seen.length, 1);
    assert.equal(seen[0]!.topic, 'a/b');
    assert.equal(typeof seen[0]!.brokerCounter, 'number');
  } finally {
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
  }
});

test('firstDelivery is Aedes’s dedupe: Aedes drops what it already counted, and counts what it lets through', async () => {
  const aedes = await Aedes.createBroker();
  try {
    const { client, out } = await connectClient(aedes, 'sub-dedupe');
    const packet = (counter: number, brokerId: string | null = 'X'): DeliveredPacket => ({
      topic: 'd/x',
      qos: 0,
      payload: Buffer.from(String(counter)),
      retain: false,
      brokerId,
      brokerCounter: counter,
    });
    assert.equal(firstDelivery(client, packet(5)), true);
    assert.equal(firstDelivery(client, packet(5)), false, 'the same message through a second subscription');
    assert.equal(firstDelivery(client, packet(4)), false, 'older than what was delivered');
    assert.equal(firstDelivery(client, packet(5, 'Y')), true, 'another broker counts on its own');
    assert.equal(firstDelivery(client, packet(5, null)), true, 'a retained message is never a duplicate');
    assert.equal(firstDelivery(client, packet(5, null)), true);
    // Aedes's own deliver0 shares the record: it skips 5 (counted above) and delivers 6, after which
    // firstDelivery refuses 6.
    const written = () => out.length;
    const before = written();
    const deliver0 = (client as unknown as { deliver0: (p: DeliveredPacket, cb: () => void) => void })
      .deliver0;
    await new Promise<void>((resolve) => deliver0(packet(5), resolve));
    assert.equal(written(), before, 'Aedes skipped what firstDelivery counted');
    await new Promise<void>((resolve) => deliver0(packet(6), resolve));
    assert.ok(written() > before, 'Aedes delivered a new one');
    assert.equal(firstDelivery(client, packet(6)), false, 'and counted it');
  } finally {
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
  }
});

test('isDrainTimeout recognises the error Aedes drops a QoS 1 subscriber with when its socket does not drain', async () => {
  const aedes = await Aedes.createBroker({ drainTimeout: 200 });
  const server = createServer((socket) => aedes.handle(socket));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const errors: Error[] = [];
  aedes.on('clientError', (_client, err) => errors.push(err));
  const sub = await rawMqtt({ tcp: (server.address() as { port: number }).port }, 'frozen', {
    subscriptions: [{ topic: 'big', qos: 1 }],
  });
  try {
    sub.freeze(); // never reads again: the kernel buffers fill, then Aedes waits for 'drain'
    const payload = Buffer.alloc(64 * 1024);
    // Bounded: a few MB fill loopback's buffers; the drain timeout fires 200 ms after.
    for (let i = 0; i < 400 && errors.length === 0; i++) {
      await new Promise<void>((resolve) =>
        aedes.publish({ cmd: 'publish', topic: 'big', payload, qos: 1, retain: false, dup: false }, () =>
          resolve(),
        ),
      );
    }
    assert.ok(errors.some(isDrainTimeout), errors.map((e) => e.message).join(', '));
    assert.equal(isDrainTimeout(new Error('connection closed')), false);
  } finally {
    sub.close();
    server.close();
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
  }
});

test('holdReads: the reader gets nothing while the buffer still fills; releaseReads hands it all over', async () => {
  const stream = new PassThrough();
  stream.write('first ');
  holdReads(stream);
  assert.equal(stream.read(), null);
  stream.write('second');
  stream.read(0); // a refill goes on while held
  assert.equal(stream.read(), null);
  const readable = once(stream, 'readable');
  releaseReads(stream);
  await readable;
  assert.equal(String(stream.read()), 'first second');
});

test('interceptSocketReads sees each chunk before it is buffered; pushOnward hands it on', async () => {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const seen: string[] = [];
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const client = tcpConnect((server.address() as { port: number }).port, '127.0.0.1');
  const [socket] = await accepted;
  interceptSocketReads(socket, function (this: Socket, chunk, encoding) {
    if (chunk !== null) seen.push(String(chunk));
    return pushOnward(this, chunk, encoding);
  });
  client.write('hello');
  const [data] = (await once(socket, 'data')) as [Buffer];
  assert.equal(String(data), 'hello');
  assert.deepEqual(seen, ['hello']);
  client.destroy();
  socket.destroy();
  server.close();
});

test('checkRelayInternals names what an mqemitter-redis lacks', () => {
  const relay = { on() {}, removeListener() {}, emit() {}, close() {}, _close() {} } as unknown as MqEmitter;
  assert.throws(
    () => checkRelayInternals(relay),
    (err: Error & { code?: string }) => {
      assert.equal(err.code, 'E_INTERNALS');
      assert.match(err.message, /^mqemitter-redis /);
      assert.match(err.message, /_emit \(local delivery\) is missing; subConn is missing; state/);
      return true;
    },
  );
});

test('retainedStreamsAsReadable turns the async generators Aedes would .pipe() into Readables', async () => {
  const persistence = {
    async *createRetainedStreamCombi(patterns: string[]) {
      for (const p of patterns) yield { topic: p };
    },
    createRetainedStream(_pattern: string): unknown {
      return undefined;
    },
  };
  retainedStreamsAsReadable(persistence);
  const combi = persistence.createRetainedStreamCombi(['a', 'b']) as unknown as Readable;
  assert.ok(combi instanceof Readable);
  assert.deepEqual(await combi.toArray(), [{ topic: 'a' }, { topic: 'b' }]);
  const single = persistence.createRetainedStream('c') as Readable;
  assert.deepEqual(await single.toArray(), [{ topic: 'c' }]);
});
