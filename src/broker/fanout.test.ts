/**
 * The fan-out against a real Aedes with real TCP subscribers on loopback (no services): the order of
 * a client's deliveries across QoS, the router never waiting for a socket, a subscriber dropped at its
 * byte allowance or when its socket does not drain. End to end through the bridge, over TCP and
 * WebSocket: test/mqtt-fanout.test.ts.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import { after, test } from 'node:test';
import { Aedes, type Client } from 'aedes';
import { rawMqtt } from '../../test/support/raw-mqtt.js';
import { waitFor } from '../../test/support/wait.js';
import { type DropReason, Fanout, type FanoutOptions } from './fanout.js';

interface Drop {
  readonly clientId: string;
  readonly reason: DropReason;
  readonly queued: number;
}

interface TestBroker {
  readonly aedes: Aedes;
  readonly port: number;
  readonly drops: Drop[];
  close(): Promise<void>;
}

const open: TestBroker[] = [];
after(async () => {
  for (const b of open) await b.close();
});

/** Aedes with its subscribers' deliveries taken over by a Fanout, as broker.ts does it. */
async function startBroker(options: Partial<FanoutOptions> = {}): Promise<TestBroker> {
  const drops: Drop[] = [];
  const fanout = new Fanout({
    maxBufferedBytes: 1 << 20,
    drainTimeoutMs: 0,
    authorizeForward: (_client, packet) => packet,
    onDrop: (client, reason, queued) => drops.push({ clientId: client.id, reason, queued }),
    ...options,
  });
  const taken = new WeakSet<Client>();
  const aedes = await Aedes.createBroker({
    authorizeSubscribe(client, subscription, callback) {
      if (!taken.has(client)) {
        taken.add(client);
        fanout.install(client);
      }
      callback(null, subscription);
    },
  });
  const server: Server = createServer((socket) => aedes.handle(socket));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const broker: TestBroker = {
    aedes,
    port: (server.address() as { port: number }).port,
    drops,
    async close() {
      server.close();
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
    },
  };
  open.push(broker);
  return broker;
}

function publish(aedes: Aedes, topic: string, payload: Buffer, qos: 0 | 1 = 0): Promise<void> {
  return new Promise((resolve, reject) =>
    aedes.publish({ cmd: 'publish', topic, payload, qos, retain: false, dup: false }, (err) =>
      err ? reject(err) : resolve(),
    ),
  );
}

test('QoS 0 and QoS 1 deliveries routed in one turn reach the client in routing order', async () => {
  const { aedes, port } = await startBroker();
  const sub = await rawMqtt({ tcp: port }, 'ordered', { subscriptions: [{ topic: 'o/#', qos: 1 }] });
  // The router's own pass (mqemitter), as Aedes makes it for each message: all in one turn. Aedes
  // writes a QoS 1 delivery a turn later; a QoS 0 one behind it must not overtake it.
  const qos = [1, 0, 1, 0, 0, 1, 0];
  const mq = (aedes as unknown as { mq: { emit(p: object): void } }).mq;
  for (const [i, q] of qos.entries()) {
    mq.emit({
      cmd: 'publish',
      topic: `o/${i}`,
      payload: Buffer.from(String(i)),
      qos: q,
      retain: false,
      dup: false,
      brokerId: 'another-broker', // as relayed in a cluster: Aedes's own counter is not touched
      brokerCounter: i + 1,
    });
  }
  await waitFor('every delivery', () => sub.publishes().length === qos.length);
  assert.deepEqual(
    sub.publishes().map((p) => [p.topic, p.qos]),
    qos.map((q, i) => [`o/${i}`, q]),
  );
  // Later, with nothing of Aedes's in flight, QoS 0 goes the fast way and still in order.
  await publish(aedes, 'o/late', Buffer.from('x'));
  await waitFor('the late one', () => sub.publishes().length === qos.length + 1);
  sub.close();
});

test('a frozen subscriber never holds up routing; it is dropped past its allowance, once; the other gets everything', async () => {
  const allowance = 64 * 1024;
  const broker = await startBroker({ maxBufferedBytes: allowance });
  const frozen = await rawMqtt({ tcp: broker.port }, 'frozen', { subscriptions: [{ topic: 'big', qos: 0 }] });
  frozen.freeze();
  const healthy = await rawMqtt({ tcp: broker.port }, 'healthy', {
    subscriptions: [{ topic: 'big', qos: 0 }],
  });
  const payload = Buffer.alloc(16 * 1024, 1);
  let sent = 0;
  // Bounded: loopback's buffers hold a few MB for the frozen one; then its allowance fills.
  while (sent < 2000 && broker.drops.length === 0) {
    await publish(broker.aedes, 'big', payload); // resolves once routed: never waits for a socket
    sent++;
  }
  for (let i = 0; i < 50; i++, sent++) await publish(broker.aedes, 'big', payload);
  await waitFor('the healthy subscriber to get every message', () => healthy.publishes().length === sent);
  assert.equal(broker.drops.length, 1, JSON.stringify(broker.drops));
  const [drop] = broker.drops;
  assert.equal(drop!.clientId, 'frozen');
  assert.equal(drop!.reason, 'buffer');
  assert.ok(
    drop!.queued > allowance && drop!.queued <= allowance + payload.length + 64,
    String(drop!.queued),
  );
  frozen.close();
  healthy.close();
});

test('a subscriber whose socket does not drain within the drain timeout is dropped; a draining one is not', async () => {
  const broker = await startBroker({ maxBufferedBytes: 64 * 1024 * 1024, drainTimeoutMs: 300 });
  let stuckConn: Socket | undefined;
  broker.aedes.on('client', (client) => {
    if (client.id === 'stuck') stuckConn = client.conn as Socket;
  });
  const frozen = await rawMqtt({ tcp: broker.port }, 'stuck', { subscriptions: [{ topic: 't', qos: 0 }] });
  frozen.freeze();
  const healthy = await rawMqtt({ tcp: broker.port }, 'reader', { subscriptions: [{ topic: 't', qos: 0 }] });
  const payload = Buffer.alloc(32 * 1024, 2);
  let sent = 0;
  // Until the kernel holds no more for the frozen one and its socket buffers (then stop: it must be
  // the timeout that drops it).
  while (sent < 1000 && (stuckConn?.writableLength ?? 0) === 0) {
    await publish(broker.aedes, 't', payload);
    sent++;
  }
  await waitFor('the drain timeout', () => broker.drops.length > 0, { timeoutMs: 5000 });
  assert.deepEqual(
    broker.drops.map((d) => [d.clientId, d.reason]),
    [['stuck', 'drain_timeout']],
  );
  await waitFor('the reader to get every message', () => healthy.publishes().length === sent);
  frozen.close();
  healthy.close();
});
