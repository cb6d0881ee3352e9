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

test('borrow goes into debt and says when each token is earned; take waits for the debt to be repaid', () => {
  let now = 0;
  const bucket = new TokenBucket(10, 2, () => now);
  assert.equal(bucket.borrow(), 0);
  assert.equal(bucket.borrow(), 0, 'the burst');
  assert.equal(bucket.borrow(), 100, 'one token of debt: earned in 100 ms');
  assert.equal(bucket.borrow(), 200, 'the next one 100 ms after that');
  now += 150;
  assert.ok(!bucket.take(), 'half a token of debt left');
  assert.equal(bucket.borrow(), 150, 'slots stay 100 ms apart from the first debt');
  now += 150;
  assert.ok(!bucket.take());
  now += 100;
  assert.ok(bucket.take(), 'debt repaid, one token earned');
  now += 10_000;
  assert.ok(bucket.take() && bucket.take() && !bucket.take(), 'never more than the burst saved up');
});
