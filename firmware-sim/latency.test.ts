import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LatencyHistogram } from './latency.js';

test('quantiles within 5 % and merge adds up', () => {
  const a = new LatencyHistogram();
  const b = new LatencyHistogram();
  for (let i = 1; i <= 1000; i++) (i % 2 ? a : b).record(i);
  assert.equal(a.quantile(0.5), a.quantile(0.5)); // defined
  const m = new LatencyHistogram();
  m.merge(a);
  m.merge(new LatencyHistogram(b.counts));
  assert.equal(m.total, 1000);
  const p50 = m.quantile(0.5)!;
  const p99 = m.quantile(0.99)!;
  assert.ok(p50 >= 500 && p50 <= 525, `p50 ${p50}`);
  assert.ok(p99 >= 990 && p99 <= 1040, `p99 ${p99}`);
  assert.equal(new LatencyHistogram().quantile(0.5), undefined);
});
