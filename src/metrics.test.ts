import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createMetrics } from './metrics.js';

test('countMessage: counted by topic kind, added to bridge_messages_total once, whenever it is read', async () => {
  const metrics = createMetrics({ defaultMetrics: false });
  for (let i = 0; i < 5; i++) metrics.countMessage('telemetry');
  metrics.countMessage('status');
  metrics.messages.inc({ topic_kind: 'telemetry' }, 10); // a direct inc adds to the same series
  const text = await metrics.registry.metrics();
  assert.match(text, /^bridge_messages_total\{topic_kind="telemetry"\} 15$/m);
  assert.match(text, /^bridge_messages_total\{topic_kind="status"\} 1$/m);
  assert.doesNotMatch(text, /topic_kind="other"/);
  // Read again: nothing counted twice; new messages are added.
  metrics.countMessage('other');
  const again = await metrics.messages.get();
  const value = (kind: string) => again.values.find((v) => v.labels['topic_kind'] === kind)?.value;
  assert.deepEqual([value('telemetry'), value('status'), value('other')], [15, 1, 1]);
});
