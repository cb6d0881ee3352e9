import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  FEED_KINDS,
  type FeedPattern,
  isFeedPattern,
  parseFeedFilter,
  patternCovers,
  patternMatches,
  scopeCovers,
} from './feeds.js';
import { topicMatches } from './topics.js';

function p(filter: string): FeedPattern {
  const parsed = parseFeedFilter(filter);
  assert.ok(isFeedPattern(parsed), `${filter}: ${JSON.stringify(parsed)}`);
  return parsed;
}

test('filters normalise to (kind, device) patterns', () => {
  assert.deepEqual(p('#'), { kind: undefined, device: undefined });
  assert.deepEqual(p('+/#'), { kind: undefined, device: undefined });
  assert.deepEqual(p('+/+'), { kind: undefined, device: undefined });
  assert.deepEqual(p('telemetry/#'), { kind: 'telemetry', device: undefined });
  assert.deepEqual(p('telemetry/+'), { kind: 'telemetry', device: undefined });
  assert.deepEqual(p('status/d1'), { kind: 'status', device: 'd1' });
  assert.deepEqual(p('status/d1/#'), { kind: 'status', device: 'd1' });
  assert.deepEqual(p('+/d-1.x_y'), { kind: undefined, device: 'd-1.x_y' });
});

test('invalid or empty-matching filters are refused', () => {
  for (const bad of [
    '',
    'telemetry',
    'status',
    'foo/d1',
    'telemetry/d1/x',
    'te+/d1',
    'telemetry/d#',
    '#/d1',
    'telemetry/#/x',
    'telemetry/-bad',
    'a/b/c/d',
    `telemetry/${'x'.repeat(65)}`,
    '/d1',
    'telemetry/',
  ]) {
    assert.ok(!isFeedPattern(parseFeedFilter(bad)), bad);
  }
});

test('scope: a requested filter must be covered by one of the token filters', () => {
  const scope = [p('telemetry/+'), p('status/d1')];
  assert.ok(scopeCovers(scope, p('telemetry/d7')));
  assert.ok(scopeCovers(scope, p('telemetry/#')));
  assert.ok(scopeCovers(scope, p('status/d1')));
  assert.ok(!scopeCovers(scope, p('status/d2')));
  assert.ok(!scopeCovers(scope, p('status/+')));
  assert.ok(
    !scopeCovers(scope, p('+/d1')),
    'status/d1 + telemetry/+ together do cover +/d1, but no single filter does',
  );
  assert.ok(!scopeCovers(scope, p('#')));
  assert.ok(scopeCovers([p('#')], p('+/d1')));
  assert.ok(!scopeCovers([p('+/d1')], p('+/+')));
});

// The normalisation must agree with MQTT semantics on every feed: check against the generic matcher.
const deviceArb = fc.constantFrom('d1', 'd2', 'x.y', 'telemetry', 'status');
const levelArb = fc.constantFrom('telemetry', 'status', '+', 'd1', 'd2', 'x.y', '#');
const filterArb = fc.array(levelArb, { minLength: 1, maxLength: 3 }).map((levels) => levels.join('/'));

test('property: pattern matching equals MQTT topic matching on every feed', () => {
  fc.assert(
    fc.property(filterArb, fc.constantFrom(...FEED_KINDS), deviceArb, (filter, kind, device) => {
      const parsed = parseFeedFilter(filter);
      if (!isFeedPattern(parsed)) return true;
      return patternMatches(parsed, kind, device) === topicMatches(filter, `${kind}/${device}`);
    }),
    { numRuns: 2000 },
  );
});

test('property: covers(outer, inner) iff every feed inner matches, outer matches', () => {
  const feeds = FEED_KINDS.flatMap((kind) =>
    ['d1', 'd2', 'x.y', 'telemetry', 'status', 'other'].map((device) => [kind, device] as const),
  );
  fc.assert(
    fc.property(filterArb, filterArb, (outerText, innerText) => {
      const outer = parseFeedFilter(outerText);
      const inner = parseFeedFilter(innerText);
      if (!isFeedPattern(outer) || !isFeedPattern(inner)) return true;
      const brute = feeds.every(([k, d]) => !patternMatches(inner, k, d) || patternMatches(outer, k, d));
      return patternCovers(outer, inner) === brute;
    }),
    { numRuns: 2000 },
  );
});
