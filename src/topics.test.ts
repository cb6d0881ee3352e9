import assert from 'node:assert/strict';
import { test } from 'node:test';
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
