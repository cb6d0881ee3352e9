import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compareKeys, formatCursor, parseCursor } from './key.js';

test('cursors of both brokers map to keys and back; other key spaces and junk are unknown', () => {
  assert.deepEqual(parseCursor('mx5g3pz1a2b3c-42', 'mx5g3pz1a2b3c'), { major: 42, minor: 0 });
  assert.equal(formatCursor({ major: 42, minor: 0 }, 'mx5g3pz1a2b3c'), 'mx5g3pz1a2b3c-42');
  assert.equal(parseCursor('otherepoch-42', 'mx5g3pz1a2b3c'), undefined);
  assert.deepEqual(parseCursor('1764115200000-3', undefined), { major: 1_764_115_200_000, minor: 3 });
  assert.equal(formatCursor({ major: 1_764_115_200_000, minor: 3 }, undefined), '1764115200000-3');
  for (const junk of ['', '-', '12', 'a-b', '1-2-3', `1-${'9'.repeat(16)}`, ' 1-2']) {
    assert.equal(parseCursor(junk, undefined), undefined, junk);
    assert.equal(parseCursor(junk, 'e'), undefined, junk);
  }
  const keys = [
    { major: 2, minor: 0 },
    { major: 1, minor: 9 },
    { major: 1, minor: 10 },
  ].sort(compareKeys);
  assert.deepEqual(keys, [
    { major: 1, minor: 9 },
    { major: 1, minor: 10 },
    { major: 2, minor: 0 },
  ]);
});
