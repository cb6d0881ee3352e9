/**
 * `GET /api/history` (issue 15 points 3 and 6) and history read back from InfluxDB beyond what the
 * bridge's store holds (point 2): a real bridge, a real InfluxDB 1.6 with points older than the
 * store, and a device publishing over MQTT through the whole path (validation, spool, InfluxDB,
 * live stream, store). Every answer is checked reading by reading: nothing twice, nothing missing.
 * Bad requests get their status and stable code (src/errors.ts) and change nothing.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { openTokenService } from '../src/auth/tokens.js';
import { encodeTelemetry, publishAcked, startTestBridge, type TestBridge } from './support/bridge.js';
import { type InfluxdServer, startInfluxd } from './support/influx.js';
import { LiveTestClient } from './support/live-client.js';
import { freePort } from './support/services.js';
import { waitFor } from './support/wait.js';

const HOUR = 3_600_000;
const MINUTE = 60_000;

async function tokenFor(b: TestBridge, feeds = ['telemetry/+', 'status/+']): Promise<string> {
  return (await (await openTokenService(b.dataDir)).create({ feeds })).token;
}

interface Answer {
  status: number;
  body: Record<string, unknown> & {
    t: number[];
    step: number | null;
    series: Record<string, { values?: (number | null)[]; mean?: (number | null)[]; count?: number[] }>;
    status: { time: number; state: string; firmware: string }[];
  };
  headers: Headers;
}

async function get(b: TestBridge, query: string, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await fetch(`http://127.0.0.1:${b.bridge.ports.http}/api/history?${query}`, { headers });
  return { status: res.status, body: (await res.json()) as Answer['body'], headers: res.headers };
}

/** Publishes samples of `device` over MQTT, QoS 1, up to 1,000 a message; resolves on the PUBACKs. */
async function publish(
  b: TestBridge,
  device: string,
  secret: string,
  samples: { time: number; v: number }[],
) {
  const client = await b.connect('tcp', { clientId: device, username: device, password: secret });
  for (let i = 0; i < samples.length; i += 1000) {
    const chunk = samples.slice(i, i + 1000).map((s) => ({ time_unix_ms: s.time, values: { v: s.v } }));
    await publishAcked(client, `devices/${device}/telemetry`, encodeTelemetry(device, i + 1, chunk));
  }
  client.end(true);
}

describe('history beyond the store, read back from InfluxDB 1.6 with InfluxQL', () => {
  let influx: InfluxdServer;
  let skip: string | undefined;
  let b: TestBridge;
  let token: string;
  const now = Date.now();
  // In InfluxDB only (written before the bridge started): 2 to 3 hours ago, one a minute.
  const old = Array.from({ length: 60 }, (_, i) => ({ time: now - 3 * HOUR + i * MINUTE, v: 1000 + i }));
  // Through the bridge (store and InfluxDB): the last 20 minutes, one every 10 s.
  const recent = Array.from({ length: 120 }, (_, i) => ({ time: now - 20 * MINUTE + i * 10_000, v: i }));

  before(async () => {
    const started = await startInfluxd({ database: 'hist' });
    if ('skip' in started) {
      skip = started.skip;
      return;
    }
    influx = started;
    const lines = old.map((p) => `telemetry,device_id=dev-h v=${p.v} ${p.time}`);
    lines.push(`device_status,device_id=dev-h online=true,firmware="0.9" ${now - 3 * HOUR}`);
    const res = await fetch(`${influx.url}/write?db=hist&precision=ms`, {
      method: 'POST',
      body: lines.join('\n'),
    });
    assert.equal(res.status, 204);
    b = await startTestBridge({ INFLUX_URL: influx.url, INFLUX_API: 'v1', INFLUX_DATABASE: 'hist' });
    token = await tokenFor(b);
    await publish(b, 'dev-h', await b.addDevice('dev-h'), recent);
    // Both copies of the recent readings are complete before anything is asked.
    await waitFor('the recent readings in InfluxDB', async () => {
      const rows = await influx.rows(`SELECT count(v) FROM telemetry WHERE device_id = 'dev-h'`, 'hist');
      return Number(rows[0]?.['count']) === old.length + recent.length;
    });
  });
  after(async () => {
    await b?.close();
    await influx?.stop();
  });

  test('raw readings: InfluxDB before the store began, the store after, each reading once', async (t) => {
    if (skip) return t.skip(skip);
    const a = await get(b, `device=dev-h&from=${now - 4 * HOUR}&to=${now}`, {
      Authorization: `Bearer ${token}`,
    });
    assert.equal(a.status, 200, JSON.stringify(a.body));
    assert.equal(a.body.step, null);
    assert.deepEqual(
      a.body.t.map((time, i) => [time, a.body.series['v']!.values![i]]),
      [...old, ...recent].map((p) => [p.time, p.v]),
    );
    assert.equal(a.body['completeFrom'], undefined, 'InfluxDB answered for what the store lacks');
    assert.equal(typeof a.body['cursor'], 'string');
    assert.deepEqual(a.body.status, [{ time: now - 3 * HOUR, state: 'online', firmware: '0.9' }]);
    assert.match(String(a.headers.get('content-type')), /^application\/json/);
  });

  test('downsampled: the same epoch-aligned buckets from both sources, counts adding up', async (t) => {
    if (skip) return t.skip(skip);
    const from = now - 4 * HOUR;
    const a = await get(b, `device=dev-h&from=${from}&to=${now}&step=10m&token=${token}`);
    assert.equal(a.status, 200, JSON.stringify(a.body));
    assert.equal(a.body.step, 600_000);
    const v = a.body.series['v']!;
    assert.equal(
      v.count!.reduce((x, n) => x + n, 0),
      old.length + recent.length,
    );
    // Each bucket holds exactly the readings of its ten minutes, with their mean.
    for (const [i, start] of a.body.t.entries()) {
      assert.equal(start % 600_000, 0);
      const inside = [...old, ...recent].filter((p) => p.time >= start && p.time < start + 600_000);
      assert.equal(v.count![i], inside.length, `bucket ${new Date(start).toISOString()}`);
      assert.equal(v.mean![i], inside.reduce((x, p) => x + p.v, 0) / inside.length);
    }
    // /live's history is the same answer.
    const c = await LiveTestClient.connect(`ws://127.0.0.1:${b.bridge.ports.http}/live`, token);
    c.send({ type: 'subscribe', id: 'h', feeds: ['telemetry/dev-h'], history: '4h', points: 25 });
    const h = await c.nextMatching((m) => m.type === 'history');
    c.close();
    const live = (h['series'] as Record<string, { count: number[] }>)['v']!;
    assert.equal(
      live.count.reduce((x, n) => x + n, 0),
      old.length + recent.length,
    );
    assert.equal(h['completeFrom'], undefined);
  });

  test('InfluxDB unreachable: the store part, and from when it is complete', async (t) => {
    if (skip) return t.skip(skip);
    const down = await startTestBridge({
      INFLUX_URL: `http://127.0.0.1:${await freePort()}`,
      INFLUX_API: 'v1',
      INFLUX_DATABASE: 'none',
      INFLUX_TIMEOUT_MS: '500',
      BRIDGE_SHUTDOWN_GRACE_MS: '0',
    });
    try {
      const tok = await tokenFor(down);
      await publish(down, 'dev-d', await down.addDevice('dev-d'), recent.slice(0, 5));
      const a = await get(down, `device=dev-d&from=${now - 4 * HOUR}&to=${now}&token=${tok}`);
      assert.equal(a.status, 200);
      assert.deepEqual(a.body.series['v']!.values, [0, 1, 2, 3, 4]);
      assert.ok(typeof a.body['completeFrom'] === 'number' && a.body['completeFrom'] > now - 4 * HOUR);
    } finally {
      await down.close();
    }
  });
});

describe('GET /api/history: tokens, scope and bad input', () => {
  let b: TestBridge;
  let token: string;
  const now = Date.now();
  before(async () => {
    b = await startTestBridge();
    token = await tokenFor(b);
    for (let i = 0; i < 30; i++) {
      b.bridge.hub.publishTelemetry({
        deviceId: 'api-1',
        seq: i,
        receivedAt: now,
        samples: [{ time: now - 30 * MINUTE + i * MINUTE, values: { v: i }, labels: {} }],
      });
    }
    b.bridge.hub.publishStatus({ deviceId: 'api-1', state: 'online', firmware: '2.0', time: now - MINUTE });
  });
  after(() => b.close());

  test('token in the query or as Bearer; RFC 3339 times; the last hour by default', async () => {
    const q = `device=api-1&from=${new Date(now - HOUR).toISOString()}&to=${new Date(now).toISOString()}`;
    const viaQuery = await get(b, `${q}&token=${token}`);
    const viaHeader = await get(b, q, { Authorization: `Bearer ${token}` });
    assert.equal(viaQuery.status, 200);
    assert.deepEqual(viaQuery.body, viaHeader.body);
    assert.deepEqual(
      viaQuery.body.series['v']!.values,
      Array.from({ length: 30 }, (_, i) => i),
    );
    assert.deepEqual(viaQuery.body.status, [{ time: now - MINUTE, state: 'online', firmware: '2.0' }]);
    const byDefault = await get(b, `device=api-1&token=${token}`);
    assert.equal(byDefault.body.t.length, 30);
    assert.ok((byDefault.body['to'] as number) - (byDefault.body['from'] as number) === HOUR);
    const points = await get(b, `device=api-1&points=4&token=${token}`);
    assert.ok(points.body.t.length <= 4 && points.body.step !== null);
  });

  test('no or bad token: 401; a device outside the token: 403; a token for status only gets status only', async () => {
    const none = await get(b, 'device=api-1');
    assert.equal(none.status, 401);
    assert.equal(none.body['error'], 'E_TOKEN');
    assert.equal(none.headers.get('www-authenticate'), 'Bearer');
    const bad = await get(b, 'device=api-1&token=not-a-token');
    assert.equal(bad.status, 401);
    assert.equal(bad.body['error'], 'E_TOKEN');
    const other = await get(b, `device=api-1&token=${await tokenFor(b, ['telemetry/api-2'])}`);
    assert.equal(other.status, 403);
    assert.equal(other.body['error'], 'E_FORBIDDEN');
    const statusOnly = await get(b, `device=api-1&token=${await tokenFor(b, ['status/api-1'])}`);
    assert.equal(statusOnly.status, 200);
    assert.deepEqual(statusOnly.body.t, []);
    assert.deepEqual(statusOnly.body.series, {});
    assert.equal(statusOnly.body.status.length, 1);
  });

  test('a malformed range or a window over the limit: 400 with a stable code; nothing else affected', async () => {
    const live = await LiveTestClient.connect(`ws://127.0.0.1:${b.bridge.ports.http}/live`, token);
    live.send({ type: 'subscribe', id: 's', feeds: ['telemetry/api-live'] });
    await live.nextMatching((m) => m.type === 'subscribed');
    const cases: [string, string, RegExp][] = [
      ['from=yesterday', 'E_HISTORY_RANGE', /from=/],
      ['from=2026-13-45T99:00:00Z', 'E_HISTORY_RANGE', /from=/],
      [`from=${now}&to=${now - 1}`, 'E_HISTORY_RANGE', /after/],
      ['step=5x', 'E_HISTORY_RANGE', /step=/],
      ['step=0s', 'E_HISTORY_RANGE', /step=/],
      ['points=1', 'E_HISTORY_RANGE', /points/],
      ['points=abc', 'E_HISTORY_RANGE', /points=/],
      [`from=${now - 40 * 24 * HOUR}&to=${now}`, 'E_HISTORY_LIMIT', /at most/],
      ['points=20000', 'E_HISTORY_LIMIT', /at most/],
      [`from=${now - 24 * HOUR}&to=${now}&step=1s`, 'E_HISTORY_LIMIT', /at most/],
    ];
    for (const [query, code, message] of cases) {
      const a = await get(b, `device=api-1&${query}&token=${token}`);
      assert.equal(a.status, 400, query);
      assert.equal(a.body['error'], code, query);
      assert.match(String(a.body['message']), message, query);
    }
    for (const query of ['', 'device=', 'device=a%20b', 'device=../etc']) {
      const a = await get(b, `${query}&token=${token}`);
      assert.equal(a.status, 400, query);
      assert.equal(a.body['error'], 'E_HISTORY_RANGE');
    }
    const post = await fetch(
      `http://127.0.0.1:${b.bridge.ports.http}/api/history?device=api-1&token=${token}`,
      {
        method: 'POST',
      },
    );
    assert.equal(post.status, 405);
    await post.body?.cancel();
    // Nothing else was affected: a good request, and the live stream.
    assert.equal((await get(b, `device=api-1&token=${token}`)).body.t.length, 30);
    b.bridge.hub.publishTelemetry({
      deviceId: 'api-live',
      seq: 1,
      receivedAt: now,
      samples: [{ time: Date.now(), values: { v: 1 }, labels: {} }],
    });
    assert.equal((await live.nextMatching((m) => m.type === 'telemetry'))['device'], 'api-live');
    live.close();
  });
});

test('history off (BRIDGE_HISTORY_RETENTION=0, no InfluxDB): 503 E_HISTORY_OFF, and /live says so', async () => {
  const b = await startTestBridge({ BRIDGE_HISTORY_RETENTION: '0' });
  try {
    assert.equal(b.bridge.history, undefined);
    const token = await tokenFor(b);
    const a = await get(b, `device=x&token=${token}`);
    assert.equal(a.status, 503);
    assert.equal(a.body['error'], 'E_HISTORY_OFF');
    const c = await LiveTestClient.connect(`ws://127.0.0.1:${b.bridge.ports.http}/live`, token);
    c.send({ type: 'subscribe', id: 'h', feeds: ['telemetry/x'], history: '1h' });
    const m = await c.next();
    assert.equal(m['code'], 'bad_request');
    assert.match(String(m['message']), /history is off/);
    c.close();
  } finally {
    await b.close();
  }
});
