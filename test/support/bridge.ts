/**
 * A real bridge for integration tests, in-process, on free loopback ports with a temporary data
 * directory; plus what tests need around it: devices and users in its registry, MQTT clients over
 * each transport, protobuf payloads, a test certificate made at test time.
 */
import { execFileSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { type BridgeHandle, startBridge } from '../../src/app.js';
import type { Registry } from '../../src/auth/registry.js';
import { BUILTIN_SCHEMAS, loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { loadSchemas } from '../../src/schemas/registry.js';
import { tempDir } from './services.js';

export const schemas = loadSchemas(BUILTIN_SCHEMAS);
export const Telemetry = schemas.type('telemetry.v1.Telemetry');
export const DeviceStatus = schemas.type('telemetry.v1.DeviceStatus');
export const Rejection = schemas.type('telemetry.v1.Rejection');
export const Command = schemas.type('telemetry.v1.Command');

export interface TestSample {
  time_unix_ms?: number;
  values: Record<string, number>;
  labels?: Record<string, string>;
}

export function encodeTelemetry(deviceId: string, seq: number, samples: TestSample[]): Buffer {
  return Buffer.from(Telemetry.encode({ device_id: deviceId, seq, samples }).finish());
}

export function decodeRejection(payload: Buffer): { seq: number; reason: string; detail: string } {
  const r = Rejection.toObject(Rejection.decode(payload), { longs: Number, defaults: true });
  return r as { seq: number; reason: string; detail: string };
}

export interface TestBridge {
  readonly bridge: BridgeHandle;
  readonly dataDir: string;
  readonly env: Record<string, string>;
  readonly registry: Registry;
  /** Creates a device and returns its secret. */
  addDevice(id: string): Promise<string>;
  addUser(name: string, rights: { publish: string[]; subscribe: string[] }): Promise<string>;
  mqttUrl(transport: 'tcp' | 'tls' | 'ws' | 'wss'): string;
  /** Connects and resolves once CONNACK 0 arrived; rejects with the MQTT error otherwise. */
  connect(transport: 'tcp' | 'tls' | 'ws' | 'wss', options: IClientOptions): Promise<MqttClient>;
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  close(): Promise<void>;
}

/**
 * A self-signed certificate (EC P-256, 2 days), made with openssl at test time: by default the
 * server's, for 127.0.0.1/localhost; `cn` and `name` make others (a test CA, a client).
 */
export function makeCertificate(
  dir: string,
  options: { cn?: string; name?: string; san?: string | false } = {},
): { cert: string; key: string } {
  const name = options.name ?? '';
  const cert = join(dir, name ? `${name}.pem` : 'cert.pem');
  const key = join(dir, name ? `${name}.key` : 'key.pem');
  const san = options.san ?? (options.cn ? false : 'subjectAltName=IP:127.0.0.1,DNS:localhost');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '2',
      '-subj',
      `/CN=${options.cn ?? 'localhost'}`,
      ...(san ? ['-addext', san] : []),
      '-keyout',
      key,
      '-out',
      cert,
    ],
    { stdio: 'ignore' },
  );
  return { cert, key };
}

/**
 * Starts a bridge. `env` is the bridge's environment on top of test defaults (ports 0, a temporary
 * data dir, logs at warn to stderr, or to `log`, e.g. `captureLog().stream`); `tls: true` adds a fresh
 * certificate.
 */
export async function startTestBridge(
  env: Record<string, string> = {},
  options: { tls?: boolean; dataDir?: string; log?: NodeJS.WritableStream } = {},
): Promise<TestBridge> {
  const dataDir = options.dataDir ?? tempDir('bridge');
  const full: Record<string, string> = {
    BRIDGE_MQTT_PORT: '0',
    BRIDGE_MQTTS_PORT: '0',
    BRIDGE_HTTP_PORT: '0',
    BRIDGE_DATA_DIR: dataDir,
    INFLUX_FLUSH_INTERVAL_MS: '50',
    INFLUX_SELF_METRICS_MS: '0',
    LOG_LEVEL: process.env['TEST_LOG_LEVEL'] ?? 'warn',
    ...env,
  };
  if (options.tls) {
    const { cert, key } = makeCertificate(dataDir);
    full['BRIDGE_TLS_CERT'] ??= cert;
    full['BRIDGE_TLS_KEY'] ??= key;
  }
  const config = loadConfig(full);
  const bridge = await startBridge(config, {
    log: createLogger(config.logLevel, options.log ?? process.stderr),
  });
  const { registry } = bridge;
  const clients: MqttClient[] = [];
  const secure = Boolean(config.tls);
  const self: TestBridge = {
    bridge,
    dataDir,
    env: full,
    registry,
    addDevice: (id) => registry.addDevice(id),
    addUser: (name, rights) => registry.addUser(name, rights),
    mqttUrl(transport) {
      const { ports } = bridge;
      switch (transport) {
        case 'tcp':
          return `mqtt://127.0.0.1:${ports.mqtt}`;
        case 'tls':
          return `mqtts://127.0.0.1:${ports.mqtts}`;
        case 'ws':
          return `ws://127.0.0.1:${ports.http}/mqtt`;
        case 'wss':
          return `wss://127.0.0.1:${ports.http}/mqtt`;
      }
    },
    connect(transport, opts) {
      if ((transport === 'tls' || transport === 'wss') && !secure)
        throw new Error('bridge started without tls');
      return connectMqtt(self.mqttUrl(transport), opts, clients);
    },
    async metric(name, labels = {}) {
      const metric = bridge.metrics.registry.getSingleMetric(name);
      if (!metric) throw new Error(`no metric ${name}`);
      const data = await metric.get();
      return data.values
        .filter((v) => Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want))
        .filter((v) => {
          // Histograms list buckets, sum and count: only the count is "how many".
          const metricName = (v as { metricName?: string }).metricName;
          return !metricName || metricName === name || metricName.endsWith('_count');
        })
        .reduce((sum, v) => sum + v.value, 0);
    },
    async close() {
      for (const c of clients) c.end(true);
      await bridge.close();
      if (!options.dataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
  return self;
}

/**
 * An MQTT 3.1.1 client without mqtt.js's own reconnect; resolves once CONNACK 0 arrived, rejects with
 * the MQTT error otherwise. The client is added to `track` (for the test's clean-up) either way.
 */
export function connectMqtt(url: string, options: IClientOptions, track?: MqttClient[]): Promise<MqttClient> {
  const client = mqtt.connect(url, {
    protocolVersion: 4,
    reconnectPeriod: 0,
    connectTimeout: 10_000,
    rejectUnauthorized: false,
    ...options,
  });
  track?.push(client);
  return new Promise((resolve, reject) => {
    client.once('connect', () => resolve(client));
    client.once('error', (err) => {
      client.end(true);
      reject(err);
    });
    client.once('close', () => reject(new Error('connection closed before CONNACK')));
  });
}

/** Publishes QoS 1 and resolves on PUBACK. */
export function publishAcked(
  client: MqttClient,
  topic: string,
  payload: Buffer,
  retain = false,
): Promise<void> {
  return new Promise((resolve, reject) => {
    client.publish(topic, payload, { qos: 1, retain }, (err) => (err ? reject(err) : resolve()));
  });
}

/** Writes a JSON file (test helper for config files). */
export function writeJson(path: string, value: unknown): void {
  writeFileSync(path, JSON.stringify(value));
}

/** Subscribes and resolves with the SUBACK return codes (mqtt.js turns any 0x80 into an error). */
export function subackCodes(client: MqttClient, topics: string[]): Promise<number[]> {
  return new Promise((resolve) => {
    const onPacket = (packet: { cmd: string; granted?: unknown[] }) => {
      if (packet.cmd !== 'suback') return;
      client.removeListener('packetreceive', onPacket);
      resolve((packet.granted ?? []) as number[]);
    };
    client.on('packetreceive', onPacket);
    client.subscribe(topics, { qos: 0 }, () => {});
  });
}
