import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { after, test } from 'node:test';
import { tempDir } from '../../../test/support/services.js';
import { waitEvent, waitFor } from '../../../test/support/wait.js';
import { createLogger } from '../../log.js';
import type { HistoryInput } from './codec.js';
import type { RawSeries } from './downsample.js';
import type { AfterPage, StoredEvent } from './engine.js';
import type { HistoryKey } from './key.js';
import { HistoryStore, type HistoryStoreOptions } from './store.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function dir(): string {
  const d = tempDir('history-store');
  dirs.push(d);
  return join(d, 'history');
}

const T0 = 1_764_115_200_000;
const key = (major: number): HistoryKey => ({ major, minor: 0 });
const event = (major: number, device = 'd1'): HistoryInput => {
  const values = { v: major };
  const time = T0 + major * 10;
  return {
    kind: 'telemetry',
    device,
    key: key(major),
    time,
    seq: major,
    values,
    labels: {},
  };
};

function options(d: string, extra: Partial<HistoryStoreOptions> = {}): HistoryStoreOptions {
  return { dir: d, keys: { type: 'local' }, retentionMs: 86_400_000, maxBytes: 64 << 20, ...extra };
}

/** Pages from `from` until the store ends or answers gap. */
async function read(store: HistoryStore, from: HistoryKey): Promise<{ events: StoredEvent[]; gap: boolean }> {
  const events: StoredEvent[] = [];
  let cursor = from;
  for (let i = 0; i < 10_000; i++) {
    const page = await store.after({ key: cursor, limit: 500 });
    if (page === 'gap') return { events, gap: true };
    events.push(...page.events);
    if (page.end) return { events, gap: false };
    cursor = page.last!;
  }
  throw new Error('paging did not end');
}

test('the store in its worker: appends are readable at once, by cursor and by range', async () => {
  const store = await HistoryStore.open(options(dir()));
  assert.equal(store.info.nextPosition, 1);
  for (let k = 1; k <= 2000; k++) store.append(event(k, k % 2 ? 'odd' : 'even'));
  store.append(event(5)); // not after the last key: refused
  assert.equal(store.refused, 1);
  // No wait: a read flushes the batch being built first.
  const all = await read(store, key(0));
  assert.equal(all.gap, false);
  assert.deepEqual(
    all.events.map((e) => e.key.major),
    Array.from({ length: 2000 }, (_, i) => i + 1),
  );
  const range = await store.range({ device: 'odd', from: T0, to: T0 + 100 });
  assert.deepEqual((range.series['v'] as RawSeries).values, [1, 3, 5, 7, 9]);
  const down = await store.range({ device: 'even', from: T0, to: T0 + 20_000, points: 11 });
  assert.ok(down.t.length <= 11);
  await assert.rejects(store.range({ device: 'odd', from: T0, to: T0 - 1 }), { code: 'E_HISTORY_RANGE' });
  const stats = await store.stats();
  assert.equal(stats.events, 2000);
  assert.equal(stats.dropped, 0);
  await store.close();
  assert.equal(store.append(event(2001)), undefined);
  await assert.rejects(store.stats(), { code: 'E_STORAGE' });
});

test('past the in-flight bound events are dropped and counted, and a cursor before them gets a gap', async () => {
  const store = await HistoryStore.open(options(dir(), { batchBytes: 4096, maxInFlightBytes: 1 }));
  // One synchronous burst: the first full batch goes to the worker, the rest of the burst is over
  // the bound until the worker acknowledges it.
  for (let k = 1; k <= 1000; k++) store.append(event(k));
  assert.ok(store.dropped > 0, 'some events were dropped');
  const stored = 1000 - store.dropped;
  await waitFor('the worker to catch up', async () => (await store.stats()).inFlightBytes === 0);
  for (let k = 1001; k <= 1010; k++) store.append(event(k));
  const fromStart = await read(store, key(0));
  assert.equal(fromStart.gap, true);
  assert.deepEqual(
    fromStart.events.map((e) => e.key.major),
    Array.from({ length: stored }, (_, i) => i + 1),
  );
  // The newest dropped key is where the next stored events continue from.
  const afterHole = await read(store, key(1000));
  assert.deepEqual(
    afterHole.events.map((e) => e.key.major),
    Array.from({ length: 10 }, (_, i) => 1001 + i),
  );
  await store.close();
});

test('SIGKILL of the process: what was written comes back, no position is issued twice, and no second process opens it meanwhile', async () => {
  const d = dir();
  const storeUrl = new URL('./store.js', import.meta.url).href;
  // A process that appends steadily and reports the newest key known to be on disk.
  const script = `
    import { HistoryStore } from ${JSON.stringify(storeUrl)};
    const store = await HistoryStore.open(${JSON.stringify(options(d, { flushMs: 10 }))});
    let k = store.info.nextPosition - 1;
    console.log('ready ' + (k + 1));
    for (;;) {
      for (let i = 0; i < 50; i++) {
        k++;
        const time = ${T0} + k;
        store.append({ kind: 'telemetry', device: 'd1', key: { major: k, minor: 0 }, time,
          seq: k, values: { v: k }, labels: {} });
      }
      const s = await store.stats();
      if (s.inFlightBytes === 0) console.log('durable ' + k);
      await new Promise((r) => setTimeout(r, 2));
    }`;
  // A file, not `-e`: workers inherit execArgv, and `--input-type` is refused in a worker.
  const scriptFile = join(d, '..', 'appender.mjs');
  writeFileSync(scriptFile, script);
  const run = async (): Promise<{ first: number; durable: number }> => {
    const child = spawn(process.execPath, [scriptFile], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let first = 0;
    let durable = 0;
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      const [what, n] = line.split(' ');
      if (what === 'ready') first = Number(n);
      if (what === 'durable') durable = Number(n);
    });
    try {
      await waitFor('3000 events on disk', () => durable >= first + 3000, { timeoutMs: 30_000 });
      // Another process may not write the same store meanwhile.
      await assert.rejects(HistoryStore.open(options(d)), {
        code: 'E_STORAGE',
        message: /in use by process \d+ on .*: give each instance its own BRIDGE_HISTORY_DIR/,
      });
    } finally {
      child.kill('SIGKILL');
      await waitEvent(child, 'exit');
    }
    return { first, durable };
  };
  const one = await run();
  const two = await run();
  assert.equal(one.first, 1);
  assert.ok(two.first > one.durable, `second run starts at ${two.first}, first reached ${one.durable}`);

  const store = await HistoryStore.open(options(d));
  // Positions never repeat: this run starts past anything either run may have issued.
  assert.ok(store.info.nextPosition! > two.durable + 1000);
  // Each run's events are all there up to at least what it reported durable; each crash is a hole.
  const firstRun = await read(store, key(0));
  assert.equal(firstRun.gap, true);
  const keys = firstRun.events.map((e) => e.key.major);
  assert.ok(keys.length >= one.durable, `${keys.length} of ${one.durable}`);
  assert.deepEqual(
    keys,
    Array.from({ length: keys.length }, (_, i) => i + 1),
  );
  const secondRun = await read(store, key(two.first - 1));
  assert.equal(secondRun.gap, true);
  const last = secondRun.events.at(-1)!.key.major;
  assert.ok(last >= two.durable, `second run kept up to ${last}, reported ${two.durable}`);
  assert.equal(secondRun.events.length, last - two.first + 1);
  assert.equal(await store.after({ key: key(last), limit: 1 }), 'gap');
  const range = await store.range({ device: 'd1', from: T0, to: T0 + one.durable });
  assert.equal(range.t.length, one.durable);
  // New events continue after the hole.
  store.append(event(store.info.nextPosition!));
  const page = (await store.after({ key: store.info.resumeKey!, limit: 10 })) as AfterPage;
  assert.deepEqual(
    page.events.map((e) => e.key.major),
    [store.info.nextPosition],
  );
  await store.close();
});

test('what the engine logs while opening (a store of another key space emptied) reaches the log', async () => {
  const d = dir();
  const local = await HistoryStore.open(options(d));
  for (let k = 1; k <= 10; k++) local.append(event(k));
  await local.close();
  const lines: string[] = [];
  const log = createLogger(
    'info',
    new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk));
        done();
      },
    }),
  );
  const stream = await HistoryStore.open({
    ...options(d),
    keys: { type: 'external', stream: 'redis://127.0.0.1:6379/0 telebridge:live:stream' },
    log,
  });
  assert.match(stream.info.reset ?? '', /the memory broker/);
  assert.equal((await stream.stats()).events, 0);
  await waitFor('the log line', () => lines.some((l) => /history: store emptied/.test(l)));
  await stream.close();
});

test('a store that cannot be opened is a clear E_STORAGE error', async () => {
  const d = tempDir('history-file');
  dirs.push(d);
  const file = join(d, 'not-a-directory');
  writeFileSync(file, 'x');
  await assert.rejects(HistoryStore.open(options(join(file, 'history'))), {
    code: 'E_STORAGE',
    message: /not-a-directory/,
  });
});
