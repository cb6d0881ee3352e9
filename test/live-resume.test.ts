/**
 * Cursors and resume (contract §5, issue 3 point 3), over WebSocket and Server-Sent Events.
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { type LiveServer, LiveTestClient, reading, readSse, startLiveServer } from './support/live-client.js';
import { waitEvent, waitFor } from './support/wait.js';

describe('resume over WebSocket', () => {
  let server: LiveServer;
  before(async () => {
    server = await startLiveServer({ BRIDGE_LIVE_HISTORY: '200' });
  });
  after(() => server.close());

  test('a client that reconnects with since gets exactly the 50 samples it missed: no gap, no duplicate', async () => {
    const token = await server.token({ feeds: ['telemetry/+', 'status/+'] });
    const first = await LiveTestClient.connect(server.wsUrl, token);
    first.send({ type: 'subscribe', id: 'r1', feeds: ['telemetry/res-a', 'telemetry/res-b'] });
    assert.equal((await first.next()).type, 'subscribed');
    for (let seq = 1; seq <= 5; seq++) server.hub.publishTelemetry(reading('res-a', seq, { v: seq }));
    let last = '';
    for (let i = 1; i <= 5; i++) {
      const m = await first.next();
      assert.equal(m.seq, i);
      last = m.cursor as string;
    }
    first.close();
    await first.closed;
    // While disconnected: 50 samples on the subscribed feeds, interleaved with others it must not get.
    for (let seq = 6; seq <= 55; seq++) {
      server.hub.publishTelemetry(reading(seq % 2 ? 'res-a' : 'res-b', seq, { v: seq }));
      server.hub.publishTelemetry(reading('res-other', seq, { v: seq }));
      if (seq % 10 === 0)
        server.hub.publishStatus({ deviceId: 'res-a', state: 'online', firmware: '1', time: seq });
    }
    const second = await LiveTestClient.connect(server.wsUrl, token);
    second.send({ type: 'subscribe', id: 'r2', feeds: ['telemetry/res-a', 'telemetry/res-b'], since: last });
    assert.equal((await second.next()).type, 'subscribed');
    const replayed = [];
    for (;;) {
      const m = await second.next();
      if (m.type === 'replayed') {
        assert.deepEqual(m, { type: 'replayed', id: 'r2', count: 50 });
        break;
      }
      replayed.push(m);
    }
    assert.deepEqual(
      replayed.map((m) => m.seq),
      Array.from({ length: 50 }, (_, i) => i + 6),
    );
    assert.ok(replayed.every((m) => m.type === 'telemetry'));
    assert.equal(new Set(replayed.map((m) => m.cursor)).size, 50);
    // And then live again, exactly once.
    server.hub.publishTelemetry(reading('res-b', 56, { v: 56 }));
    const live = await second.next();
    assert.equal(live.seq, 56);
    second.close();
  });

  test('resume from the newest cursor replays nothing', async () => {
    const token = await server.token();
    const c = await LiveTestClient.connect(server.wsUrl, token);
    c.send({ type: 'subscribe', id: 'a', feeds: ['telemetry/nothing-new'] });
    await c.next();
    server.hub.publishTelemetry(reading('nothing-new', 1, { v: 1 }));
    const m = await c.next();
    c.send({ type: 'subscribe', id: 'b', feeds: ['status/nothing-new'], since: m.cursor });
    assert.equal((await c.next()).type, 'subscribed');
    assert.deepEqual(await c.next(), { type: 'replayed', id: 'b', count: 0 });
    c.close();
  });

  test('a cursor older than the history kept: gap, then fresh snapshots', async () => {
    const token = await server.token();
    const c = await LiveTestClient.connect(server.wsUrl, token);
    c.send({ type: 'subscribe', id: 'a', feeds: ['telemetry/old'] });
    await c.next();
    server.hub.publishTelemetry(reading('old', 1, { v: 1 }));
    const { cursor } = await c.next();
    c.close();
    for (let seq = 2; seq <= 300; seq++) server.hub.publishTelemetry(reading('old', seq, { v: seq })); // history: 200
    const again = await LiveTestClient.connect(server.wsUrl, token);
    again.send({ type: 'subscribe', id: 'b', feeds: ['telemetry/old'], since: cursor });
    assert.equal((await again.next()).type, 'subscribed');
    assert.deepEqual(await again.next(), { type: 'gap', id: 'b' });
    const snap = await again.next();
    assert.equal(snap.type, 'snapshot');
    assert.equal(snap.seq, 300);
    again.close();
  });

  test('a cursor from another process run (epoch) or malformed: gap', async () => {
    const c = await LiveTestClient.connect(server.wsUrl, await server.token());
    c.send({ type: 'subscribe', id: 'a', feeds: ['telemetry/+'], since: 'abc123-5' });
    assert.equal((await c.next()).type, 'subscribed');
    assert.deepEqual(await c.next(), { type: 'gap', id: 'a' });
    c.send({ type: 'unsubscribe', id: 'u', feeds: ['telemetry/+'] });
    await c.nextMatching((m) => m.type === 'unsubscribed');
    c.send({ type: 'subscribe', id: 'b', feeds: ['telemetry/+'], since: 'garbage' });
    await c.next();
    assert.deepEqual(await c.next(), { type: 'gap', id: 'b' });
    c.close();
  });
});

describe('Server-Sent Events', () => {
  let server: LiveServer;
  before(async () => {
    server = await startLiveServer();
  });
  after(() => server.close());

  test('401 without token, 403 outside the scope, 400 for bad feeds', async () => {
    const url = `${server.httpUrl}/live/sse?feeds=telemetry/%2B`;
    assert.equal((await readSse(url, {}, 0)).status, 401);
    assert.equal((await readSse(`${url}&token=bad`, {}, 0)).status, 401);
    const narrow = await server.token({ feeds: ['status/+'] });
    assert.equal((await readSse(`${url}&token=${narrow}`, {}, 0)).status, 403);
    assert.equal((await readSse(`${server.httpUrl}/live/sse?feeds=nope&token=${narrow}`, {}, 0)).status, 400);
    assert.equal((await readSse(`${server.httpUrl}/live/sse?token=${narrow}`, {}, 0)).status, 400);
  });

  test('snapshots and telemetry with id: <cursor>; resume with Last-Event-ID gets exactly what was missed', async () => {
    const token = await server.token();
    server.hub.publishTelemetry(reading('sse-1', 1, { v: 1 }));
    const url = `${server.httpUrl}/live/sse?feeds=telemetry/sse-1`;
    const first = await readSse(url, { Authorization: `Bearer ${token}` }, 2);
    assert.deepEqual(first.events[0]!.data, { type: 'subscribed', id: 'sse', feeds: ['telemetry/sse-1'] });
    assert.equal(first.events[0]!.id, undefined);
    const snap = first.events[1]!;
    assert.equal(snap.data.type, 'snapshot');
    assert.equal(snap.id, snap.data.cursor);
    for (let seq = 2; seq <= 11; seq++) {
      server.hub.publishTelemetry(reading('sse-1', seq, { v: seq }));
      server.hub.publishTelemetry(reading('sse-2', seq, { v: seq }));
    }
    const resumed = await readSse(`${url}&token=${token}`, { 'Last-Event-ID': snap.id! }, 12);
    const body = resumed.events.slice(1);
    assert.deepEqual(
      body.slice(0, 10).map((e) => [e.data.type, e.data.seq, e.id === e.data.cursor]),
      Array.from({ length: 10 }, (_, i) => ['telemetry', i + 2, true]),
    );
    assert.deepEqual(body[10]!.data, { type: 'replayed', id: 'sse', count: 10 });
    // ?since= works the same way.
    const viaQuery = await readSse(`${url}&token=${token}&since=${encodeURIComponent(body[8]!.id!)}`, {}, 3);
    assert.deepEqual(
      viaQuery.events.map((e) => e.data.type),
      ['subscribed', 'telemetry', 'replayed'],
    );
    assert.equal(viaQuery.events[1]!.data.seq, 11);
  });

  test('SSE clients count in the live client gauge and get live messages', async () => {
    await waitFor('earlier SSE clients gone', () => server.live.clientCount() === 0);
    const token = await server.token();
    const pending = readSse(`${server.httpUrl}/live/sse?feeds=status/%2B&token=${token}`, {}, 2);
    await waitFor('SSE client registered', () => server.live.clientCount() === 1);
    server.hub.publishStatus({ deviceId: 'sse-s', state: 'online', firmware: '2', time: 5 });
    const { events } = await pending;
    assert.equal(events[1]!.data.type, 'status');
    await waitFor('SSE client gone', () => server.live.clientCount() === 0);
  });
});

test('SSE heartbeat: a comment line every ping interval', async () => {
  const server = await startLiveServer({ BRIDGE_LIVE_PING_MS: '100' });
  try {
    const req = request(`${server.httpUrl}/live/sse?feeds=status/%2B&token=${await server.token()}`);
    req.end();
    const [res] = (await waitEvent(req, 'response')) as [import('node:http').IncomingMessage];
    assert.equal(res.statusCode, 200);
    let text = '';
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      text += chunk;
    });
    await waitFor('two heartbeat comments', () => text.split(': ping\n\n').length > 2);
    req.destroy();
  } finally {
    await server.close();
  }
});
