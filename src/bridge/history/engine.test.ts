import assert from 'node:assert/strict';
import { appendFileSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { tempDir } from '../../../test/support/services.js';
import { BatchEncoder, fieldsJson, type HistoryInput } from './codec.js';
import type { BucketSeries, RawSeries } from './downsample.js';
import {
  type AfterPage,
  HistoryEngine,
  type HistoryEngineOptions,
  RESERVE_SPAN,
  type StoredEvent,
} from './engine.js';
import type { HistoryKey } from './key.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function dir(): string {
  const d = tempDir('history');
  dirs.push(d);
  return join(d, 'history');
}

const T0 = 1_764_115_200_000;
const key = (major: number, minor = 0): HistoryKey => ({ major, minor });

function telemetry(
  device: string,
  major: number,
  time: number,
  values: Record<string, number>,
  withValues = true,
): HistoryInput {
  const labels = { site: 'lab' };
  return withValues
    ? { kind: 'telemetry', device, key: key(major), time, seq: major, values, labels }
    : {
        kind: 'telemetry',
        device,
        key: key(major),
        time,
        json: JSON.stringify({ seq: major, time, values, labels }),
      };
}

function status(device: string, major: number, time: number, state: string): HistoryInput {
  return {
    kind: 'status',
    device,
    key: key(major),
    time,
    state,
    firmware: '1.2.0',
  };
}

/** Feeds an engine as the store's main-thread side does: events into batches of `perBatch`. */
class Producer {
  readonly encoder: BatchEncoder;
  constructor(
    private readonly engine: HistoryEngine,
    previous: HistoryKey | undefined,
    now: () => number = Date.now,
  ) {
    this.encoder = new BatchEncoder(64 << 10, now);
    this.encoder.setPrevious(previous);
  }
  push(events: readonly HistoryInput[], perBatch = 10): void {
    for (const e of events) {
      if (!this.encoder.add(e)) {
        this.flush();
        this.encoder.add(e);
      }
      if (this.encoder.count >= perBatch) this.flush();
    }
    this.flush();
  }
  flush(): void {
    const record = this.encoder.finish();
    if (record) this.engine.ingest(record);
  }
}

async function open(d: string, extra: Partial<HistoryEngineOptions> = {}) {
  return HistoryEngine.open({
    dir: d,
    keys: { type: 'local' },
    retentionMs: 86_400_000,
    maxBytes: 64 << 20,
    ...extra,
  });
}

/** Every event after `from` (matching `feeds`), page by page; fails on a gap. */
async function readAll(
  engine: HistoryEngine,
  from: HistoryKey,
  limit: number,
  extra: { feeds?: { kind: 'telemetry' | 'status' | undefined; device: string | undefined }[] } = {},
): Promise<StoredEvent[]> {
  const out: StoredEvent[] = [];
  let cursor = from;
  for (let i = 0; i < 100_000; i++) {
    const page = await engine.after({ key: cursor, limit, ...extra });
    assert.notEqual(page, 'gap', `gap after ${cursor.major}`);
    const p = page as AfterPage;
    out.push(...p.events);
    if (p.last) cursor = p.last;
    if (p.end) return out;
  }
  throw new Error('paging did not end');
}

test('events come back by cursor (exact bodies, key order, filtered) and by device and time range', async () => {
  const d = dir();
  const { engine, info } = await open(d);
  assert.equal(info.nextPosition, 1);
  assert.match(info.epoch ?? '', /^[0-9a-z]+$/);
  const p = new Producer(engine, info.resumeKey);
  const events: HistoryInput[] = [];
  let k = 0;
  for (let i = 0; i < 100; i++) {
    events.push(telemetry('d1', ++k, T0 + i * 1000, { temp: i, hum: 100 - i }));
    events.push(telemetry('d2', ++k, T0 + i * 1000, { temp: 1000 - i }, false)); // values only in JSON (as from Redis)
    if (i === 10) events.push(status('d1', ++k, T0 + 10_500, 'offline'));
  }
  p.push(events, 7);

  const all = await readAll(engine, key(0), 1000);
  assert.deepEqual(
    all.map((e) => [e.kind, e.device, e.key.major, e.time, e.body]),
    events.map((e) => [e.kind, e.device, e.key.major, e.time, fieldsJson(e)]),
  );
  const d2 = await readAll(engine, key(0), 13, { feeds: [{ kind: 'telemetry', device: 'd2' }] });
  assert.deepEqual(
    d2.map((e) => e.key.major),
    events.filter((e) => e.device === 'd2').map((e) => e.key.major),
  );
  const fromMiddle = await readAll(engine, key(150), 1000);
  assert.deepEqual(
    fromMiddle.map((e) => e.key.major),
    events.filter((e) => e.key.major > 150).map((e) => e.key.major),
  );

  const check = async () => {
    const raw = await engine.range({ device: 'd1', from: T0 + 5000, to: T0 + 14_000 });
    assert.equal(raw.step, null);
    assert.deepEqual(
      raw.t,
      [5, 6, 7, 8, 9, 10, 11, 12, 13, 14].map((i) => T0 + i * 1000),
    );
    assert.deepEqual((raw.series['temp'] as RawSeries).values, [5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
    assert.deepEqual((raw.series['hum'] as RawSeries).values, [95, 94, 93, 92, 91, 90, 89, 88, 87, 86]);
    assert.deepEqual(raw.status, [{ time: T0 + 10_500, state: 'offline', firmware: '1.2.0' }]);
    assert.deepEqual(raw.asOf, key(k));
    const parsed = await engine.range({ device: 'd2', from: T0, to: T0 + 2000 });
    assert.deepEqual((parsed.series['temp'] as RawSeries).values, [1000, 999, 998]);
    const none = await engine.range({ device: 'nobody', from: T0, to: T0 + 2000 });
    assert.deepEqual([none.t, Object.keys(none.series), none.status], [[], [], []]);
  };
  await check(); // from the open partition's columns
  await engine.close();
  const reopened = await open(d);
  assert.equal(reopened.info.nextPosition, k + 1, 'a clean close continues the positions');
  assert.equal(reopened.info.epoch, info.epoch);
  await check.call(undefined); // from the sealed series file and journal on disk
  const again = await readAll(reopened.engine, key(0), 64);
  assert.deepEqual(
    again.map((e) => e.body),
    events.map((e) => fieldsJson(e)),
  );
  await reopened.engine.close();
});

test('downsampling: epoch-aligned buckets with the exact mean, min, max and count, across partitions', async () => {
  const { engine, info } = await open(dir(), { partitionBytes: 16 << 10 });
  const p = new Producer(engine, info.resumeKey);
  // Deterministic pseudo-random values, a few rows out of time order, some rows without `b`.
  let seed = 42;
  const rand = () => {
    seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const rows: { t: number; a: number; b?: number }[] = [];
  const events: HistoryInput[] = [];
  for (let i = 0; i < 3000; i++) {
    const t = T0 + i * 997 + (i % 50 === 0 ? -5000 : 0);
    const a = Math.round(rand() * 1000) / 10;
    const values: Record<string, number> = { a };
    if (i % 3 !== 0) values['b'] = -a;
    rows.push({ t, a, ...(values['b'] !== undefined ? { b: values['b'] } : {}) });
    events.push(telemetry('dev', i + 1, t, values));
  }
  p.push(events, 25);
  await engine.flushed();
  assert.ok(engine.stats().partitions > 3, `${engine.stats().partitions} partitions`);
  const from = T0 + 123_456;
  const to = T0 + 2_500_000;
  const result = await engine.range({ device: 'dev', from, to, points: 100 });
  const step = result.step!;
  assert.ok(result.t.length <= 100 && result.t.length > 90, `${result.t.length} points`);
  // The naive computation.
  const expect = new Map<number, { a: number[]; b: number[] }>();
  for (const r of rows) {
    if (r.t < from || r.t > to) continue;
    const bucket = Math.floor(r.t / step) * step;
    const e = expect.get(bucket) ?? { a: [], b: [] };
    e.a.push(r.a);
    if (r.b !== undefined) e.b.push(r.b);
    expect.set(bucket, e);
  }
  const buckets = [...expect.keys()].sort((x, y) => x - y);
  assert.deepEqual(result.t, buckets);
  const close = (x: number | null, y: number) =>
    assert.ok(x !== null && Math.abs(x - y) < 1e-9, `${x} ≠ ${y}`);
  const a = result.series['a'] as BucketSeries;
  const b = result.series['b'] as BucketSeries;
  buckets.forEach((bucket, i) => {
    const e = expect.get(bucket)!;
    close(a.mean[i]!, e.a.reduce((s, v) => s + v, 0) / e.a.length);
    assert.equal(a.min[i], Math.min(...e.a));
    assert.equal(a.max[i], Math.max(...e.a));
    assert.equal(a.count[i], e.a.length);
    if (e.b.length === 0) assert.equal(b.mean[i], null);
    else close(b.mean[i]!, e.b.reduce((s, v) => s + v, 0) / e.b.length);
    assert.equal(b.count[i], e.b.length);
  });
  // An explicit step: buckets start at multiples of it.
  const stepped = await engine.range({ device: 'dev', from, to, step: 60_000 });
  assert.equal(stepped.step, 60_000);
  assert.ok(stepped.t.every((t) => t % 60_000 === 0));
  await engine.close();
});

test('retention by age drops whole partitions; their cursors get a gap and their files go', async () => {
  const d = dir();
  let now = T0;
  const clock = () => now;
  const { engine, info } = await open(d, { now: clock, retentionMs: 3_600_000, partitionMs: 600_000 });
  const p = new Producer(engine, info.resumeKey, clock);
  let k = 0;
  for (let minute = 0; minute < 150; minute += 5) {
    p.push([telemetry('d1', ++k, now, { v: minute })], 1);
    now += 5 * 60_000;
    await engine.maintain();
  }
  // Now is T0 + 150 min: what arrived before T0 + 90 min is past retention (plus one partition).
  const oldest = (await engine.after({ arrivedFrom: 0, limit: 1 })) as AfterPage;
  const first = oldest.events[0]!;
  assert.ok(
    first.time >= T0 + 80 * 60_000 && first.time <= T0 + 90 * 60_000,
    `${(first.time - T0) / 60_000} min`,
  );
  assert.equal(await engine.after({ key: key(1), limit: 10 }), 'gap');
  assert.equal(await engine.after({ key: key(first.key.major - 2), limit: 10 }), 'gap');
  // The key just before the oldest kept event still resumes exactly.
  const resumed = (await engine.after({ key: key(first.key.major - 1), limit: 100 })) as AfterPage;
  assert.equal(resumed.events[0]?.key.major, first.key.major);
  assert.equal(resumed.events.length, k - first.key.major + 1);
  const old = await engine.range({ device: 'd1', from: T0, to: T0 + 60 * 60_000 });
  assert.deepEqual(old.t, []);
  // The answer says from when it is complete: the end of the last partition dropped.
  assert.ok(old.heldSince > T0 && old.heldSince <= first.time, `${(old.heldSince - T0) / 60_000} min`);
  await engine.flushed();
  const files = readdirSync(d).filter((n) => n.endsWith('.journal'));
  assert.equal(files.length, engine.stats().partitions);
  assert.ok(files.length <= 8, `${files.length} partitions kept`);
  await engine.close();
});

test('retention by bytes keeps the store under maxBytes, oldest partitions first', async () => {
  const d = dir();
  const maxBytes = 256 << 10;
  const { engine, info } = await open(d, { maxBytes, partitionBytes: 32 << 10 });
  const p = new Producer(engine, info.resumeKey);
  const n = 5000;
  p.push(
    Array.from({ length: n }, (_, i) => telemetry(`d${i % 7}`, i + 1, T0 + i, { v: i, w: i * 2 })),
    20,
  );
  await engine.flushed();
  await engine.maintain();
  const s = engine.stats();
  assert.ok(s.bytes <= maxBytes, `${s.bytes} bytes`);
  const onDisk = readdirSync(d)
    .filter((x) => x.endsWith('.journal') || x.endsWith('.series'))
    .reduce((sum, x) => sum + statSync(join(d, x)).size, 0);
  assert.ok(onDisk <= maxBytes, `${onDisk} bytes on disk`);
  const oldest = ((await engine.after({ arrivedFrom: 0, limit: 1 })) as AfterPage).events[0]!;
  assert.ok(oldest.key.major > 1000, `oldest kept ${oldest.key.major}`);
  assert.equal(await engine.after({ key: key(oldest.key.major - 2), limit: 1 }), 'gap');
  const rest = await readAll(engine, key(oldest.key.major - 1), 500);
  assert.deepEqual(
    rest.map((e) => e.key.major),
    Array.from({ length: n - oldest.key.major + 1 }, (_, i) => oldest.key.major + i),
  );
  await engine.close();
});

test('after a crash: a torn tail is cut, the series are rebuilt, and cursors in the hole get a gap', async () => {
  const d = dir();
  const a = await open(d);
  const pa = new Producer(a.engine, a.info.resumeKey);
  const before = Array.from({ length: 300 }, (_, i) => telemetry('d1', i + 1, T0 + i * 1000, { v: i }));
  pa.push(before, 10);
  await a.engine.flushed();
  // No close (as after SIGKILL), and a record torn mid-write at the end of the journal.
  const journal = readdirSync(d)
    .filter((n) => n.endsWith('.journal'))
    .sort()
    .at(-1)!;
  appendFileSync(join(d, journal), Buffer.from([200, 0, 0, 0, 1, 2, 3, 4, 5, 0, 0, 0, 65, 66]));
  const tornSize = statSync(join(d, journal)).size;

  const b = await open(d);
  assert.deepEqual(b.info.newestKey, key(300));
  // Positions up to the reservation may have been issued before the crash: never reused.
  assert.equal(b.info.nextPosition, RESERVE_SPAN + 1);
  assert.deepEqual(b.info.resumeKey, key(RESERVE_SPAN));
  assert.equal(await b.engine.after({ key: key(300), limit: 10 }), 'gap');
  assert.deepEqual(await b.engine.after({ key: key(RESERVE_SPAN), limit: 10 }), {
    events: [],
    last: key(RESERVE_SPAN),
    end: true,
  });
  const raw = await b.engine.range({ device: 'd1', from: T0, to: T0 + 299_000 });
  assert.deepEqual(
    (raw.series['v'] as RawSeries).values,
    before.map((_, i) => i),
  );
  const pb = new Producer(b.engine, b.info.resumeKey);
  pb.push(
    Array.from({ length: 50 }, (_, i) => telemetry('d1', RESERVE_SPAN + 1 + i, T0 + 400_000 + i, { v: i })),
  );
  assert.equal(statSync(join(d, journal)).size, tornSize, 'nothing is appended after a torn tail');
  const resumed = await readAll(b.engine, key(RESERVE_SPAN), 20);
  assert.equal(resumed.length, 50);
  assert.equal(await b.engine.after({ key: key(300), limit: 10 }), 'gap');
  // Reading from before the hole stops at it; the next read from there is the gap.
  const upTo = (await b.engine.after({ key: key(298), limit: 100 })) as AfterPage;
  assert.deepEqual(
    upTo.events.map((e) => e.key.major),
    [299, 300],
  );
  assert.equal(upTo.end, false);
  assert.equal(await b.engine.after({ key: upTo.last!, limit: 100 }), 'gap');
  await b.engine.close();
  await a.engine.close();
});

test('cursor paging while events keep arriving: every event exactly once, in order, across partitions', async () => {
  const { engine, info } = await open(dir(), { partitionBytes: 8 << 10, tailBytes: 16 << 10 });
  const p = new Producer(engine, info.resumeKey);
  const devices = ['a', 'b', 'c', 'd'];
  let k = 0;
  const produce = (n: number) =>
    p.push(
      Array.from({ length: n }, () => {
        k++;
        return k % 17 === 0
          ? status(devices[k % 4]!, k, T0 + k, 'online')
          : telemetry(devices[k % 4]!, k, T0 + k, { v: k });
      }),
      1 + (k % 9),
    );
  produce(800);
  await engine.flushed(); // older partitions sealed and read from disk, newer from the memory tail
  const feeds = [
    { kind: 'telemetry' as const, device: 'b' },
    { kind: 'status' as const, device: undefined },
  ];
  const got: StoredEvent[] = [];
  let cursor = key(0);
  for (let step = 0; step < 10_000; step++) {
    const page = (await engine.after({ key: cursor, limit: 1 + (step % 37), feeds })) as AfterPage;
    assert.notEqual(page, 'gap');
    got.push(...page.events);
    cursor = page.last ?? cursor;
    if (step < 40)
      produce(25); // more arrive between pages
    else if (page.end) break;
  }
  const want = Array.from({ length: k }, (_, i) => i + 1).filter(
    (x) => x % 17 === 0 || devices[x % 4] === 'b',
  );
  assert.deepEqual(
    got.map((e) => e.key.major),
    want,
  );
  assert.ok(engine.stats().partitions > 5);
  await engine.close();
});

test('a resume for named devices skips batches without them, and still finds every one of its events', async () => {
  const d = dir();
  const a = await open(d, { partitionBytes: 16 << 10 });
  const events: HistoryInput[] = [];
  for (let k = 1; k <= 3000; k++) {
    // d1 rarely; d10 (a longer name with d1 as prefix) and x (a value named d1) often.
    const device = k % 97 === 0 ? 'd1' : k % 2 ? 'd10' : 'x';
    events.push(
      k % 500 === 0 ? status('d1', k, T0 + k, 'online') : telemetry(device, k, T0 + k, { d1: k, v: -k }),
    );
  }
  new Producer(a.engine, a.info.resumeKey).push(events, 13);
  const want = events.filter((e) => e.device === 'd1').map((e) => e.key.major);
  const feeds = [{ kind: undefined, device: 'd1' }];
  const got = await readAll(a.engine, key(0), 7, { feeds });
  assert.deepEqual(
    got.map((e) => e.key.major),
    want,
  );
  await a.engine.close();
  // After a restart the newest records are loaded into memory again; the answer is the same.
  const b = await open(d, { tailBytes: 64 << 10 });
  const again = await readAll(b.engine, key(1000), 5, { feeds });
  assert.deepEqual(
    again.map((e) => e.key.major),
    want.filter((k) => k > 1000),
  );
  await b.engine.close();
});

const PROTO = '__proto__';

test('names that are also object keys (a value `__proto__`, a device `constructor`) are kept as names', async () => {
  const d = dir();
  const a = await open(d);
  const events = Array.from({ length: 20 }, (_, i) => {
    const values: Record<string, number> = JSON.parse(`{"__proto__": ${i}, "toString": ${-i}}`);
    return telemetry('constructor', i + 1, T0 + i * 1000, values);
  });
  new Producer(a.engine, a.info.resumeKey).push(events);
  const check = async (engine: HistoryEngine) => {
    const raw = await engine.range({ device: 'constructor', from: T0, to: T0 + 19_000 });
    assert.deepEqual(Object.keys(raw.series).sort(), ['__proto__', 'toString']);
    assert.deepEqual(
      (raw.series[PROTO] as RawSeries).values,
      events.map((_, i) => i),
    );
    const down = await engine.range({ device: 'constructor', from: T0, to: T0 + 19_000, step: 10_000 });
    assert.deepEqual(Object.keys(down.series).sort(), ['__proto__', 'toString']);
    assert.deepEqual((await engine.range({ device: 'toString', from: T0, to: T0 + 19_000 })).t, []);
  };
  await check(a.engine);
  await a.engine.close();
  const b = await open(d);
  await check(b.engine); // from the sealed series file
  await b.engine.close();
});

test('bad queries get clear errors with stable codes and change nothing', async () => {
  const { engine, info } = await open(dir(), { limits: { maxWindowMs: 86_400_000, maxRawRows: 50 } });
  new Producer(engine, info.resumeKey).push(
    Array.from({ length: 100 }, (_, i) => telemetry('d1', i + 1, T0 + i * 1000, { v: i })),
  );
  const range = { device: 'd1', from: T0, to: T0 + 10_000 };
  const cases: [object, string, RegExp][] = [
    [{ ...range, from: Number.NaN }, 'E_HISTORY_RANGE', /from and to/],
    [{ ...range, from: T0 + 20_000 }, 'E_HISTORY_RANGE', /after/],
    [{ ...range, device: '' }, 'E_HISTORY_RANGE', /device/],
    [{ ...range, step: 0 }, 'E_HISTORY_RANGE', /step/],
    [{ ...range, step: 1.5 }, 'E_HISTORY_RANGE', /step/],
    [{ ...range, points: 1 }, 'E_HISTORY_RANGE', /points/],
    [{ ...range, to: T0 + 2 * 86_400_000 }, 'E_HISTORY_LIMIT', /at most 86400000 ms/],
    [{ ...range, points: 20_000 }, 'E_HISTORY_LIMIT', /points/],
    [{ ...range, step: 1 }, 'E_HISTORY_LIMIT', /10001 points/],
    [{ ...range, to: T0 + 99_000 }, 'E_HISTORY_LIMIT', /more than 50 readings/],
  ];
  for (const [q, code, message] of cases) {
    await assert.rejects(engine.range(q as never), { code, message }, JSON.stringify(q));
  }
  await assert.rejects(engine.after({ limit: 10 }), { code: 'E_HISTORY_RANGE' });
  await assert.rejects(engine.after({ key: key(0), limit: 0 }), { code: 'E_HISTORY_RANGE' });
  await assert.rejects(engine.after({ key: key(-1), limit: 1 }), { code: 'E_HISTORY_RANGE' });
  await assert.rejects(engine.after({ key: key(0.5), limit: 1 }), { code: 'E_HISTORY_RANGE' });
  await assert.rejects(engine.after({ key: key(0), limit: 100_000 }), { code: 'E_HISTORY_LIMIT' });
  // The store answers as before.
  const ok = await engine.range({ ...range, to: T0 + 9000 });
  assert.equal(ok.t.length, 10);
  assert.equal((await readAll(engine, key(0), 100)).length, 100);
  await engine.close();
});

test('a stream key space (Redis): continuity only where the producer vouches for it; another stream resets', async () => {
  const d = dir();
  const keys = { type: 'external' as const, stream: 'redis://127.0.0.1:6379/0 telebridge:live:stream' };
  const a = await open(d, { keys });
  assert.equal(a.info.epoch, undefined);
  assert.equal(a.info.nextPosition, undefined);
  const ms = T0;
  const ev = (i: number) => ({
    ...telemetry('d1', 0, ms + i, { v: i }),
    key: key(ms + Math.floor(i / 3), i % 3),
  });
  new Producer(a.engine, undefined).push(Array.from({ length: 30 }, (_, i) => ev(i)));
  // Nothing is known before the first event this store saw.
  assert.equal(await a.engine.after({ key: key(ms - 1, 5), limit: 10 }), 'gap');
  assert.equal((await readAll(a.engine, key(ms, 0), 7)).length, 29);
  await a.engine.close();

  const b = await open(d, { keys });
  assert.deepEqual(b.info.newestKey, key(ms + 9, 2));
  // The producer vouches: its reader resumed right after the newest key.
  new Producer(b.engine, b.info.newestKey).push(Array.from({ length: 6 }, (_, i) => ev(30 + i)));
  // It does not (a trimmed stream): a hole.
  new Producer(b.engine, undefined).push(Array.from({ length: 6 }, (_, i) => ev(40 + i)));
  // From the start: the 29 + 6 continuous events, then the hole.
  const before: StoredEvent[] = [];
  let cursor = key(ms, 0);
  for (;;) {
    const page = await b.engine.after({ key: cursor, limit: 5 });
    if (page === 'gap') break;
    before.push(...page.events);
    assert.equal(page.end, false);
    cursor = page.last!;
  }
  assert.equal(before.length, 29 + 6);
  assert.deepEqual(cursor, key(ms + 11, 2));
  assert.equal((await readAll(b.engine, key(ms + 13, 1), 5)).length, 5); // events 41..45
  await b.engine.close();

  const logs: string[] = [];
  const c = await open(d, {
    keys: { type: 'external', stream: 'redis://other:6379/0 x' },
    log: (_level, message) => logs.push(message),
  });
  assert.match(c.info.reset ?? '', /another stream/);
  assert.equal(c.info.events, 0);
  assert.ok(logs.some((m) => /emptied/.test(m)));
  await c.engine.close();
  const local = await open(d);
  assert.match(local.info.reset ?? '', /the Redis broker/);
  await local.engine.close();
});

test('a damaged series file is rebuilt from its journal', async () => {
  const d = dir();
  const a = await open(d);
  new Producer(a.engine, a.info.resumeKey).push(
    Array.from({ length: 200 }, (_, i) => telemetry('d1', i + 1, T0 + i * 1000, { v: i })),
  );
  await a.engine.close();
  const series = readdirSync(d).find((n) => n.endsWith('.series'))!;
  const bytes = readFileSync(join(d, series));
  bytes[bytes.length - 20] = (bytes[bytes.length - 20]! + 1) % 256; // inside the index
  writeFileSync(join(d, series), bytes);
  const logs: string[] = [];
  const b = await open(d, { log: (_level, message) => logs.push(message) });
  assert.ok(
    logs.some((m) => /rebuilding/.test(m)),
    logs.join('\n'),
  );
  const raw = await b.engine.range({ device: 'd1', from: T0, to: T0 + 199_000 });
  assert.equal(raw.t.length, 200);
  assert.deepEqual(readFileSync(join(d, series)).subarray(0, 100), bytes.subarray(0, 100));
  await b.engine.close();
});

test('feeds with history in a window, for wildcard reads; a fresh store holds everything since it opened', async () => {
  const d = dir();
  let now = T0;
  const { engine, info } = await open(d, { now: () => now, partitionMs: 600_000 });
  const p = new Producer(engine, info.resumeKey, () => now);
  let k = 0;
  p.push([
    telemetry('a1', ++k, T0, { v: 1 }),
    telemetry('b1', ++k, T0 + 60_000, { v: 1 }),
    status('c1', ++k, T0 + 120_000, 'online'),
  ]);
  now += 700_000;
  await engine.maintain(); // seals the first partition: its index answers from now on
  p.push([telemetry('a2', ++k, now, { v: 2 }), status('a1', ++k, now, 'offline')]);
  const all = { from: T0, to: now, limit: 100 };
  assert.deepEqual(await engine.devices(all), [
    'status/a1',
    'status/c1',
    'telemetry/a1',
    'telemetry/a2',
    'telemetry/b1',
  ]);
  assert.deepEqual(await engine.devices({ ...all, feeds: [{ kind: 'telemetry', device: undefined }] }), [
    'telemetry/a1',
    'telemetry/a2',
    'telemetry/b1',
  ]);
  assert.deepEqual(await engine.devices({ ...all, from: T0 + 30_000, to: T0 + 90_000 }), ['telemetry/b1']);
  await assert.rejects(engine.devices({ ...all, limit: 2 }), { code: 'E_HISTORY_LIMIT' });
  await assert.rejects(engine.devices({ ...all, from: now, to: T0 }), { code: 'E_HISTORY_RANGE' });
  const r = await engine.range({ device: 'a1', from: T0, to: now });
  assert.equal(r.heldSince, T0, 'a fresh store holds what arrived since it was opened');
  await engine.close();
});
