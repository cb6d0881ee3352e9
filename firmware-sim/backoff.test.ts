import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Backoff } from './backoff.js';

test('window doubles per attempt and stops at the cap', () => {
  const b = new Backoff({ baseMs: 100, capMs: 1000, random: () => 0.999999 });
  const delays = Array.from({ length: 8 }, () => b.next());
  assert.deepEqual(delays, [99, 199, 399, 799, 999, 999, 999, 999]);
  assert.equal(b.attempt, 8);
});

test('full jitter: delays are drawn from [0, window), not from [window/2, window)', () => {
  let i = 0;
  const values = [0, 0.5, 0.25];
  const b = new Backoff({ baseMs: 1000, capMs: 8000, random: () => values[i++ % values.length]! });
  assert.equal(b.next(), 0); // window 1000
  assert.equal(b.next(), 1000); // window 2000 * 0.5
  assert.equal(b.next(), 1000); // window 4000 * 0.25
});

test('with Math.random the delays cover the whole window', () => {
  const b = new Backoff({ baseMs: 1000, capMs: 1000 });
  const delays = Array.from({ length: 2000 }, () => b.next());
  assert.ok(Math.min(...delays) < 100, 'some delays near 0');
  assert.ok(Math.max(...delays) > 900, 'some delays near the window');
  assert.ok(delays.every((d) => d >= 0 && d < 1000));
});

test('a stable connection resets the counter, a short one does not', () => {
  const b = new Backoff({ baseMs: 100, capMs: 10_000, stableMs: 5000, random: () => 0 });
  b.next();
  b.next();
  b.next();
  b.connected(1000);
  b.disconnected(2000); // up 1 s: not stable
  assert.equal(b.attempt, 3);
  b.connected(3000);
  b.disconnected(8000); // up 5 s: stable
  assert.equal(b.attempt, 0);
  assert.equal(b.window(), 100);
});

test('huge attempt counts stay finite', () => {
  const b = new Backoff({ baseMs: 1, capMs: 60_000, random: () => 0.5 });
  for (let n = 0; n < 5000; n++) b.next();
  assert.equal(b.window(), 60_000);
  assert.equal(b.next(), 30_000);
});

test('rejects nonsensical options', () => {
  assert.throws(() => new Backoff({ baseMs: 0 }), RangeError);
  assert.throws(() => new Backoff({ baseMs: 100, capMs: 50 }), RangeError);
});
