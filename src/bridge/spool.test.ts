import assert from 'node:assert/strict';
import { appendFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { tempDir } from '../../test/support/services.js';
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
