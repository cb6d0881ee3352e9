import assert from 'node:assert/strict';
import { createServer as createHttpServer, type Server } from 'node:http';
import { type AddressInfo, createServer as createNetServer } from 'node:net';
import type { Duplex } from 'node:stream';
import { test } from 'node:test';
import { Aedes } from 'aedes';
import websocketStream from 'websocket-stream';
import { waitFor } from '../../test/support/wait.js';
import { type Conn, mqttSession, type Transport } from './conn.js';
import {
  connectPacket,
  PACKET,
  publishPayloadOffset,
  subscribePacket,
  TelemetryTemplate,
  telemetrySeq,
} from './mqtt-wire.js';

/** Aedes served as bench/plain-aedes serves it: TCP, and WebSocket with websocket-stream. */
async function broker(t: { after(fn: () => unknown): void }) {
  const aedes = await Aedes.createBroker();
  const tcp = createNetServer((s) => aedes.handle(s));
  const http = createHttpServer();
  (
    websocketStream as unknown as {
      createServer(options: { server: Server }, onStream: (stream: Duplex) => void): void;
    }
  ).createServer({ server: http }, (stream) => aedes.handle(stream as never));
  await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  t.after(async () => {
    tcp.close();
    http.close();
    await new Promise<void>((r) => aedes.close(() => r()));
  });
  const port = (transport: Transport) => ((transport === 'tcp' ? tcp : http).address() as AddressInfo).port;
  return { aedes, port };
}

for (const transport of ['tcp', 'ws'] as const) {
  test(`fast-read subscriber over ${transport}: every PUBLISH whole and in order, and a server close seen`, async (t) => {
    const { aedes, port } = await broker(t);
    const target = { host: '127.0.0.1', port: port(transport), path: '/' };
    const seqs: number[] = [];
    let suback = false;
    let closed = 0;
    const sub = await mqttSession(
      transport,
      target,
      connectPacket('fast-sub'),
      (type, buf, start) => {
        if (type === PACKET.SUBACK) suback = true;
        // The bytes are only valid during the call (shared read buffer): read what is needed now.
        if (type === PACKET.PUBLISH) seqs.push(telemetrySeq(buf, publishPayloadOffset(buf, start)));
      },
      () => closed++,
      10_000,
      true,
    );
    sub.send(subscribePacket('devices/pub/telemetry', 1));
    await waitFor('SUBACK', () => suback);
    const pub: Conn = await mqttSession(
      'tcp',
      { host: '127.0.0.1', port: port('tcp') },
      connectPacket('pub'),
      () => {},
      () => {},
    );
    const tpl = new TelemetryTemplate('pub');
    const n = 3000;
    // Batches far larger than a read: packets straddle every read (and frame) boundary.
    for (let i = 1; i <= n; i += 100)
      pub.send(
        Buffer.concat(
          Array.from({ length: 100 }, (_, k) => tpl.publish(0, 0, i + k, 1_700_000_000_000 + i + k)),
        ),
      );
    await waitFor(`${n} deliveries`, () => seqs.length >= n);
    assert.deepEqual(
      seqs,
      Array.from({ length: n }, (_, i) => i + 1),
    );
    assert.equal(closed, 0);
    // Aedes closes the client as it does a subscriber it drops.
    (aedes as unknown as { clients: Record<string, { close(): void }> }).clients['fast-sub']?.close();
    await waitFor('the close seen by the subscriber', () => closed === 1);
    assert.equal(sub.closed, true);
    pub.close();
  });
}
