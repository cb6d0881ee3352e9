import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TokenBucket } from './rate-limit.js';

test('a token bucket allows a burst, then the rate', () => {
  let now = 0;
  const bucket = new TokenBucket(10, 5, () => now);
  for (let i = 0; i < 5; i++) assert.ok(bucket.take());
  assert.ok(!bucket.take(), 'the burst is spent');
  now += 100; // 10/s → one token per 100 ms
  assert.ok(bucket.take());
  assert.ok(!bucket.take());
  now += 10_000;
  for (let i = 0; i < 5; i++) assert.ok(bucket.take());
  assert.ok(!bucket.take(), 'never more than the burst saved up');
});
