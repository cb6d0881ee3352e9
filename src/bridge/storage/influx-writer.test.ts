import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HttpError, RequestTimedOutError } from '@influxdata/influxdb-client';
import { classify, parseRetryAfter } from './influx-writer.js';

test('Retry-After: seconds, fractions and HTTP dates; garbage is ignored', () => {
  assert.equal(parseRetryAfter('3'), 3000);
  assert.equal(parseRetryAfter(['1.5']), 1500);
  const now = Date.parse('2026-01-01T00:00:00Z');
  assert.equal(parseRetryAfter('Thu, 01 Jan 2026 00:00:10 GMT', now), 10_000);
  assert.equal(parseRetryAfter('Wed, 31 Dec 2025 00:00:00 GMT', now), 0);
  assert.equal(parseRetryAfter('soon'), undefined);
  assert.equal(parseRetryAfter(undefined), undefined);
});

test('failure classes follow Telegraf: back off, split, or isolate bad lines', () => {
  const http = (status: number, headers: Record<string, string> = {}, body = '{"error":"x"}') =>
    new HttpError(status, 'msg', body, headers['retry-after'], 'application/json', undefined, headers);
  assert.deepEqual(classify(http(429, { 'retry-after': '2' })), {
    kind: 'retry',
    reason: 'HTTP 429: x',
    retryAfterMs: 2000,
  });
  for (const s of [500, 502, 503, 401, 403, 404]) assert.equal(classify(http(s)).kind, 'retry', String(s));
  assert.equal(classify(http(413)).kind, 'split');
  assert.equal(classify(http(400, {}, '{"error":"partial write: field type conflict"}')).kind, 'reject');
  assert.match(
    classify(http(400, {}, '{"error":"partial write: field type conflict"}')).reason,
    /type conflict/,
  );
  assert.equal(classify(http(422)).kind, 'reject');
  assert.equal(classify(new RequestTimedOutError()).kind, 'retry');
  assert.equal(
    classify(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })).kind,
    'retry',
  );
});
