import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SensorModel } from './sensors.js';

test('temperature follows a daily cycle, humidity moves against it', () => {
  const m = new SensorModel('dev-1');
  const t0 = Date.UTC(2025, 0, 1, 0, 0, 0);
  const samples = Array.from({ length: 24 * 12 }, (_, i) => m.sample(t0 + i * 5 * 60_000));
  const temps = samples.map((s) => s.temperature_c);
  const hums = samples.map((s) => s.humidity_pct);
  const at = (h: number) => temps.slice(h * 12 - 6, h * 12 + 6).reduce((a, b) => a + b) / 12;
  assert.ok(at(17) - at(5) > 2, `afternoon warmer than early morning: ${at(17)} vs ${at(5)}`);
  // Anti-correlation: Pearson r clearly negative.
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b) / xs.length;
  const mt = mean(temps);
  const mh = mean(hums);
  let cov = 0;
  let vt = 0;
  let vh = 0;
  for (let i = 0; i < temps.length; i++) {
    cov += (temps[i]! - mt) * (hums[i]! - mh);
    vt += (temps[i]! - mt) ** 2;
    vh += (hums[i]! - mh) ** 2;
  }
  assert.ok(cov / Math.sqrt(vt * vh) < -0.8);
  assert.ok(temps.every((t) => t > 10 && t < 35));
});

test('battery drains monotonically and counter counts samples', () => {
  const m = new SensorModel('dev-2', { counter: 41, battery: 80 });
  const s = Array.from({ length: 1000 }, (_, i) => m.sample(i * 1000));
  assert.equal(s[0]!.counter, 42);
  assert.equal(s.at(-1)!.counter, 1041);
  for (let i = 1; i < s.length; i++) assert.ok(s[i]!.battery_pct <= s[i - 1]!.battery_pct);
  assert.ok(s.at(-1)!.battery_pct < 80 && s.at(-1)!.battery_pct > 78);
  assert.ok(s.every((x) => Number.isFinite(x.temperature_c) && Number.isFinite(x.humidity_pct)));
});

test('devices differ, the same id repeats', () => {
  const a = new SensorModel('a').sample(0).temperature_c;
  const b = new SensorModel('b').sample(0).temperature_c;
  assert.notEqual(a, b);
  assert.equal(new SensorModel('a').sample(0).temperature_c, a);
});
