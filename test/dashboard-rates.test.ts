// Unit tests of the dashboard's DOM-free parts: rates and chart history bounds.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { lastSeenText } from '../web/dashboard/format.js';
import { HistoryStore } from '../web/dashboard/history.js';
import { counterRate, parseRejectedTotal, RateMeter } from '../web/dashboard/rates.js';

describe('dashboard rates', () => {
  it('RateMeter averages completed seconds over its window and forgets old ones', () => {
    const m = new RateMeter(5);
    const t0 = 1_000_000_000;
    for (let s = 0; s < 4; s++) m.add(10, t0 + s * 1000 + 500);
    assert.equal(m.rate(t0 + 4000), 10); // 4 completed seconds of 10 each, window-1 = 4
    m.add(1000, t0 + 4100); // current partial second: not counted yet
    assert.equal(m.rate(t0 + 4200), 10);
    assert.equal(m.rate(t0 + 20_000), 0, 'a silent stream drops to zero');
    const young = new RateMeter(10);
    young.add(30, t0 + 100);
    young.add(30, t0 + 1100);
    assert.equal(young.rate(t0 + 2000), 30, 'a young meter divides by the seconds it has seen');
  });

  it('parses bridge_rejected_total across labels and ignores similar names', () => {
    const text = [
      '# HELP bridge_rejected_total Messages refused by validation, by reason.',
      '# TYPE bridge_rejected_total counter',
      'bridge_rejected_total{reason="bad_time"} 3',
      'bridge_rejected_total{reason="too_large"} 4',
      'bridge_rejected_total_other 100',
      'bridge_messages_total{topic_kind="telemetry"} 9',
    ].join('\n');
    assert.equal(parseRejectedTotal(text), 7);
    assert.equal(parseRejectedTotal('bridge_messages_total 1'), undefined);
    assert.equal(
      parseRejectedTotal('# HELP bridge_rejected_total x\n# TYPE bridge_rejected_total counter\n'),
      0,
    );
  });

  it('counterRate: per second, and 0 after a counter reset', () => {
    assert.equal(counterRate({ value: 10, atMs: 0 }, 30, 4000), 5);
    assert.equal(counterRate({ value: 10, atMs: 0 }, 2, 4000), 0);
  });

  it('lastSeenText', () => {
    assert.equal(lastSeenText(undefined, 0), '—');
    assert.equal(lastSeenText(10_000, 10_500), 'now');
    assert.equal(lastSeenText(0, 42_000), '42 s ago');
    assert.equal(lastSeenText(0, 180_000), '3 min ago');
  });
});

describe('dashboard chart history', () => {
  it('keeps aligned columns with nulls for missing metrics, bounded in points and metrics', () => {
    const h = new HistoryStore(3, 2);
    h.add('d', 1000, { a: 1 });
    h.add('d', 2000, { a: 2, b: 20 });
    h.add('d', 3000, { b: 30, c: 300 }); // c exceeds maxMetrics
    h.add('d', 2500, { a: 99 }); // out of order: dropped
    h.add('d', 4000, { a: 4 });
    const d = h.get('d');
    assert.deepEqual(d?.times, [2, 3, 4]);
    assert.deepEqual(d?.series.get('a'), [2, null, 4]);
    assert.deepEqual(d?.series.get('b'), [20, 30, null]);
    assert.equal(d?.series.has('c'), false);
    assert.equal(d?.version, 4);
  });

  it('a history answer replaces the live points inside its window, bucketed ones included, and keeps later ones', () => {
    const h = new HistoryStore();
    // Live samples at 61 s and 65 s are in the answer's second bucket [60 s, 120 s); 130 s came after it.
    for (const [ms, v] of [
      [61_000, 1],
      [65_000, 3],
      [130_000, 7],
    ] as const)
      h.add('d', ms, { a: v });
    h.load({
      device: 'd',
      from: 0,
      to: 120_000,
      step: 60_000,
      t: [0, 60_000],
      series: { a: { mean: [5, 2], min: [5, 1], max: [5, 3], count: [1, 2] } },
      status: [],
    });
    const d = h.get('d');
    assert.deepEqual(d?.times, [0, 60, 130], 'each reading once: its bucket, or live after the window');
    assert.deepEqual(d?.series.get('a'), [5, 2, 7]);
    assert.equal(d?.liveSinceLoad, 0);
  });
});
