import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Ring } from './ring.js';

test('FIFO order, oldest dropped and counted when full', () => {
  const r = new Ring<number>(3);
  for (let i = 1; i <= 5; i++) r.push(i);
  assert.equal(r.size, 3);
  assert.equal(r.dropped, 2);
  assert.deepEqual(r.take(10), [3, 4, 5]);
  assert.equal(r.size, 0);
  assert.equal(r.shift(), undefined);
});

test('take returns batches oldest first, wrapping around', () => {
  const r = new Ring<number>(4);
  for (let i = 1; i <= 6; i++) r.push(i);
  assert.deepEqual(r.take(2), [3, 4]);
  r.push(7);
  r.push(8);
  assert.deepEqual(r.take(3), [5, 6, 7]);
  assert.deepEqual(r.take(3), [8]);
});

test('unshift puts items back in front, in order, within capacity', () => {
  const r = new Ring<number>(4);
  r.push(3);
  r.push(4);
  assert.equal(r.unshift([1, 2]), 2);
  assert.deepEqual(r.take(4), [1, 2, 3, 4]);
  r.push(9);
  assert.equal(r.unshift([5, 6, 7, 8]), 3);
  assert.deepEqual(r.take(4), [6, 7, 8, 9]);
});
