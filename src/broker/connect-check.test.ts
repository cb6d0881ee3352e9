import assert from 'node:assert/strict';
import { test } from 'node:test';
import { connectRefusal } from './connect-check.js';

const connect = (keepalive: number, clientId = 'c1', clean = true) => ({ clientId, clean, keepalive });

test('keepalive 0 and keepalives up to the limit are accepted; above it is CONNACK 2 naming the limit', () => {
  assert.equal(connectRefusal(connect(0), 60), undefined);
  assert.equal(connectRefusal(connect(60), 60), undefined);
  assert.deepEqual(connectRefusal(connect(61), 60), {
    returnCode: 2,
    message: 'keepalive 61 s refused: above the limit BRIDGE_KEEPALIVE_LIMIT_S=60',
    log: true,
  });
  // 0 = no limit.
  assert.equal(connectRefusal(connect(65_535), 0), undefined);
});

test('[MQTT-3.1.3-8] an empty client id needs clean session 1; a client id over 128 characters is refused', () => {
  assert.equal(connectRefusal(connect(0, '', true), 0), undefined);
  assert.equal(connectRefusal(connect(0, '', false), 0)?.returnCode, 2);
  assert.equal(connectRefusal(connect(0, 'x'.repeat(128)), 0), undefined);
  assert.equal(connectRefusal(connect(0, 'x'.repeat(129)), 0)?.returnCode, 2);
});
