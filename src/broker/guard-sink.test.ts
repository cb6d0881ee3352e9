/**
 * The WebSocket sink of guard.ts over a real `ws` connection on loopback: what Aedes writes in a tick
 * leaves as one frame, a packet encoded for many connections leaves as its shared frame, in the order
 * the two were written, and nothing is written after the close frame.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { test } from 'node:test';
import { WebSocket, WebSocketServer } from 'ws';
import { waitFor } from '../../test/support/wait.js';
import { EncodedPacket } from './encoded-publish.js';
import { type OutboundSink, webSocketSink } from './guard.js';

interface Pair {
  sink: OutboundSink;
  server: WebSocket;
  raw: Socket;
  client: WebSocket;
  /** Binary messages the client received, in order. */
  received: Buffer[];
  close(): Promise<void>;
}

async function pair(): Promise<Pair> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: false });
  await once(wss, 'listening');
  const accepted = once(wss, 'connection') as Promise<[WebSocket, IncomingMessage]>;
  const client = new WebSocket(`ws://127.0.0.1:${(wss.address() as { port: number }).port}`);
  const received: Buffer[] = [];
  client.on('message', (data) => received.push(data as Buffer));
  await once(client, 'open');
  const [server, req] = await accepted;
  const raw = req.socket as Socket;
  return {
    sink: webSocketSink(server, raw),
    server,
    raw,
    client,
    received,
    async close() {
      client.terminate();
      server.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}

test('an encoded packet goes after what Aedes wrote before it in the same tick, even while corked', async () => {
  const p = await pair();
  try {
    // As mqtt-packet writes a packet: cork, its chunks, uncork on the next tick.
    p.sink.cork();
    p.sink.write(Buffer.from('A1'));
    p.sink.write('A2');
    process.nextTick(() => p.sink.uncork());
    assert.equal(p.sink.writePacket(new EncodedPacket(Buffer.from('B'))), true);
    p.sink.write(Buffer.from('C'));
    await waitFor('three frames', () => p.received.length === 3);
    assert.deepEqual(
      p.received.map((b) => b.toString()),
      ['A1A2', 'B', 'C'],
    );
  } finally {
    await p.close();
  }
});

test('the shared frame is what reaches the peer, and queuedBytes counts it until the kernel takes it', async () => {
  const p = await pair();
  try {
    const packet = new EncodedPacket(Buffer.alloc(300, 7));
    p.raw.cork(); // hold it in the socket's buffer, as a turn's cork does
    p.sink.writePacket(packet);
    assert.equal(p.sink.queuedBytes, packet.frame.length);
    p.raw.uncork();
    await waitFor('the frame', () => p.received.length === 1);
    assert.deepEqual(p.received[0], packet.bytes);
    assert.equal(p.sink.queuedBytes, 0);
  } finally {
    await p.close();
  }
});

test('nothing is written after the close frame', async () => {
  const p = await pair();
  try {
    p.sink.end(); // sends the close frame
    const written = p.raw.bytesWritten + p.raw.writableLength;
    p.sink.writePacket(new EncodedPacket(Buffer.from('late')));
    assert.equal(p.raw.bytesWritten + p.raw.writableLength, written);
    await once(p.client, 'close');
    assert.deepEqual(p.received, []);
  } finally {
    await p.close();
  }
});
