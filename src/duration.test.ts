import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatDuration, parseDuration } from './duration.js';

test('durations: a whole number and ms, s, m, h or d; anything else is not one', () => {
  assert.equal(parseDuration('500ms'), 500);
  assert.equal(parseDuration('90s'), 90_000);
  assert.equal(parseDuration('15m'), 900_000);
  assert.equal(parseDuration('1h'), 3_600_000);
  assert.equal(parseDuration('7d'), 604_800_000);
  assert.equal(parseDuration('0'), 0);
  assert.equal(parseDuration('0s'), 0);
  for (const bad of ['', '1', '1.5h', '-1h', '1H', ' 1h', '1h ', '1w', 'h', '1hour', '999999999999999d'])
    assert.equal(parseDuration(bad), undefined, bad);
  for (const ms of [0, 500, 90_000, 3_600_000, 86_400_000, 1500])
    assert.equal(parseDuration(formatDuration(ms)), ms);
  assert.equal(formatDuration(86_400_000), '1d');
  assert.equal(formatDuration(5_400_000), '90m');
});
