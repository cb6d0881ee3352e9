import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createMetrics } from '../../metrics.js';
import { SelfMetrics } from './self-metrics.js';

/** Parses one line of line protocol produced here (no escaped spaces in values). */
function parse(line: string) {
  const [head, fieldText, time] = line.split(/(?<!\\) /) as [string, string, string];
  const [measurement, ...tags] = head.split(',');
  const fields = Object.fromEntries(
    fieldText.split(',').map((f) => {
      const [k, v] = f.split('=') as [string, string];
      return [k, Number(v)];
    }),
  );
  return { measurement, tags: Object.fromEntries(tags.map((t) => t.split('='))), fields, time: Number(time) };
}

test('bridge_health carries totals, per-label fields and the instance tag', async () => {
  const metrics = createMetrics({ defaultMetrics: false });
  metrics.connections.set({ listener: 'tcp' }, 3);
  metrics.connections.set({ listener: 'ws' }, 2);
  metrics.messages.inc({ topic_kind: 'telemetry' }, 10);
  metrics.messages.inc({ topic_kind: 'status' }, 1);
  metrics.rejected.inc({ reason: 'decode_error' }, 2);
  metrics.pointsWritten.inc(7);
  metrics.backlog.set(5);
  metrics.liveClients.set(4);
  const self = new SelfMetrics(metrics, { instance: 'bridge 1' });
  const lines = await self.lines(1_700_000_000_123);
  const health = parse(lines[0]!);
  assert.equal(health.measurement, 'bridge_health');
  assert.equal(lines[0]!.startsWith('bridge_health,instance=bridge\\ 1 '), true);
  assert.equal(health.time, 1_700_000_000_123);
  assert.equal(health.fields['connections'], 5);
  assert.equal(health.fields['connections_tcp'], 3);
  assert.equal(health.fields['messages'], 11);
  assert.equal(health.fields['messages_telemetry'], 10);
  assert.equal(health.fields['rejected'], 2);
  assert.equal(health.fields['points_written'], 7);
  assert.equal(health.fields['backlog'], 5);
  assert.equal(health.fields['live_clients'], 4);
  assert.ok((health.fields['rss_bytes'] ?? 0) > 0);
  assert.equal(lines[1], 'bridge_rejections,instance=bridge\\ 1,reason=decode_error total=2 1700000000123');
});

test('latency figures describe the interval since the previous call', async () => {
  const metrics = createMetrics({ defaultMetrics: false });
  const self = new SelfMetrics(metrics, { instance: 'x' });
  for (let i = 0; i < 100; i++) metrics.e2eLatency.observe(0.002);
  const first = parse((await self.lines(1))[0]!);
  assert.ok(Math.abs((first.fields['e2e_latency_mean_s'] ?? 0) - 0.002) < 1e-9);
  assert.equal(first.fields['e2e_latency_p99_s'], 0.005);
  const quiet = parse((await self.lines(2))[0]!);
  assert.equal(quiet.fields['e2e_latency_mean_s'], undefined, 'no observations: no latency field');
  for (let i = 0; i < 10; i++) metrics.e2eLatency.observe(0.4);
  const later = parse((await self.lines(3))[0]!);
  assert.ok(Math.abs((later.fields['e2e_latency_mean_s'] ?? 0) - 0.4) < 1e-9);
  assert.equal(later.fields['e2e_latency_p99_s'], 0.5);
});
