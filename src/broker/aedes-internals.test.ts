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
import { EventEmitter, once } from 'node:events';
import { createServer, type Socket, connect as tcpConnect } from 'node:net';
import { Duplex, PassThrough, Readable } from 'node:stream';
import { test } from 'node:test';
import { Aedes, type Client } from 'aedes';
import mqttPacket from 'mqtt-packet';
import { rawMqtt } from '../../test/support/raw-mqtt.js';
import { waitEvent, waitFor } from '../../test/support/wait.js';
import {
  AEDES_VERSION,
  checkAedesInternals,
  checkRelayInternals,
  closeClientOf,
  compactListeners,
  type DeliveredPacket,
  firstDelivery,
  forgetConnectPacket,
  holdReads,
  inboundWindowOnDemand,
  interceptSocketReads,
  isDrainTimeout,
  type MqEmitter,
  memorySessionStore,
  prepareSubscriber,
  pushOnward,
  releaseReads,
  replaceDeliveries,
  retainedStreamsAsReadable,
  subscriptionsOf,
  sweepKeepalives,
  trimClient,
  writeNumbersUncached,
} from './aedes-internals.js';

/**
 * A connected MQTT client of `aedes` over an in-memory stream; `out` collects what Aedes writes,
 * `send` writes packets to it. `trim`: trimmed as the broker does (trimClient, and the stream's
 * 'close' closing the client).
 */
async function connectClient(
  aedes: Aedes,
  clientId: string,
  clean = true,
  options: { trim?: boolean; will?: { topic: string; payload: Buffer }; keepalive?: number } = {},
): Promise<{ client: Client; out: Buffer[]; stream: Duplex; send(packet: mqttPacket.Packet): void }> {
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
  if (options.trim) {
    trimClient(client);
    stream.on('close', function (this: Duplex) {
      closeClientOf(this);
    });
  }
  const ready = once(aedes, 'clientReady');
  const send = (packet: mqttPacket.Packet) => inbound.write(mqttPacket.generate(packet));
  send({
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 4,
    clientId,
    clean,
    keepalive: options.keepalive ?? 0,
    ...(options.will ? { will: { ...options.will, qos: 0, retain: false } } : {}),
  });
  await ready;
  return { client, out, stream, send };
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

/** The PUBLISH packets among the bytes Aedes wrote. */
/** Every packet in what Aedes wrote. */
function packetsIn(out: readonly Buffer[]): mqttPacket.Packet[] {
  const parser = mqttPacket.parser();
  const seen: mqttPacket.Packet[] = [];
  parser.on('packet', (p: mqttPacket.Packet) => seen.push(p));
  for (const chunk of out) parser.parse(chunk);
  return seen;
}

function publishesIn(out: readonly Buffer[]): { topic: string; payload: string; qos: number }[] {
  return packetsIn(out).flatMap((p) =>
    p.cmd === 'publish' ? [{ topic: p.topic, payload: String(p.payload), qos: p.qos }] : [],
  );
}

test('memorySessionStore: a persistent session gets what was queued while away, a clean one discards it, and a client nothing was queued for gets an empty queue', async () => {
  const store = memorySessionStore() as { outgoingStream(client: { id: string }): unknown };
  assert.deepEqual([...(store.outgoingStream({ id: 'never-queued' }) as unknown[])], []);
  const aedes = await Aedes.createBroker({ persistence: store as never });
  const publish = (payload: string) =>
    new Promise<void>((resolve) =>
      aedes.publish(
        { cmd: 'publish', topic: 'q/a', payload: Buffer.from(payload), qos: 1, retain: false, dup: false },
        () => resolve(),
      ),
    );
  const closed = (client: Client) => new Promise<void>((resolve) => client.close(() => resolve()));
  try {
    const first = await connectClient(aedes, 'keeper', false);
    await new Promise<void>((resolve) => first.client.subscribe({ topic: 'q/#', qos: 1 }, () => resolve()));
    await closed(first.client);
    await publish('while away');
    assert.ok(store.outgoingStream({ id: 'keeper' }) instanceof Readable, 'queued: the store is asked');

    const back = await connectClient(aedes, 'keeper', false);
    assert.deepEqual(publishesIn(back.out), [{ topic: 'q/a', payload: 'while away', qos: 1 }]);
    await closed(back.client);

    // Queued again (never acknowledged above, and a new one), then a clean session: nothing of it
    // arrives [MQTT-3.1.2-6].
    await publish('second');
    const clean = await connectClient(aedes, 'keeper', true);
    assert.deepEqual(publishesIn(clean.out), []);
  } finally {
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
  }
});

test('trimClient: a trimmed client still closes on the stream ending, on its close and on a parse error; its will goes out', {
  timeout: 10_000,
}, async () => {
  const aedes = await Aedes.createBroker({
    preConnect(client, packet, callback) {
      forgetConnectPacket(client, packet);
      callback(null, true);
    },
  });
  try {
    const wills: string[] = [];
    aedes.on('publish', (packet) => {
      if (packet.topic === 'wills') wills.push(String(packet.payload));
    });
    const will = (id: string) => ({ topic: 'wills', payload: Buffer.from(id) });

    // The stream closes (a socket reset): the client closes and its will is published.
    const reset = await connectClient(aedes, 'reset', true, { trim: true, will: will('reset') });
    const gone = once(aedes, 'clientDisconnect');
    reset.stream.destroy();
    await gone;
    assert.equal(reset.client.closed, true);

    // The stream ends (the peer's FIN).
    const ended = await connectClient(aedes, 'ended', true, { trim: true, will: will('ended') });
    const endGone = once(aedes, 'clientDisconnect');
    ended.stream.push(null);
    ended.stream.resume();
    await endGone;

    // A malformed packet: the parser's error closes the connection.
    const bad = await connectClient(aedes, 'bad', true, { trim: true, will: will('bad') });
    const badGone = once(aedes, 'clientDisconnect');
    bad.stream.push(Buffer.from([0x00, 0x00])); // packet type 0 is reserved
    await badGone;
    assert.equal(bad.stream.destroyed, true);

    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(wills.sort(), ['bad', 'ended', 'reset']);
  } finally {
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
  }
});

test('trimClient: clients share no subscriptions; each gets its own at its first SUBSCRIBE, and a write before that fails loudly', {
  timeout: 10_000,
}, async () => {
  const aedes = await Aedes.createBroker({
    authorizeSubscribe(client, sub, callback) {
      prepareSubscriber(client);
      callback(null, sub);
    },
    preConnect(client, packet, callback) {
      forgetConnectPacket(client, packet);
      callback(null, true);
    },
  });
  try {
    const a = await connectClient(aedes, 'a', true, { trim: true });
    const b = await connectClient(aedes, 'b', true, { trim: true });
    const idle = await connectClient(aedes, 'idle', true, { trim: true });
    assert.throws(() => {
      subscriptionsOf(idle.client)['x'] = { qos: 0 };
    }, TypeError);
    const subscribed = (c: { client: Client }) => once(aedes, 'subscribe').then(() => c);
    const aDone = subscribed(a);
    a.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'a/#', qos: 0 }] });
    await aDone;
    const bDone = subscribed(b);
    b.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'b/+', qos: 1 }] });
    await bDone;
    assert.deepEqual(Object.keys(subscriptionsOf(a.client)), ['a/#']);
    assert.deepEqual(Object.keys(subscriptionsOf(b.client)), ['b/+']);
    assert.deepEqual(Object.keys(subscriptionsOf(idle.client)), []);

    // Deliveries (and their duplicate counters) work per client after the parser forgot the CONNECT.
    const delivered = once(aedes, 'publish');
    aedes.publish(
      { cmd: 'publish', topic: 'a/1', payload: Buffer.from('one'), qos: 0, retain: false, dup: false },
      () => {},
    );
    await delivered;
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(publishesIn(a.out), [{ topic: 'a/1', payload: 'one', qos: 0 }]);
    assert.deepEqual(publishesIn(b.out), []);
  } finally {
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
  }
});

test('writeNumbersUncached: mqtt-packet writes the same bytes without its 16-bit number cache', () => {
  const packets: mqttPacket.Packet[] = [
    { cmd: 'puback', messageId: 1 },
    { cmd: 'puback', messageId: 65_535 },
    { cmd: 'suback', messageId: 300, granted: [0, 1, 128] },
    {
      cmd: 'publish',
      topic: 't/ü',
      payload: Buffer.from('x'),
      qos: 1,
      messageId: 4660,
      retain: false,
      dup: false,
    },
  ];
  const cached = packets.map((p) => mqttPacket.generate(p));
  const writer = mqttPacket.writeToStream as unknown as { cacheNumbers: boolean };
  assert.equal(writer.cacheNumbers, true);
  try {
    writeNumbersUncached();
    assert.equal(writer.cacheNumbers, false);
    assert.deepEqual(
      packets.map((p) => mqttPacket.generate(p)),
      cached,
    );
  } finally {
    writer.cacheNumbers = true;
  }
});

test('compactListeners: emitting, adding and removing work as before, and no inherited name is an event', () => {
  const emitter = new EventEmitter();
  const got: string[] = [];
  emitter.on('a', (x: string) => got.push(`a1 ${x}`));
  emitter.on('a', (x: string) => got.push(`a2 ${x}`));
  emitter.once('b', (x: string) => got.push(`b ${x}`));
  compactListeners(emitter, 'b');
  emitter.emit('a', '1');
  emitter.emit('b', '2');
  emitter.emit('b', '3');
  assert.deepEqual(got, ['a1 1', 'a2 1', 'b 2']);
  assert.deepEqual(emitter.eventNames(), ['a']);
  for (const inherited of ['toString', 'constructor', '__proto__', 'hasOwnProperty']) {
    assert.equal(emitter.listenerCount(inherited), 0, inherited);
    assert.equal(emitter.emit(inherited), false, inherited);
  }
  emitter.on('c', () => got.push('c'));
  emitter.emit('c');
  emitter.removeAllListeners('a');
  assert.deepEqual(emitter.eventNames(), ['c']);
  assert.throws(() => emitter.emit('error', new Error('unheard')), /unheard/);
  assert.deepEqual(got.slice(3), ['c']);
});

test('sweepKeepalives: a silent client is cut after 1.5 × its keepalive, not before and soon after; one sending packets stays', {
  timeout: 20_000,
}, async () => {
  const aedes = await Aedes.createBroker();
  sweepKeepalives(aedes);
  try {
    const talker = await connectClient(aedes, 'talker', true, { trim: true, keepalive: 1 });
    const pings = setInterval(() => talker.send({ cmd: 'pingreq' }), 250);
    try {
      const silent = await connectClient(aedes, 'silent', true, { trim: true, keepalive: 1 });
      // Taken after the client was ready, when its keepalive counts from: the elapsed time is at most the real one.
      const ready = performance.now();
      // The sweep's mark, not Aedes's own Timeout, counts the keepalive.
      const timer = (silent.client as unknown as { _keepaliveTimer: { hasRef?: unknown } })._keepaliveTimer;
      assert.equal(typeof timer.hasRef, 'undefined');
      const [timedOut] = await waitEvent(aedes, 'keepaliveTimeout', 10_000);
      const elapsed = performance.now() - ready;
      assert.equal((timedOut as Client).id, 'silent');
      assert.ok(elapsed >= 1_500, `cut after ${elapsed} ms, before 1.5 × keepalive`);
      // 1.2 s of sweep and clock resolution, and room for a busy machine.
      assert.ok(elapsed < 1_500 + 1_200 + 1_500, `cut ${elapsed} ms after`);
      await waitFor('the silent client closed', () => silent.client.closed);
      // The talker outlives two more keepalive periods (and their sweeps).
      const pongs = () => packetsIn(talker.out).filter((p) => p.cmd === 'pingresp').length;
      const before = pongs();
      await waitFor('12 more PINGRESPs', () => pongs() >= before + 12);
      assert.equal(talker.client.closed, false);
    } finally {
      clearInterval(pings);
    }
  } finally {
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
  }
});

test('inboundWindowOnDemand: a client without QoS 2 holds no window; QoS 2 still completes and the window still bounds it', {
  timeout: 10_000,
}, async () => {
  const aedes = await Aedes.createBroker({ maxInflightInbound: 1 });
  inboundWindowOnDemand(aedes);
  try {
    const ownSets = (c: Client) =>
      Reflect.ownKeys(c).filter((k) => (c as unknown as Record<string | symbol, unknown>)[k] instanceof Set);
    const idle = await connectClient(aedes, 'idle', true, { trim: true });
    assert.deepEqual(ownSets(idle.client), []);

    const q2 = await connectClient(aedes, 'q2', true, { trim: true });
    const publish = (messageId: number) =>
      q2.send({
        cmd: 'publish',
        topic: 't',
        payload: Buffer.from('x'),
        qos: 2,
        messageId,
        retain: false,
        dup: false,
      });
    const cmds = () => packetsIn(q2.out).map((p) => p.cmd);
    publish(1);
    await waitFor('PUBREC', () => cmds().includes('pubrec'));
    assert.equal(ownSets(q2.client).length, 1);
    q2.send({ cmd: 'pubrel', messageId: 1 });
    await waitFor('PUBCOMP', () => cmds().includes('pubcomp'));
    // The window holds one: a second message id while the first awaits PUBREL closes the connection.
    publish(2);
    await waitFor('second PUBREC', () => cmds().filter((c) => c === 'pubrec').length === 2);
    const closed = waitEvent(aedes, 'clientError');
    publish(3);
    const [, err] = await closed;
    assert.match((err as Error).message, /maxInflightInbound exceeded/);
  } finally {
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
  }
});
