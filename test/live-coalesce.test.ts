/**
 * The fan-out's shared frames and per-turn write coalescing (websocket.ts, issue 8): connections
 * without permessage-deflate get the one pre-built frame per message, deflate connections get
 * `ws.send`; either way every client sees every message once, intact and in cursor order, and
 * frames written in one event-loop turn keep their place relative to `ws`'s own frames.
 */
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { test } from 'node:test';
import { WebSocket } from 'ws';
import { type LiveMessage, LiveTestClient, reading, startLiveServer } from './support/live-client.js';
import { waitEvent, waitFor } from './support/wait.js';

const BATCH = 200;

async function subscribed(url: string, token: string, perMessageDeflate: boolean): Promise<LiveTestClient> {
  const c = await LiveTestClient.connect(url, token, { perMessageDeflate });
  c.send({ type: 'subscribe', id: 's', feeds: ['telemetry/+'] });
  assert.equal((await c.next()).type, 'subscribed');
  return c;
}

const telemetry = (c: LiveTestClient): LiveMessage[] => c.received.filter((m) => m.type === 'telemetry');

test('plain and deflate clients get the same messages, in order, from one turn of publishes', async () => {
  const server = await startLiveServer();
  try {
    const token = await server.token();
    const plain = await subscribed(server.wsUrl, token, false);
    const deflate = await subscribed(server.wsUrl, token, true);
    assert.equal(plain.ws.extensions, '');
    assert.match(deflate.ws.extensions, /permessage-deflate/);
    // One synchronous turn: every frame is written while the sockets are corked.
    for (let i = 1; i <= BATCH; i++) {
      server.hub.publishTelemetry(reading(`dev${i % 7}`, i, { temperature_c: i + 0.5 }));
    }
    // A second turn, with a longer message (a 2-byte length in the frame header).
    await new Promise((resolve) => setImmediate(resolve));
    const long = Object.fromEntries(Array.from({ length: 20 }, (_, k) => [`metric_${k}`, k + 0.25]));
    server.hub.publishTelemetry(reading('dev-long', BATCH + 1, long));
    await waitFor('both clients to get every message', () =>
      [plain, deflate].every((c) => telemetry(c).length === BATCH + 1),
    );
    const seqs = telemetry(plain).map((m) => m['seq']);
    assert.deepEqual(
      seqs,
      Array.from({ length: BATCH + 1 }, (_, i) => i + 1),
    );
    assert.deepEqual(telemetry(deflate), telemetry(plain), 'same objects, same cursors');
    assert.deepEqual(telemetry(plain).at(-1)?.['values'], long);
    plain.close();
    deflate.close();
  } finally {
    await server.close();
  }
});

test('on a deflate connection a compressed message keeps its place among shared uncompressed frames', async () => {
  const server = await startLiveServer();
  try {
    const token = await server.token();
    const deflate = await subscribed(server.wsUrl, token, true);
    const plain = await subscribed(server.wsUrl, token, false);
    // Over the 1 KiB threshold: compressed (asynchronously, in zlib) on the deflate connection.
    const big = Object.fromEntries(Array.from({ length: 80 }, (_, k) => [`metric_${k}`, k + 0.125]));
    const seqs: number[] = [];
    for (let i = 1; i <= 30; i++) {
      server.hub.publishTelemetry(reading(`dev${i % 3}`, i, i % 10 === 5 ? big : { v: i }));
      seqs.push(i);
    }
    await waitFor('both clients to get all 30', () =>
      [plain, deflate].every((c) => telemetry(c).length === 30),
    );
    assert.deepEqual(
      telemetry(deflate).map((m) => m['seq']),
      seqs,
    );
    assert.deepEqual(telemetry(deflate), telemetry(plain));
    deflate.close();
    plain.close();
  } finally {
    await server.close();
  }
});

test('permessage-deflate is negotiated without server context takeover (ws then skips messages under 1 KiB)', async () => {
  const server = await startLiveServer();
  try {
    const ws = new WebSocket(`${server.wsUrl}?token=${encodeURIComponent(await server.token())}`, {
      perMessageDeflate: true,
    });
    ws.on('error', () => {});
    const [response] = (await waitEvent(ws, 'upgrade')) as [IncomingMessage];
    const offered = String(response.headers['sec-websocket-extensions']);
    assert.match(offered, /^permessage-deflate/);
    assert.match(offered, /server_no_context_takeover/);
    ws.close();
  } finally {
    await server.close();
  }
});

test('messages written in the turn the server closes arrive before its close frame', async () => {
  const server = await startLiveServer();
  try {
    const token = await server.token();
    const plain = await subscribed(server.wsUrl, token, false);
    for (let i = 1; i <= BATCH; i++) server.hub.publishTelemetry(reading('d1', i, { v: i }));
    const closing = server.live.close(); // same turn: the close frame follows the corked messages
    const { code } = await plain.closed;
    await closing;
    assert.equal(code, 1001);
    assert.equal(telemetry(plain).length, BATCH);
  } finally {
    await server.close();
  }
});
