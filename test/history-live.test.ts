/**
 * History on the live channel (issue 15 point 2): `subscribe` with `history` gets the window first,
 * then live, with every reading exactly once across the seam while readings keep arriving; a
 * `since` older than the broker's in-memory window is served from the history store, also after a
 * restart, over WebSocket and SSE (Last-Event-ID); `gap` only for what no store holds; bad history
 * requests get a clear error and change nothing. A real bridge (in-process) with its history store;
 * readings go in through the live hub, as the pipeline hands them over.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { openTokenService } from '../src/auth/tokens.js';
import { startTestBridge, type TestBridge } from './support/bridge.js';
import { type LiveMessage, LiveTestClient, reading, readSse } from './support/live-client.js';
import { tempDir } from './support/services.js';

const HOUR = 3_600_000;

async function tokenFor(dataDir: string, feeds = ['telemetry/+', 'status/+']): Promise<string> {
  return (await (await openTokenService(dataDir)).create({ feeds })).token;
}

const wsUrl = (b: TestBridge) => `ws://127.0.0.1:${b.bridge.ports.http}/live`;

/** Messages until one satisfies `stop` (included). */
async function collect(
  c: LiveTestClient,
  stop: (m: LiveMessage) => boolean,
  timeoutMs = 20_000,
): Promise<LiveMessage[]> {
  const out: LiveMessage[] = [];
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = await c.next(Math.max(1, deadline - Date.now()));
    out.push(m);
    if (stop(m)) return out;
  }
}

/** The `v` values of a raw history message. */
function historyValues(m: LiveMessage): number[] {
  const series = m['series'] as Record<string, { values: number[] }>;
  return series['v']?.values ?? [];
}

describe('history on /live', () => {
  let b: TestBridge;
  let token: string;
  before(async () => {
    // A small in-memory window: resumes and catch-ups older than 50 events come from the store.
    b = await startTestBridge({ BRIDGE_LIVE_HISTORY: '50' });
    token = await tokenFor(b.dataDir);
  });
  after(() => b.close());

  test('history first, then live: every reading of the window exactly once across the seam, while readings keep arriving', async () => {
    const hub = b.bridge.hub;
    const now = Date.now();
    let seq = 0;
    // 300 readings over the last 55 minutes, another device's, and one older than the window.
    for (let i = 0; i < 300; i++) {
      hub.publishTelemetry(reading('seam', ++seq, { v: seq }, now - 55 * 60_000 + i * 10_000));
      hub.publishTelemetry(reading('seam-other', seq, { v: seq }));
    }
    const outside = ++seq;
    hub.publishTelemetry(reading('seam', outside, { v: outside }, now - 2 * HOUR));
    // Readings keep arriving (about 2,000 a second; the in-memory window holds 50) while the
    // client subscribes, reads the history and catches up.
    const timer = setInterval(() => {
      for (let k = 0; k < 10; k++) hub.publishTelemetry(reading('seam', ++seq, { v: seq }));
    }, 5);
    let first: LiveMessage[];
    let more: LiveMessage[];
    const c = await LiveTestClient.connect(wsUrl(b), token);
    try {
      c.send({ type: 'subscribe', id: 'h', feeds: ['telemetry/seam'], history: '1h' });
      first = await collect(c, (m) => m.type === 'replayed');
      // Some more live, then the end marker.
      let live = 0;
      more = await collect(c, (m) => m.type === 'telemetry' && ++live >= 200);
    } finally {
      clearInterval(timer);
    }
    const last = ++seq;
    hub.publishTelemetry(reading('seam', last, { v: last }));
    const tail = await collect(c, (m) => m['seq'] === last);
    c.close();

    const messages = [...first, ...more, ...tail];
    assert.equal(messages[0]!.type, 'subscribed');
    const history = messages.filter((m) => m.type === 'history');
    assert.equal(history.length, 1, 'one history message for the one feed');
    const h = history[0]!;
    assert.equal(h['feed'], 'telemetry/seam');
    assert.equal(h['step'], null, 'raw readings without points');
    assert.equal(typeof h['cursor'], 'string');
    // A fresh store without InfluxDB says from when it holds everything: since it opened.
    assert.ok((h['completeFrom'] as number) > (h['from'] as number) && (h['completeFrom'] as number) <= now);
    const fromHistory = historyValues(h);
    assert.deepEqual((h['t'] as number[]).length, fromHistory.length);
    const streamed = messages.filter((m) => m.type === 'telemetry').map((m) => m['seq'] as number);
    const all = [...fromHistory, ...streamed];
    // Every reading of the window, exactly once, in order; the old one is not in it.
    const expected = Array.from({ length: last }, (_, i) => i + 1).filter((s) => s !== outside);
    assert.equal(all.length, new Set(all).size, 'no duplicate');
    assert.deepEqual(all, expected);
    assert.ok(fromHistory.length >= 300, `${fromHistory.length} readings in the history`);
    assert.ok(messages.every((m) => m.type !== 'error' && m.type !== 'gap'));
  });

  test('downsampled history: at most `points` buckets whose counts and the catch-up add up to every reading', async () => {
    const hub = b.bridge.hub;
    const now = Date.now();
    let seq = 0;
    for (let i = 0; i < 600; i++)
      hub.publishTelemetry(reading('down', ++seq, { v: i % 10 }, now - 50 * 60_000 + i * 5000));
    const timer = setInterval(() => {
      for (let k = 0; k < 10; k++) hub.publishTelemetry(reading('down', ++seq, { v: 1 }));
    }, 5);
    let got: LiveMessage[];
    const c = await LiveTestClient.connect(wsUrl(b), token);
    try {
      c.send({
        type: 'subscribe',
        id: 'd',
        feeds: ['telemetry/down', 'status/down'],
        history: '1h',
        points: 60,
      });
      got = await collect(c, (m) => m.type === 'replayed');
    } finally {
      clearInterval(timer);
    }
    const last = ++seq;
    hub.publishTelemetry(reading('down', last, { v: 1 }));
    const tail = await collect(c, (m) => m['seq'] === last);
    c.close();
    const [telemetry, status] = ['telemetry/down', 'status/down'].map((f) =>
      got.find((m) => m.type === 'history' && m['feed'] === f),
    );
    assert.ok(telemetry && status, 'a history message for each feed named');
    assert.deepEqual(status['t'], []);
    const t = telemetry['t'] as number[];
    const step = telemetry['step'] as number;
    assert.ok(t.length <= 60 && t.length > 10, `${t.length} buckets`);
    assert.ok(
      t.every((x) => x % step === 0),
      'epoch-aligned buckets',
    );
    const v = (
      telemetry['series'] as Record<string, { mean: number[]; min: number[]; max: number[]; count: number[] }>
    )['v']!;
    assert.ok(v.min.every((x) => x >= 0) && v.max.every((x) => x <= 9));
    const inBuckets = v.count.reduce((a, n) => a + n, 0);
    const streamed = [...got, ...tail].filter((m) => m.type === 'telemetry').length;
    assert.equal(inBuckets + streamed, last, 'every reading once: in a bucket or streamed after it');
  });

  test('a cursor older than the in-memory window is served from the store: exactly what was missed, then live', async () => {
    const hub = b.bridge.hub;
    const c = await LiveTestClient.connect(wsUrl(b), token);
    c.send({ type: 'subscribe', id: 'a', feeds: ['telemetry/away'] });
    await c.nextMatching((m) => m.type === 'subscribed');
    hub.publishTelemetry(reading('away', 1, { v: 1 }));
    const { cursor } = await c.nextMatching((m) => m.type === 'telemetry');
    c.close();
    await c.closed;
    // 2,000 missed (40 times the in-memory window), among another device's.
    for (let seq = 2; seq <= 2001; seq++) {
      hub.publishTelemetry(reading('away', seq, { v: seq }));
      hub.publishTelemetry(reading('elsewhere', seq, { v: seq }));
    }
    const again = await LiveTestClient.connect(wsUrl(b), token);
    again.send({ type: 'subscribe', id: 'r', feeds: ['telemetry/away'], since: cursor });
    const got = await collect(again, (m) => m.type === 'replayed' || m.type === 'gap');
    assert.equal(got.at(-1)!.type, 'replayed');
    assert.equal(got.at(-1)!['count'], 2000);
    const seqs = got.filter((m) => m.type === 'telemetry').map((m) => m['seq']);
    assert.deepEqual(
      seqs,
      Array.from({ length: 2000 }, (_, i) => i + 2),
    );
    hub.publishTelemetry(reading('away', 2002, { v: 2002 }));
    assert.equal((await again.nextMatching((m) => m.type === 'telemetry'))['seq'], 2002);
    again.close();
  });

  test('the same over SSE: Last-Event-ID older than the window resumes from the store; ?history= sends the window first', async () => {
    const hub = b.bridge.hub;
    hub.publishTelemetry(reading('sse-h', 1, { v: 1 }));
    const url = `http://127.0.0.1:${b.bridge.ports.http}/live/sse?feeds=telemetry/sse-h&token=${token}`;
    const first = await readSse(url, {}, 2);
    const snapshot = first.events[1]!;
    assert.equal(snapshot.data['type'], 'snapshot');
    for (let seq = 2; seq <= 301; seq++) hub.publishTelemetry(reading('sse-h', seq, { v: seq }));
    const done = (events: readonly { data: Record<string, unknown> }[]) =>
      events.some((e) => e.data['type'] === 'replayed' || e.data['type'] === 'gap');
    const resumed = await readSse(url, { 'Last-Event-ID': snapshot.id! }, done);
    const body = resumed.events.slice(1);
    assert.deepEqual(
      body
        .filter((e) => e.data['type'] === 'telemetry')
        .map((e) => [e.data['seq'], e.id === e.data['cursor']]),
      Array.from({ length: 300 }, (_, i) => [i + 2, true]),
    );
    assert.deepEqual(body.at(-1)!.data, { type: 'replayed', id: 'sse', count: 300 });
    const windowed = await readSse(`${url}&history=1h&points=10`, {}, done);
    const h = windowed.events.find((e) => e.data['type'] === 'history')!;
    assert.equal(h.id, undefined, 'history messages carry no event id (their cursor is inside)');
    const v = (h.data['series'] as Record<string, { count: number[] }>)['v']!;
    assert.equal(
      v.count.reduce((a, n) => a + n, 0),
      301,
    );
  });

  test('bad history requests get a clear error and change nothing', async () => {
    const c = await LiveTestClient.connect(wsUrl(b), token);
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ history: 'yesterday' }, 'bad_request', /duration/],
      [{ history: '1.5h' }, 'bad_request', /duration/],
      [{ history: 3600 }, 'bad_request', /duration/],
      [{ history: '32d' }, 'bad_request', /at most 31d/],
      [{ history: '1h', points: 1 }, 'bad_request', /points/],
      [{ history: '1h', points: 100_000 }, 'bad_request', /points/],
      [{ history: '1h', points: '10' }, 'bad_request', /points/],
      [{ points: 10 }, 'bad_request', /points needs history/],
      [{ history: '1h', since: 'x-1' }, 'bad_request', /since or history/],
    ];
    for (const [i, [extra, code, message]] of cases.entries()) {
      c.send({ type: 'subscribe', id: `b${i}`, feeds: ['telemetry/bad'], ...extra });
      const m = await c.next();
      assert.equal(m.type, 'error', JSON.stringify(extra));
      assert.equal(m['id'], `b${i}`);
      assert.equal(m['code'], code);
      assert.match(String(m['message']), message);
    }
    // A feed the token does not allow: forbidden, as without history.
    const narrow = await LiveTestClient.connect(wsUrl(b), await tokenFor(b.dataDir, ['telemetry/mine']));
    narrow.send({ type: 'subscribe', id: 'f', feeds: ['telemetry/theirs'], history: '1h' });
    assert.equal((await narrow.next())['code'], 'forbidden');
    // Raw readings that one message cannot carry: the window stops with an error, live follows.
    const now = Date.now();
    for (let i = 0; i < 1200; i++) {
      const values = Object.fromEntries(Array.from({ length: 100 }, (_, j) => [`v${j}`, i]));
      b.bridge.hub.publishTelemetry(reading('wide', i, values, now - 30 * 60_000 + i * 1000));
    }
    c.send({ type: 'subscribe', id: 'w', feeds: ['telemetry/wide'], history: '1h' });
    const wide = await collect(c, (m) => m.type === 'replayed');
    assert.deepEqual(
      wide.map((m) => m.type),
      ['subscribed', 'error', 'replayed'],
    );
    assert.match(String(wide[1]!['message']), /ask for points/);
    // Nothing else was affected: the connection subscribes and streams as before.
    c.send({ type: 'subscribe', id: 'ok', feeds: ['telemetry/bad'] });
    assert.equal((await c.next()).type, 'subscribed');
    b.bridge.hub.publishTelemetry(reading('bad', 1, { v: 1 }));
    assert.equal((await c.nextMatching((m) => m.type === 'telemetry'))['device'], 'bad');
    c.close();
    narrow.close();
  });
});

test('after a restart: cursors issued before it resume from the store; the window survives it', async () => {
  const dataDir = tempDir('history-restart');
  try {
    let b = await startTestBridge({ BRIDGE_LIVE_HISTORY: '20' }, { dataDir });
    const token = await tokenFor(dataDir);
    const c = await LiveTestClient.connect(wsUrl(b), token);
    c.send({ type: 'subscribe', id: 'a', feeds: ['telemetry/rs'] });
    await c.nextMatching((m) => m.type === 'subscribed');
    b.bridge.hub.publishTelemetry(reading('rs', 1, { v: 1 }));
    const { cursor } = await c.nextMatching((m) => m.type === 'telemetry');
    c.close();
    for (let seq = 2; seq <= 301; seq++) b.bridge.hub.publishTelemetry(reading('rs', seq, { v: seq }));
    await b.close();

    b = await startTestBridge({ BRIDGE_LIVE_HISTORY: '20' }, { dataDir });
    try {
      for (let seq = 302; seq <= 401; seq++) b.bridge.hub.publishTelemetry(reading('rs', seq, { v: seq }));
      const again = await LiveTestClient.connect(wsUrl(b), token);
      again.send({ type: 'subscribe', id: 'r', feeds: ['telemetry/rs'], since: cursor });
      const got = await collect(again, (m) => m.type === 'replayed' || m.type === 'gap');
      assert.deepEqual(
        got.filter((m) => m.type === 'telemetry').map((m) => m['seq']),
        Array.from({ length: 400 }, (_, i) => i + 2),
      );
      assert.deepEqual(got.at(-1), { type: 'replayed', id: 'r', count: 400 });
      // One cursor space across the restart: the same epoch, positions continuing.
      const epochOf = (x: unknown) => String(x).split('-')[0];
      assert.equal(epochOf(got[1]!['cursor']), epochOf(cursor));
      // The window survives too.
      again.send({ type: 'subscribe', id: 'h', feeds: ['telemetry/rs'], history: '1h' });
      const h = await again.nextMatching((m) => m.type === 'history');
      assert.equal(historyValues(h).length, 401);
      // A cursor no store holds (another epoch): gap, then a snapshot.
      again.send({ type: 'subscribe', id: 'g', feeds: ['telemetry/+'], since: 'zzz999-5' });
      const g = await collect(again, (m) => m.type === 'snapshot');
      assert.deepEqual(
        g.filter((m) => m.type !== 'telemetry').map((m) => m.type),
        ['replayed', 'subscribed', 'gap', 'snapshot'],
      );
      again.close();
    } finally {
      await b.close();
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});
