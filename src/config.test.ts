import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfig } from './config.js';
import { ConfigError } from './errors.js';

const message = (env: Record<string, string>) => {
  try {
    loadConfig(env);
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.message;
  }
  assert.fail('expected a ConfigError');
};

test('the defaults of the contract', () => {
  const c = loadConfig({});
  assert.equal(c.mqttPort, 1883);
  assert.equal(c.mqttsPort, 8883);
  assert.equal(c.httpPort, 8080);
  assert.equal(c.host, '127.0.0.1');
  assert.equal(c.auth, true);
  assert.equal(c.maxPayloadBytes, 16_384);
  assert.equal(c.maxPacketBytes, 65_536);
  assert.equal(c.influx, undefined);
  assert.equal(c.logLevel, 'info');
  assert.ok(Object.isFrozen(c) && Object.isFrozen(c.limits));
});

test('a wrong value gives one line naming the variable, the value and what is allowed', () => {
  assert.equal(
    message({ BRIDGE_MQTT_PORT: 'abc' }),
    'invalid configuration: BRIDGE_MQTT_PORT="abc": expected a number',
  );
  assert.equal(
    message({ BRIDGE_HTTP_PORT: '70000' }),
    'invalid configuration: BRIDGE_HTTP_PORT="70000": expected at most 65535',
  );
  assert.equal(
    message({ BRIDGE_AUTH: 'maybe' }),
    'invalid configuration: BRIDGE_AUTH="maybe": expected one of "on", "off"',
  );
  assert.equal(
    message({ INFLUX_API: 'v3' }),
    'invalid configuration: INFLUX_API="v3": expected one of "v1", "v2"',
  );
  assert.match(
    message({ INFLUX_URL: 'not a url' }),
    /^invalid configuration: INFLUX_URL="not a url": expected a URL/,
  );
  assert.match(
    message({ INFLUX_URL: 'http://x:8086', INFLUX_API: 'v1' }),
    /INFLUX_DATABASE.*required when INFLUX_API=v1/,
  );
  assert.match(message({ BRIDGE_TLS_CERT: 'c.pem' }), /BRIDGE_TLS_KEY.*required/);
  assert.match(
    message({ BRIDGE_SCHEMAS: 'a/b' }),
    /BRIDGE_SCHEMAS="a\/b": expected "topic\/filter=package.MessageType"/,
  );
  for (const m of [message({ LOG_LEVEL: 'loud' }), message({ BRIDGE_MAX_PAYLOAD_BYTES: '1' })])
    assert.ok(!m.includes('\n'));
});

test('user schema mappings come after the built-in ones; empty strings count as unset', () => {
  const c = loadConfig({ BRIDGE_SCHEMAS: 'sensors/+/air=acme.Air; x/#=acme.X', BRIDGE_MQTT_PORT: '' });
  assert.equal(c.mqttPort, 1883);
  assert.deepEqual(c.schemas.slice(-2), [
    { filter: 'sensors/+/air', type: 'acme.Air' },
    { filter: 'x/#', type: 'acme.X' },
  ]);
});

test('Redis: REDIS_URL alone, or with sentinels (their list checked, and REDIS_URL required)', () => {
  assert.equal(loadConfig({}).redis, undefined);
  assert.deepEqual(loadConfig({ REDIS_URL: 'redis://r:6379/2' }).redis, { url: 'redis://r:6379/2' });
  assert.deepEqual(
    loadConfig({ REDIS_URL: 'redis://:pw@primary/0', REDIS_SENTINELS: 's1:26379, [::1]:26380' }).redis,
    {
      url: 'redis://:pw@primary/0',
      sentinels: [
        { host: 's1', port: 26379 },
        { host: '::1', port: 26380 },
      ],
      sentinelName: 'mymaster',
    },
  );
  assert.equal(
    loadConfig({
      REDIS_URL: 'redis://x',
      REDIS_SENTINELS: 's:1',
      REDIS_SENTINEL_NAME: 'plant',
      REDIS_SENTINEL_PASSWORD: 'p',
    }).redis?.sentinelPassword,
    'p',
  );
  assert.equal(
    message({ REDIS_URL: 'redis://x', REDIS_SENTINELS: 's1:26379,s2' }),
    `invalid configuration: REDIS_SENTINELS="s1:26379,s2": 's2' is not host:port (e.g. 10.0.0.5:26379)`,
  );
  assert.match(
    message({ REDIS_URL: 'redis://x', REDIS_SENTINELS: 's1:99999' }),
    /'s1:99999' is not host:port/,
  );
  assert.match(
    message({ REDIS_SENTINELS: 's1:26379' }),
    /^invalid configuration: REDIS_SENTINELS=.*needs REDIS_URL/,
  );
});
