/**
 * The live channel's WebSocket protocol (contract §5), message by message, with a real `ws` client
 * against the channel mounted on a plain HTTP server.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { type LiveServer, LiveTestClient, reading, startLiveServer } from './support/live-client.js';
import { waitFor } from './support/wait.js';

describe('live /live handshake', () => {
  let server: LiveServer;
  before(async () => {
    server = await startLiveServer({ BRIDGE_ALLOWED_ORIGINS: 'https://dash.example' });
  });
  after(() => server.close());

  test('401 and no upgrade without a token, with a bad token, an expired one, a revoked one', async () => {
    assert.equal(await LiveTestClient.refusedStatus(server.wsUrl), 401);
    assert.equal(await LiveTestClient.refusedStatus(`${server.wsUrl}?token=abc.def.ghi`), 401);
    assert.equal(
      await LiveTestClient.refusedStatus(`${server.wsUrl}?token=${await server.expiredToken()}`),
      401,
    );
    const token = await server.token();
    const ok = await LiveTestClient.connect(server.wsUrl, token);
    ok.close();
    await server.tokens.revoke(token);
    assert.equal(await LiveTestClient.refusedStatus(`${server.wsUrl}?token=${token}`), 401);
  });

  test('Authorization: Bearer is accepted; the subprotocol is selected when offered', async () => {
    const token = await server.token();
    const a = await LiveTestClient.connect(server.wsUrl, undefined, {
      headers: { Authorization: `Bearer ${token}` },
      protocols: ['telemetry.v1.json'],
    });
    assert.equal(a.ws.protocol, 'telemetry.v1.json');
    const b = await LiveTestClient.connect(server.wsUrl, token);
    assert.equal(b.ws.protocol, '');
    a.close();
    b.close();
  });

  test('Origin not in the allow-list: 403; listed Origin: accepted', async () => {
    const token = await server.token();
    assert.equal(
      await LiveTestClient.refusedStatus(`${server.wsUrl}?token=${token}`, {
        headers: { Origin: 'https://evil.example' },
      }),
      403,
    );
    const ok = await LiveTestClient.connect(server.wsUrl, token, {
      headers: { Origin: 'https://dash.example' },
    });
    ok.close();
  });

  test('permessage-deflate is negotiated when offered', async () => {
    const c = await LiveTestClient.connect(server.wsUrl, await server.token(), { perMessageDeflate: true });
    assert.match(c.ws.extensions, /permessage-deflate/);
    c.close();
  });
});

test('permessage-deflate is not negotiated when BRIDGE_LIVE_DEFLATE=off', async () => {
  const server = await startLiveServer({ BRIDGE_LIVE_DEFLATE: 'off' });
  try {
    const c = await LiveTestClient.connect(server.wsUrl, await server.token(), { perMessageDeflate: true });
    assert.equal(c.ws.extensions, '');
    c.close();
  } finally {
    await server.close();
  }
});

describe('live protocol messages', () => {
  let server: LiveServer;
  before(async () => {
    server = await startLiveServer({ BRIDGE_LIVE_RATE: '5', BRIDGE_LIVE_BURST: '10' });
  });
  after(() => server.close());

  test('subscribe → subscribed → snapshots of the latest state (cursor order), then live telemetry and status', async () => {
    server.hub.publishTelemetry(reading('snap-a', 1, { t: 1 }, 1_764_115_200_000));
    server.hub.publishTelemetry(reading('snap-a', 2, { t: 2 }, 1_764_115_201_000));
    server.hub.publishStatus({
      deviceId: 'snap-a',
      state: 'online',
      firmware: '1.2.0',
      time: 1_764_115_200_500,
    });
    server.hub.publishTelemetry(reading('snap-b', 7, { t: 9 }, 1_764_115_202_000));
    const c = await LiveTestClient.connect(server.wsUrl, await server.token());
    c.send({ type: 'subscribe', id: 'r1', feeds: ['telemetry/+', 'status/snap-a'] });
    assert.deepEqual(await c.next(), {
      type: 'subscribed',
      id: 'r1',
      feeds: ['telemetry/+', 'status/snap-a'],
    });
    const s1 = await c.next();
    const s2 = await c.next();
    const s3 = await c.next();
    assert.deepEqual(
      [s1, s2, s3].map((m) => [m.type, m.feed]),
      [
        ['snapshot', 'telemetry/snap-a'],
        ['snapshot', 'status/snap-a'],
        ['snapshot', 'telemetry/snap-b'],
      ],
    );
    assert.deepEqual(
      { ...s1, cursor: undefined },
      {
        type: 'snapshot',
        feed: 'telemetry/snap-a',
        device: 'snap-a',
        cursor: undefined,
        seq: 2,
        time: 1_764_115_201_000,
        values: { t: 2 },
        labels: {},
      },
    );
    assert.equal(s2.state, 'online');
    assert.equal(s2.firmware, '1.2.0');
    assert.equal(typeof s1.cursor, 'string');

    server.hub.publishTelemetry({
      deviceId: 'd1',
      seq: 42,
      receivedAt: Date.now(),
      samples: [
        { time: 1_764_115_201_000, values: { temperature_c: 21.5 }, labels: { room: 'a' } },
        { time: 1_764_115_202_000, values: { temperature_c: 21.6 }, labels: {} },
      ],
    });
    server.hub.publishStatus({
      deviceId: 'snap-a',
      state: 'offline',
      firmware: '1.2.0',
      time: 1_764_115_203_000,
    });
    server.hub.publishStatus({ deviceId: 'other', state: 'online', firmware: 'x', time: 1 }); // not subscribed
    const t1 = await c.next();
    const t2 = await c.next();
    const st = await c.next();
    assert.deepEqual(
      { ...t1, cursor: 'x' },
      {
        type: 'telemetry',
        feed: 'telemetry/d1',
        device: 'd1',
        cursor: 'x',
        seq: 42,
        time: 1_764_115_201_000,
        values: { temperature_c: 21.5 },
        labels: { room: 'a' },
      },
    );
    assert.equal(t2.time, 1_764_115_202_000, 'one telemetry message a sample');
    assert.notEqual(t1.cursor, t2.cursor);
    assert.deepEqual(
      { ...st, cursor: 'x' },
      {
        type: 'status',
        feed: 'status/snap-a',
        device: 'snap-a',
        cursor: 'x',
        state: 'offline',
        firmware: '1.2.0',
        time: 1_764_115_203_000,
      },
    );
    // unsubscribe: no more telemetry; status/snap-a continues.
    c.send({ type: 'unsubscribe', id: 'r2', feeds: ['telemetry/+'] });
    assert.deepEqual(await c.next(), { type: 'unsubscribed', id: 'r2' });
    server.hub.publishTelemetry(reading('d1', 43, { temperature_c: 22 }));
    server.hub.publishStatus({
      deviceId: 'snap-a',
      state: 'online',
      firmware: '1.3.0',
      time: 1_764_115_204_000,
    });
    const after = await c.next();
    assert.equal(after.type, 'status');
    assert.equal(after.firmware, '1.3.0');
    c.close();
  });

  test('forbidden outside the token scope; bad_request for bad input', async () => {
    const c = await LiveTestClient.connect(
      server.wsUrl,
      await server.token({ feeds: ['telemetry/+', 'status/d1'] }),
    );
    c.send({ type: 'subscribe', id: 'a', feeds: ['status/d2'] });
    assert.deepEqual(
      { ...(await c.next()), message: '' },
      { type: 'error', id: 'a', code: 'forbidden', message: '' },
    );
    c.send({ type: 'subscribe', id: 'b', feeds: ['#'] });
    assert.equal((await c.next()).code, 'forbidden');
    c.send({ type: 'subscribe', id: 'c', feeds: ['+/d1'] });
    assert.equal((await c.next()).code, 'forbidden', 'no single filter of the token covers +/d1');
    c.send({ type: 'subscribe', id: 'd', feeds: ['telemetry/d9', 'status/d1'] });
    assert.equal((await c.next()).type, 'subscribed');
    for (const [id, bad] of [
      ['e1', { type: 'subscribe', id: 'e1', feeds: ['foo/bar'] }],
      ['e2', { type: 'subscribe', id: 'e2', feeds: 'telemetry/+' }],
      ['e3', { type: 'subscribe', id: 'e3', feeds: [] }],
      ['e4', { type: 'nope', id: 'e4' }],
      ['e5', { type: 'subscribe', id: 'e5', feeds: ['telemetry/#/x'] }],
    ] as const) {
      c.send(bad);
      assert.deepEqual([(await c.next()).code, id], ['bad_request', id]);
    }
    c.send('not json');
    const m = await c.next();
    assert.equal(m.code, 'bad_request');
    assert.equal(m.id, undefined);
    c.send({ type: 'subscribe', feeds: ['telemetry/+'] });
    assert.equal((await c.next()).code, 'bad_request', 'id is required');
    c.close();
  });

  test('too_many_subscriptions past 100 feeds per connection', async () => {
    const c = await LiveTestClient.connect(server.wsUrl, await server.token());
    const feeds = Array.from({ length: 100 }, (_, i) => `telemetry/dev${i}`);
    c.send({ type: 'subscribe', id: 's1', feeds });
    assert.equal((await c.next()).type, 'subscribed');
    c.send({ type: 'subscribe', id: 's1', feeds: ['telemetry/dev0'] });
    assert.equal((await c.next()).type, 'subscribed', 'a filter already held does not count twice');
    c.send({ type: 'subscribe', id: 's2', feeds: ['telemetry/dev100'] });
    assert.deepEqual([(await c.next()).code], ['too_many_subscriptions']);
    c.send({ type: 'unsubscribe', id: 's3', feeds: ['telemetry/dev0'] });
    assert.equal((await c.next()).type, 'unsubscribed');
    c.send({ type: 'subscribe', id: 's4', feeds: ['telemetry/dev100'] });
    assert.equal((await c.next()).type, 'subscribed');
    c.close();
  });

  test('rate_limited past the token bucket (burst 10)', async () => {
    const c = await LiveTestClient.connect(server.wsUrl, await server.token());
    for (let i = 0; i < 15; i++) c.send({ type: 'unsubscribe', id: `u${i}`, feeds: [] });
    const replies = [];
    for (let i = 0; i < 15; i++) replies.push(await c.next());
    const limited = replies.filter((m) => m.type === 'error' && m.code === 'rate_limited');
    assert.ok(limited.length >= 4, `${limited.length} rate_limited of 15 (burst 10, 5/s)`);
    assert.equal(replies.filter((m) => m.type === 'unsubscribed').length + limited.length, 15);
    assert.ok(limited.every((m) => typeof m.id === 'string'));
    c.close();
  });

  test('an inbound frame over 4 KiB closes the connection with 1009', async () => {
    const c = await LiveTestClient.connect(server.wsUrl, await server.token());
    c.send({ type: 'subscribe', id: 'big', feeds: ['telemetry/+'], pad: 'x'.repeat(5000) });
    assert.equal((await c.closed).code, 1009);
    const ok = await LiveTestClient.connect(server.wsUrl, await server.token());
    ok.send({ type: 'subscribe', id: 'small', feeds: ['telemetry/+'], pad: 'x'.repeat(3900) });
    assert.equal((await ok.next()).type, 'subscribed', 'a frame just under 4 KiB is fine');
    ok.close();
  });

  test('command → sendCommand and ack; forbidden without the right or outside the scope', async () => {
    const c = await LiveTestClient.connect(
      server.wsUrl,
      await server.token({ feeds: ['+/d1'], commands: true }),
    );
    c.send({ type: 'command', id: 'r3', device: 'd1', name: 'set_interval', args: { ms: '500' } });
    assert.deepEqual(await c.next(), { type: 'ack', id: 'r3' });
    const sent = server.commands.at(-1)!;
    assert.equal(sent.deviceId, 'd1');
    assert.equal(sent.cmd.name, 'set_interval');
    assert.deepEqual(sent.cmd.args, { ms: '500' });
    assert.ok(sent.cmd.id.length > 0);
    const before = server.commands.length;
    c.send({ type: 'command', id: 'r4', device: 'd2', name: 'reboot', args: {} });
    assert.equal((await c.next()).code, 'forbidden');
    c.send({ type: 'command', id: 'r5', device: 'd1', name: 'bad name', args: {} });
    assert.equal((await c.next()).code, 'bad_request');
    c.send({ type: 'command', id: 'r6', device: 'd1', name: 'x', args: { ms: 500 } });
    assert.equal((await c.next()).code, 'bad_request');
    c.close();
    const viewer = await LiveTestClient.connect(server.wsUrl, await server.token());
    viewer.send({ type: 'command', id: 'r7', device: 'd1', name: 'reboot', args: {} });
    assert.deepEqual(
      { ...(await viewer.next()), message: '' },
      { type: 'error', id: 'r7', code: 'forbidden', message: '' },
    );
    assert.equal(server.commands.length, before);
    viewer.close();
  });

  test('live client gauge counts open connections', async () => {
    await waitFor('earlier clients to be gone', () => server.live.clientCount() === 0);
    const c = await LiveTestClient.connect(server.wsUrl, await server.token());
    await waitFor('gauge 1', async () => (await server.metrics.liveClients.get()).values[0]?.value === 1);
    assert.equal(server.live.clientCount(), 1);
    const count = async () =>
      (await server.metrics.e2eLatency.get()).values.find(
        (v) => v.metricName === 'bridge_e2e_latency_seconds_count',
      )?.value ?? 0;
    const before = await count();
    server.hub.publishTelemetry(reading('lat', 1, { v: 1 }, Date.now() - 50));
    assert.equal(await count(), before + 1, 'e2e latency observed on fan-out');
    c.close();
    await waitFor('gauge 0', async () => (await server.metrics.liveClients.get()).values[0]?.value === 0);
  });
});

test('heartbeat: a peer that does not answer pings is terminated; one that does stays', async () => {
  const server = await startLiveServer({ BRIDGE_LIVE_PING_MS: '100' });
  try {
    const token = await server.token();
    const silent = await LiveTestClient.connect(server.wsUrl, token, { autoPong: false });
    const polite = await LiveTestClient.connect(server.wsUrl, token);
    let pings = 0;
    silent.ws.on('ping', () => pings++);
    const { code } = await silent.closed;
    assert.equal(code, 1006, 'terminated, no close frame');
    assert.ok(pings >= 1);
    assert.equal(polite.ws.readyState, WebSocket.OPEN);
    polite.send({ type: 'subscribe', id: 'x', feeds: ['#'] });
    assert.equal((await polite.next()).type, 'subscribed');
    polite.close();
  } finally {
    await server.close();
  }
});

test('a connection whose token is revoked is closed with 1008 within a ping interval', async () => {
  const server = await startLiveServer({ BRIDGE_LIVE_PING_MS: '100' });
  try {
    const token = await server.token();
    const c = await LiveTestClient.connect(server.wsUrl, token);
    await server.tokens.revoke(token);
    assert.equal((await c.closed).code, 1008);
  } finally {
    await server.close();
  }
});
