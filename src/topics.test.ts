import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { filterCovers, isValidFilter, topicMatches, wildcardLevel } from './topics.js';

test('topicMatches follows MQTT 3.1.1 §4.7', () => {
  assert.ok(topicMatches('devices/+/telemetry', 'devices/d1/telemetry'));
  assert.ok(!topicMatches('devices/+/telemetry', 'devices/d1/status'));
  assert.ok(topicMatches('devices/#', 'devices'));
  assert.ok(topicMatches('devices/#', 'devices/a/b/c'));
  assert.ok(!topicMatches('devices/+', 'devices/a/b'));
  assert.ok(topicMatches('#', 'a/b'));
  assert.ok(!topicMatches('#', '$SYS/x'));
  assert.ok(!topicMatches('+/x', '$SYS/x'));
  assert.ok(topicMatches('$SYS/#', '$SYS/x'));
  assert.ok(topicMatches('a//b', 'a//b'));
  assert.ok(!topicMatches('a/b', 'a/b/c'));
});

test('filterCovers says whether one filter contains another', () => {
  assert.ok(filterCovers('#', 'telemetry/+'));
  assert.ok(filterCovers('telemetry/+', 'telemetry/d1'));
  assert.ok(filterCovers('telemetry/#', 'telemetry/+'));
  assert.ok(filterCovers('telemetry/+', 'telemetry/+'));
  assert.ok(!filterCovers('telemetry/+', 'telemetry/#'));
  assert.ok(!filterCovers('telemetry/d1', 'telemetry/+'));
  assert.ok(!filterCovers('telemetry/+', 'status/d1'));
  assert.ok(!filterCovers('a/+', 'a/b/c'));
  assert.ok(filterCovers('a/#', 'a'));
  assert.ok(!filterCovers('#', '$SYS/#'));
});

test('isValidFilter and wildcardLevel', () => {
  assert.ok(isValidFilter('a/+/b/#'));
  assert.ok(!isValidFilter('a/b#'));
  assert.ok(!isValidFilter('a/#/b'));
  assert.ok(!isValidFilter('a+/b'));
  assert.ok(!isValidFilter(''));
  assert.equal(wildcardLevel('devices/+/telemetry', 'devices/d1/telemetry'), 'd1');
  assert.equal(wildcardLevel('devices/d1/telemetry', 'devices/d1/telemetry'), undefined);
});

/** The split-based definitions the scanning versions replaced (issue 14): the reference they must equal. */
function referenceMatches(filter: string, topic: string): boolean {
  if (topic.startsWith('$') && (filter.startsWith('+') || filter.startsWith('#'))) return false;
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

function referenceWildcardLevel(filter: string, topic: string): string | undefined {
  const index = filter.split('/').indexOf('+');
  return index < 0 ? undefined : topic.split('/')[index];
}

test('topicMatches and wildcardLevel equal the level-by-level definition on any filter and topic', () => {
  const level = fc.constantFrom('', 'a', 'b', 'ab', 'd1', '$SYS', '+', '#', 'a+', '#b', 'devices');
  const path = fc.array(level, { minLength: 1, maxLength: 5 }).map((levels) => levels.join('/'));
  const topic = path.filter((t) => !t.includes('+') && !t.includes('#'));
  fc.assert(
    fc.property(path, topic, (filter, name) => {
      assert.equal(topicMatches(filter, name), referenceMatches(filter, name), `${filter} vs ${name}`);
      assert.equal(wildcardLevel(filter, name), referenceWildcardLevel(filter, name), `${filter} vs ${name}`);
    }),
    { numRuns: 20_000 },
  );
});
