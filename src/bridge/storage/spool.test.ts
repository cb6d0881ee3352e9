import assert from 'node:assert/strict';
import { appendFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { tempDir } from '../../../test/support/services.js';
import { Spool } from './spool.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function dir(): string {
  const d = tempDir('spool');
  dirs.push(d);
  return join(d, 'spool');
}
const lines = (from: number, n: number) => Array.from({ length: n }, (_, i) => `m v=${from + i} ${from + i}`);

async function drainAll(spool: Spool, batch = 7): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < 10_000; i++) {
    const b = await spool.read(batch);
    if (!b) break;
    out.push(...b.lines);
    await spool.confirm(b);
  }
  return out;
}

test('lines come back oldest first, across records and segments, and confirmed ones are gone', async () => {
  const spool = await Spool.open({ dir: dir(), maxBytes: 1 << 20, segmentBytes: 4096 });
  for (let i = 0; i < 50; i++) await spool.append(lines(i * 10, 10));
  assert.equal(spool.backlogPoints, 500);
  const first = await spool.read(15);
  assert.deepEqual(first?.lines, lines(0, 15));
  // Not confirmed: the same batch is read again (a retry).
  assert.deepEqual((await spool.read(15))?.lines, lines(0, 15));
  await spool.confirm(first!);
  assert.equal(spool.backlogPoints, 485);
  assert.deepEqual(await drainAll(spool), lines(15, 485));
  assert.equal(spool.backlogPoints, 0);
  assert.equal(await spool.read(10), undefined);
  await spool.close();
});

test('group commit: concurrent appends share syncs', async () => {
  const spool = await Spool.open({ dir: dir(), maxBytes: 64 << 20 });
  await Promise.all(Array.from({ length: 200 }, (_, i) => spool.append(lines(i, 1))));
  assert.equal(spool.backlogPoints, 200);
  assert.ok(spool.syncs < 20, `200 concurrent appends took ${spool.syncs} syncs`);
  const got = await drainAll(spool, 1000);
  assert.equal(got.length, 200);
  assert.deepEqual([...got].sort(), lines(0, 200).sort());
  await spool.close();
});

test('group commit: appends of one group share one promise, are written in order and counted once per group', async () => {
  const outcomes: { lines: number; error?: string | undefined }[] = [];
  const spool = await Spool.open({
    dir: dir(),
    maxBytes: 4096,
    segmentBytes: 4096,
    // Two records of `lines(i, 2)` (about 24 bytes each) reach it: groups of at most 3 appends.
    maxGroupBytes: 60,
    onOutcome: (n, error) => outcomes.push({ lines: n, error: (error as { code?: string })?.code }),
  });
  const first = spool.append(lines(0, 2)); // written at once: a group of its own
  const waits = Array.from({ length: 6 }, (_, i) => spool.append(lines(2 + 2 * i, 2)));
  assert.notEqual(waits[0], first);
  assert.equal(waits[1], waits[0], 'appends while a write is in flight join one group');
  assert.equal(waits[2], waits[0]);
  assert.notEqual(waits[3], waits[0], 'a group past maxGroupBytes starts another');
  await Promise.all([first, ...waits]);
  assert.deepEqual(await drainAll(spool, 5), lines(0, 14));
  assert.deepEqual(
    outcomes.map((o) => o.lines),
    [2, 6, 6],
  );
  // A refusal at once is counted with its error.
  await assert.rejects(spool.append([`m v="${'x'.repeat(5000)}" 1`]), { code: 'E_SPOOL_FULL' });
  assert.deepEqual(outcomes.at(-1), { lines: 1, error: 'E_SPOOL_FULL' });
  await spool.close();
});

test('at the byte limit append rejects with E_SPOOL_FULL and stores nothing; space returns after confirm', async () => {
  const spool = await Spool.open({ dir: dir(), maxBytes: 65_536, segmentBytes: 4096 });
  const big = [`m v="${'x'.repeat(1000)}" 1`];
  let stored = 0;
  let error: unknown;
  for (let i = 0; i < 200; i++) {
    try {
      await spool.append(big);
      stored++;
    } catch (err) {
      error = err;
      break;
    }
  }
  assert.equal((error as { code?: string }).code, 'E_SPOOL_FULL');
  assert.ok(stored > 50 && stored < 70, `stored ${stored}`);
  assert.equal(spool.backlogPoints, stored);
  assert.ok(spool.bytes <= 65_536);
  await drainAll(spool, 10);
  await spool.append(big);
  await spool.close();
});

test('an abrupt stop keeps every unconfirmed line; a torn tail is ignored', async () => {
  const d = dir();
  const a = await Spool.open({ dir: d, maxBytes: 1 << 20, segmentBytes: 2048 });
  for (let i = 0; i < 30; i++) await a.append(lines(i * 5, 5));
  const b1 = await a.read(12);
  await a.confirm(b1!);
  // No close(): as after SIGKILL. Simulate a crash mid-write of the next record, too.
  const segs = readdirSync(d)
    .filter((n) => n.endsWith('.seg'))
    .sort();
  const last = join(d, segs[segs.length - 1]!);
  appendFileSync(last, Buffer.from([200, 0, 0, 0, 1, 2, 3, 4, 5, 0, 0, 0, 65, 66]));
  const sizeBefore = statSync(last).size;
  const b = await Spool.open({ dir: d, maxBytes: 1 << 20, segmentBytes: 2048 });
  assert.equal(b.backlogPoints, 138);
  await b.append(['after v=1 1']);
  assert.equal(statSync(last).size, sizeBefore, 'new appends never follow a torn tail');
  assert.deepEqual(await drainAll(b), [...lines(12, 138), 'after v=1 1']);
  await b.close();
  const c = await Spool.open({ dir: d, maxBytes: 1 << 20, segmentBytes: 2048 });
  assert.equal(c.backlogPoints, 0);
  assert.equal(await c.read(10), undefined);
  await c.append(['again v=1 1']);
  assert.deepEqual(await drainAll(c), ['again v=1 1']);
  await c.close();
  await a.close();
});

test('fully confirmed segments are deleted', async () => {
  const d = dir();
  const spool = await Spool.open({ dir: d, maxBytes: 1 << 20, segmentBytes: 4096 });
  for (let i = 0; i < 100; i++) await spool.append(lines(i * 10, 10));
  const before = readdirSync(d).filter((n) => n.endsWith('.seg')).length;
  assert.ok(before >= 4, `${before} segments`);
  await drainAll(spool, 100);
  assert.equal(readdirSync(d).filter((n) => n.endsWith('.seg')).length, 1);
  assert.ok(spool.bytes <= 4096 + 400, `${spool.bytes} bytes left`);
  await spool.close();
});

test('waitForData resolves on the next append; a closed spool refuses appends', async () => {
  const spool = await Spool.open({ dir: dir(), maxBytes: 1 << 20 });
  const waiting = spool.waitForData();
  let woke = false;
  void waiting.then(() => {
    woke = true;
  });
  await new Promise((r) => setImmediate(r));
  assert.equal(woke, false);
  await spool.append(['m v=1 1']);
  await waiting;
  await spool.close();
  await assert.rejects(spool.append(['m v=2 2']), { code: 'E_STORAGE' });
});

test('without a memory tail (memoryBytes 0) every line comes from disk, in order, across segments', async () => {
  const spool = await Spool.open({ dir: dir(), maxBytes: 1 << 20, segmentBytes: 4096, memoryBytes: 0 });
  for (let i = 0; i < 50; i++) await spool.append(lines(i * 10, 10));
  assert.deepEqual((await spool.read(15))?.lines, lines(0, 15));
  assert.deepEqual(await drainAll(spool), lines(0, 500));
  assert.equal(spool.linesFromMemory, 0);
  assert.equal(spool.linesFromDisk, 515);
  await spool.close();
});

test('memory tail: lines just appended are read from memory, not from the segment files', async () => {
  const d = dir();
  const spool = await Spool.open({ dir: d, maxBytes: 1 << 20, segmentBytes: 4096 });
  for (let i = 0; i < 50; i++) await spool.append(lines(i * 10, 10));
  // Scribble over every byte on disk: a read that touched the files would return garbage.
  for (const name of readdirSync(d).filter((n) => n.endsWith('.seg'))) {
    const path = join(d, name);
    writeFileSync(path, Buffer.alloc(statSync(path).size, 'X'));
  }
  assert.deepEqual((await spool.read(15))?.lines, lines(0, 15)); // unconfirmed: read again below
  assert.deepEqual(await drainAll(spool), lines(0, 500));
  assert.equal(spool.linesFromDisk, 0);
  assert.equal(spool.linesFromMemory, 515);
  assert.equal(spool.backlogPoints, 0);
  await spool.close();
});

test('memory tail: after a reopen the recovered lines come from disk, new appends from memory', async () => {
  const d = dir();
  const a = await Spool.open({ dir: d, maxBytes: 1 << 20, segmentBytes: 4096 });
  for (let i = 0; i < 30; i++) await a.append(lines(i * 10, 10));
  await a.confirm((await a.read(25))!);
  await a.close();
  const b = await Spool.open({ dir: d, maxBytes: 1 << 20, segmentBytes: 4096 });
  assert.equal(b.backlogPoints, 275);
  await b.append(lines(300, 10));
  assert.deepEqual(await drainAll(b, 40), [...lines(25, 275), ...lines(300, 10)]);
  assert.equal(b.linesFromDisk, 275);
  assert.equal(b.linesFromMemory, 10);
  await b.close();
});

test('memory tail: a backlog larger than the tail falls back to disk, in order, then to memory', async () => {
  const spool = await Spool.open({ dir: dir(), maxBytes: 1 << 20, segmentBytes: 4096, memoryBytes: 4000 });
  for (let i = 0; i < 100; i++) await spool.append(lines(i * 10, 10));
  const got: string[] = [];
  // Keep appending while draining: the reader crosses from disk into the tail and back behind it.
  for (let i = 0; i < 1000; i++) {
    if (i < 40) await spool.append(lines(1000 + i * 10, 10));
    const b = await spool.read(13);
    if (!b) break;
    got.push(...b.lines);
    await spool.confirm(b);
  }
  assert.deepEqual(got, lines(0, 1400));
  assert.ok(spool.linesFromDisk > 500, `${spool.linesFromDisk} lines from disk`);
  assert.ok(spool.linesFromMemory > 0, `${spool.linesFromMemory} lines from memory`);
  assert.equal(spool.linesFromDisk + spool.linesFromMemory, 1400);
  await spool.close();
});

test('memory tail: random appends, partial reads, retries and reopens keep the exact order', async () => {
  const d = dir();
  let seed = 12345;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const opts = { dir: d, maxBytes: 4 << 20, segmentBytes: 2048, memoryBytes: 1500 };
  let spool = await Spool.open(opts);
  const expected: string[] = [];
  const got: string[] = [];
  let next = 0;
  for (let step = 0; step < 600; step++) {
    const op = rand(10);
    if (op < 5) {
      const n = 1 + rand(4);
      const ls = lines(next, n);
      next += n;
      expected.push(...ls);
      await spool.append(ls);
    } else if (op < 9) {
      const b = await spool.read(1 + rand(12));
      if (!b) continue;
      assert.deepEqual(b.lines, expected.slice(got.length, got.length + b.lines.length));
      if (rand(4) > 0) {
        got.push(...b.lines);
        await spool.confirm(b);
      }
    } else {
      await spool.close();
      spool = await Spool.open(opts);
      assert.equal(spool.backlogPoints, expected.length - got.length);
    }
  }
  got.push(...(await drainAll(spool, 5)));
  assert.deepEqual(got, expected);
  await spool.close();
});
