/**
 * Environment → validated, frozen configuration.
 *
 * Every default and limit of the bridge is named here, once. The public variables are those of the
 * contract (README "Configuration"); the `BRIDGE_*` tuning variables below them are ours and are
 * documented in docs/configuration.md. A config file (`BRIDGE_CONFIG=path.json`) may mirror the
 * environment: its keys are the same variable names, and the environment wins over the file.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { z } from 'zod';
import { type AclRule, readAclFile } from './broker/acl-file.js';
import { ConfigError } from './errors.js';
import { isValidFilter } from './topics.js';

/** One topic filter → protobuf message type mapping of the schema registry. */
export interface SchemaMapping {
  /** MQTT topic filter, `+` and `#` allowed, e.g. `devices/+/telemetry`. */
  readonly filter: string;
  /** Fully qualified message type, e.g. `telemetry.v1.Telemetry`. */
  readonly type: string;
}

const port = z.coerce.number().int().min(0).max(65535);
const positiveInt = z.coerce.number().int().min(1);
const nonNegativeInt = z.coerce.number().int().min(0);
const onOff = z.enum(['on', 'off']);
const optionalText = z.string().min(1).optional();

/**
 * The schema of every variable: name → parser with its default. The messages that zod produces are
 * turned into one line naming the variable, the value and what is allowed.
 */
const envSchema = z.object({
  BRIDGE_MQTT_PORT: port.default(1883),
  BRIDGE_MQTTS_PORT: port.default(8883),
  BRIDGE_HTTP_PORT: port.default(8080),
  BRIDGE_HOST: z.string().min(1).default('127.0.0.1'),
  BRIDGE_TLS_CERT: optionalText,
  BRIDGE_TLS_KEY: optionalText,
  BRIDGE_TLS_CA: optionalText,
  BRIDGE_DATA_DIR: z.string().min(1).default('./data'),
  BRIDGE_AUTH: onOff.default('on'),
  /** Rights of anonymous clients (BRIDGE_AUTH=off), Mosquitto acl_file syntax; unset = every topic. */
  BRIDGE_ACL_FILE: optionalText,
  BRIDGE_MAX_PAYLOAD_BYTES: z.coerce.number().int().min(64).max(16_777_216).default(16_384),
  BRIDGE_MAX_PACKET_BYTES: z.coerce.number().int().min(256).max(268_435_455).default(65_536),
  INFLUX_URL: z.url({ protocol: /^https?$/ }).optional(),
  INFLUX_API: z.enum(['v1', 'v2']).default('v2'),
  INFLUX_TOKEN: optionalText,
  INFLUX_ORG: optionalText,
  INFLUX_BUCKET: optionalText,
  INFLUX_DATABASE: optionalText,
  INFLUX_RETENTION_POLICY: optionalText,
  INFLUX_USERNAME: optionalText,
  INFLUX_PASSWORD: optionalText,
  LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),

  // Tuning (ours). Zero-value meanings are stated where zero is allowed.
  /** Points per InfluxDB write request. */
  INFLUX_BATCH_SIZE: z.coerce.number().int().min(1).max(100_000).default(5000),
  /** Longest a point waits before its batch is sent, ms. */
  INFLUX_FLUSH_INTERVAL_MS: z.coerce.number().int().min(10).max(60_000).default(1000),
  /** Timeout of one write request, ms. */
  INFLUX_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(10_000),
  /** gzip request bodies at or above this many bytes; 0 = always. */
  INFLUX_GZIP_THRESHOLD: nonNegativeInt.default(1000),
  /** How often the bridge writes its own health figures into InfluxDB, ms; 0 = never. */
  INFLUX_SELF_METRICS_MS: nonNegativeInt.default(10_000),
  /** Retry backoff of failed writes: first wait and cap, ms (full jitter in between). */
  INFLUX_RETRY_MIN_MS: z.coerce.number().int().min(10).max(600_000).default(250),
  INFLUX_RETRY_MAX_MS: z.coerce.number().int().min(10).max(3_600_000).default(30_000),
  /** Disk the spool may use, bytes. Near it /readyz is 503; at it QoS 1 is no longer acknowledged. */
  BRIDGE_SPOOL_MAX_BYTES: z.coerce.number().int().min(65_536).default(1_073_741_824),
  /** Fraction of BRIDGE_SPOOL_MAX_BYTES at which /readyz turns 503. */
  BRIDGE_SPOOL_READY_RATIO: z.coerce.number().min(0.1).max(1).default(0.9),
  /**
   * Memory for the unconfirmed tail of the spool, bytes: the InfluxDB writer reads lines appended by
   * this process from memory and reads the disk only after a restart or when the backlog outgrows it.
   * 0 = always read from disk. Default 32 MiB.
   */
  BRIDGE_SPOOL_MEMORY_BYTES: nonNegativeInt.default(33_554_432),
  /** Seconds SIGTERM waits for the spool to drain into InfluxDB before exiting. */
  BRIDGE_SHUTDOWN_GRACE_MS: nonNegativeInt.default(10_000),
  /** Topic → type mappings beyond the built-in ones: `filter=type[;filter=type]`. */
  BRIDGE_SCHEMAS: z.string().default(''),
  /** Directory of extra `.proto` files (the built-in `src/schemas/` is always loaded). */
  BRIDGE_SCHEMA_DIR: optionalText,
  /** A device or client must send CONNECT within this many ms of connecting. */
  BRIDGE_CONNECT_TIMEOUT_MS: positiveInt.default(10_000),
  /** An HTTP client must send its request headers (upgrades included) within this many ms. */
  BRIDGE_HTTP_HEADERS_TIMEOUT_MS: positiveInt.default(10_000),
  /** Largest MQTT keepalive a client may ask for, s (above: CONNACK 2); 0 = no limit. */
  BRIDGE_KEEPALIVE_LIMIT_S: nonNegativeInt.default(1200),
  /** Connections in total / from one address; 0 = unlimited. */
  BRIDGE_MAX_CONNECTIONS: nonNegativeInt.default(50_000),
  BRIDGE_MAX_CONNECTIONS_PER_IP: nonNegativeInt.default(0),
  /** Per-device publishes per second (token bucket rate) and burst; 0 = unlimited. */
  BRIDGE_DEVICE_RATE: nonNegativeInt.default(100),
  BRIDGE_DEVICE_BURST: positiveInt.default(200),
  /** A subscriber whose socket does not drain within this many ms is disconnected. */
  BRIDGE_DRAIN_TIMEOUT_MS: positiveInt.default(5000),
  /** Bytes queued for one MQTT subscriber past which it is disconnected. */
  BRIDGE_SUBSCRIBER_BUFFER_BYTES: z.coerce.number().int().min(65_536).default(1_048_576),
  /** MQTT over WebSocket (`/mqtt`): ping interval, ms; a peer that misses its pong is terminated. */
  BRIDGE_MQTT_WS_PING_MS: positiveInt.default(20_000),
  /** Live channel: ping interval, ms. */
  BRIDGE_LIVE_PING_MS: positiveInt.default(20_000),
  /** Live channel: permessage-deflate when the client offers it. */
  BRIDGE_LIVE_DEFLATE: onOff.default('on'),
  /** Live channel: messages and bytes of history kept for resume. */
  BRIDGE_LIVE_HISTORY: positiveInt.default(10_000),
  BRIDGE_LIVE_HISTORY_BYTES: positiveInt.default(16 * 1024 * 1024),
  /** Live channel: send-buffer soft limit (conflate) and hard limit (close 1013), bytes. */
  BRIDGE_LIVE_SOFT_LIMIT: positiveInt.default(256 * 1024),
  BRIDGE_LIVE_HARD_LIMIT: positiveInt.default(4 * 1024 * 1024),
  /** Live channel: inbound messages per second per connection (token bucket rate) and burst. */
  BRIDGE_LIVE_RATE: positiveInt.default(20),
  BRIDGE_LIVE_BURST: positiveInt.default(50),
  /** Allowed `Origin`s for /live and /live/sse, comma-separated; empty = any. */
  BRIDGE_ALLOWED_ORIGINS: z.string().default(''),
  /** Redis for scale-out; unset = single instance. */
  REDIS_URL: z.url({ protocol: /^rediss?$/ }).optional(),
});

type Env = z.infer<typeof envSchema>;

/** The validated configuration. Read-only: built once at start-up. */
export interface Config {
  readonly mqttPort: number;
  readonly mqttsPort: number;
  readonly httpPort: number;
  readonly host: string;
  readonly tls: { readonly certFile: string; readonly keyFile: string; readonly caFile?: string } | undefined;
  readonly dataDir: string;
  readonly auth: boolean;
  /** BRIDGE_ACL_FILE, parsed: the rights of anonymous clients; undefined = every topic. */
  readonly acl: { readonly file: string; readonly rules: readonly AclRule[] } | undefined;
  readonly maxPayloadBytes: number;
  readonly maxPacketBytes: number;
  readonly influx: InfluxConfig | undefined;
  readonly logLevel: Env['LOG_LEVEL'];
  readonly spool: {
    readonly maxBytes: number;
    readonly readyRatio: number;
    /** BRIDGE_SPOOL_MEMORY_BYTES: memory tail of the spool, bytes (0 = off). */
    readonly memoryBytes: number;
  };
  readonly shutdownGraceMs: number;
  readonly schemas: readonly SchemaMapping[];
  readonly schemaDir: string | undefined;
  readonly limits: {
    readonly connectTimeoutMs: number;
    readonly httpHeadersTimeoutMs: number;
    /** BRIDGE_KEEPALIVE_LIMIT_S; 0 = no limit. */
    readonly keepaliveLimitS: number;
    /** BRIDGE_MQTT_WS_PING_MS: WebSocket ping interval on `/mqtt`. */
    readonly mqttWsPingMs: number;
    readonly maxConnections: number;
    readonly maxConnectionsPerIp: number;
    readonly deviceRate: number;
    readonly deviceBurst: number;
    readonly drainTimeoutMs: number;
    readonly subscriberBufferBytes: number;
  };
  readonly live: {
    readonly pingMs: number;
    readonly deflate: boolean;
    readonly historyCount: number;
    readonly historyBytes: number;
    readonly softLimitBytes: number;
    readonly hardLimitBytes: number;
    /** Inbound messages per second per connection, and burst (`rate_limited` beyond). */
    readonly rate: number;
    readonly burst: number;
    readonly allowedOrigins: readonly string[];
  };
  readonly redisUrl: string | undefined;
}

export type InfluxConfig =
  | (InfluxCommon & {
      readonly api: 'v2';
      readonly token: string | undefined;
      readonly org: string | undefined;
      readonly bucket: string;
    })
  | (InfluxCommon & {
      readonly api: 'v1';
      readonly database: string;
      readonly retentionPolicy: string | undefined;
      readonly username: string | undefined;
      readonly password: string | undefined;
    });

interface InfluxCommon {
  readonly url: string;
  readonly batchSize: number;
  readonly flushIntervalMs: number;
  readonly timeoutMs: number;
  readonly gzipThreshold: number;
  readonly selfMetricsMs: number;
  readonly retryMinMs: number;
  readonly retryMaxMs: number;
}

/** The built-in schema mappings (src/schemas/telemetry.proto); user mappings are added after them. */
export const BUILTIN_SCHEMAS: readonly SchemaMapping[] = Object.freeze([
  { filter: 'devices/+/telemetry', type: 'telemetry.v1.Telemetry' },
  { filter: 'devices/+/status', type: 'telemetry.v1.DeviceStatus' },
  { filter: 'devices/+/errors', type: 'telemetry.v1.Rejection' },
  { filter: 'devices/+/commands', type: 'telemetry.v1.Command' },
]);

/** The variables the bridge reads; docker-compose and docs are checked against this list. */
export const CONFIG_VARIABLES: readonly string[] = Object.freeze([
  ...Object.keys(envSchema.shape),
  'BRIDGE_CONFIG',
]);

/**
 * Reads, validates and freezes the configuration.
 * @throws ConfigError with one line naming the variable, its value and what is allowed.
 * @example
 * const config = loadConfig(process.env);
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const merged = { ...readConfigFile(env['BRIDGE_CONFIG']), ...pickSet(env) };
  const parsed = envSchema.safeParse(merged);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const name = String(issue.path[0] ?? '?');
    throw new ConfigError(
      `invalid configuration: ${name}=${JSON.stringify(merged[name] ?? '')}: ${describeIssue(issue)}`,
    );
  }
  return deepFreeze(toConfig(parsed.data));
}

/** Empty strings count as unset, as shells and compose files produce them. */
function pickSet(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key of Object.keys(envSchema.shape)) {
    const value = env[key];
    if (value !== undefined && value !== '') out[key] = value;
  }
  return out;
}

function readConfigFile(path: string | undefined): Record<string, string> {
  if (!path) return {};
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new ConfigError(
      `invalid configuration: BRIDGE_CONFIG=${JSON.stringify(path)}: ${(err as Error).message}`,
    );
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(
      `invalid configuration: BRIDGE_CONFIG=${JSON.stringify(path)}: expected a JSON object`,
    );
  }
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(raw)) {
    if (!(key in envSchema.shape)) {
      throw new ConfigError(
        `invalid configuration: BRIDGE_CONFIG=${JSON.stringify(path)}: unknown key ${JSON.stringify(key)}`,
      );
    }
    out[key] = Array.isArray(value) ? value.join(key === 'BRIDGE_SCHEMAS' ? ';' : ',') : String(value);
  }
  return out;
}

function describeIssue(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'invalid_value':
      return `expected one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
    case 'too_small':
      return `expected at least ${issue.minimum}`;
    case 'too_big':
      return `expected at most ${issue.maximum}`;
    case 'invalid_type':
      return `expected ${issue.expected === 'number' ? 'a number' : issue.expected}`;
    case 'invalid_format':
      return `expected ${issue.format === 'url' ? 'a URL' : issue.format}${issue.message ? ` (${issue.message})` : ''}`;
    default:
      return issue.message;
  }
}

function toConfig(e: Env): Config {
  if (Boolean(e.BRIDGE_TLS_CERT) !== Boolean(e.BRIDGE_TLS_KEY)) {
    const missing = e.BRIDGE_TLS_CERT ? 'BRIDGE_TLS_KEY' : 'BRIDGE_TLS_CERT';
    throw new ConfigError(
      `invalid configuration: ${missing}="": required when the other of BRIDGE_TLS_CERT/KEY is set`,
    );
  }
  if (e.BRIDGE_TLS_CA && !e.BRIDGE_TLS_CERT) {
    throw new ConfigError(
      `invalid configuration: BRIDGE_TLS_CA=${JSON.stringify(e.BRIDGE_TLS_CA)}: needs BRIDGE_TLS_CERT and BRIDGE_TLS_KEY`,
    );
  }
  if (e.BRIDGE_ACL_FILE && e.BRIDGE_AUTH === 'on') {
    throw new ConfigError(
      `invalid configuration: BRIDGE_ACL_FILE=${JSON.stringify(e.BRIDGE_ACL_FILE)}: applies to anonymous clients, so it needs BRIDGE_AUTH=off`,
    );
  }
  return {
    mqttPort: e.BRIDGE_MQTT_PORT,
    mqttsPort: e.BRIDGE_MQTTS_PORT,
    httpPort: e.BRIDGE_HTTP_PORT,
    host: e.BRIDGE_HOST,
    tls:
      e.BRIDGE_TLS_CERT && e.BRIDGE_TLS_KEY
        ? {
            certFile: resolve(e.BRIDGE_TLS_CERT),
            keyFile: resolve(e.BRIDGE_TLS_KEY),
            ...(e.BRIDGE_TLS_CA ? { caFile: resolve(e.BRIDGE_TLS_CA) } : {}),
          }
        : undefined,
    dataDir: resolve(e.BRIDGE_DATA_DIR),
    auth: e.BRIDGE_AUTH === 'on',
    acl: e.BRIDGE_ACL_FILE
      ? { file: resolve(e.BRIDGE_ACL_FILE), rules: readAclFile(resolve(e.BRIDGE_ACL_FILE)) }
      : undefined,
    maxPayloadBytes: e.BRIDGE_MAX_PAYLOAD_BYTES,
    maxPacketBytes: e.BRIDGE_MAX_PACKET_BYTES,
    influx: toInfluxConfig(e),
    logLevel: e.LOG_LEVEL,
    spool: {
      maxBytes: e.BRIDGE_SPOOL_MAX_BYTES,
      readyRatio: e.BRIDGE_SPOOL_READY_RATIO,
      memoryBytes: e.BRIDGE_SPOOL_MEMORY_BYTES,
    },
    shutdownGraceMs: e.BRIDGE_SHUTDOWN_GRACE_MS,
    schemas: [...BUILTIN_SCHEMAS, ...parseSchemaMappings(e.BRIDGE_SCHEMAS)],
    schemaDir: e.BRIDGE_SCHEMA_DIR ? resolve(e.BRIDGE_SCHEMA_DIR) : undefined,
    limits: {
      connectTimeoutMs: e.BRIDGE_CONNECT_TIMEOUT_MS,
      httpHeadersTimeoutMs: e.BRIDGE_HTTP_HEADERS_TIMEOUT_MS,
      keepaliveLimitS: e.BRIDGE_KEEPALIVE_LIMIT_S,
      mqttWsPingMs: e.BRIDGE_MQTT_WS_PING_MS,
      maxConnections: e.BRIDGE_MAX_CONNECTIONS,
      maxConnectionsPerIp: e.BRIDGE_MAX_CONNECTIONS_PER_IP,
      deviceRate: e.BRIDGE_DEVICE_RATE,
      deviceBurst: e.BRIDGE_DEVICE_BURST,
      drainTimeoutMs: e.BRIDGE_DRAIN_TIMEOUT_MS,
      subscriberBufferBytes: e.BRIDGE_SUBSCRIBER_BUFFER_BYTES,
    },
    live: {
      pingMs: e.BRIDGE_LIVE_PING_MS,
      deflate: e.BRIDGE_LIVE_DEFLATE === 'on',
      historyCount: e.BRIDGE_LIVE_HISTORY,
      historyBytes: e.BRIDGE_LIVE_HISTORY_BYTES,
      softLimitBytes: e.BRIDGE_LIVE_SOFT_LIMIT,
      hardLimitBytes: e.BRIDGE_LIVE_HARD_LIMIT,
      rate: e.BRIDGE_LIVE_RATE,
      burst: e.BRIDGE_LIVE_BURST,
      allowedOrigins: e.BRIDGE_ALLOWED_ORIGINS.split(',')
        .map((o) => o.trim())
        .filter(Boolean),
    },
    redisUrl: e.REDIS_URL,
  };
}

function toInfluxConfig(e: Env): InfluxConfig | undefined {
  if (!e.INFLUX_URL) return undefined;
  const common: InfluxCommon = {
    url: e.INFLUX_URL,
    batchSize: e.INFLUX_BATCH_SIZE,
    flushIntervalMs: e.INFLUX_FLUSH_INTERVAL_MS,
    timeoutMs: e.INFLUX_TIMEOUT_MS,
    gzipThreshold: e.INFLUX_GZIP_THRESHOLD,
    selfMetricsMs: e.INFLUX_SELF_METRICS_MS,
    retryMinMs: e.INFLUX_RETRY_MIN_MS,
    retryMaxMs: Math.max(e.INFLUX_RETRY_MIN_MS, e.INFLUX_RETRY_MAX_MS),
  };
  if (e.INFLUX_API === 'v1') {
    if (!e.INFLUX_DATABASE) {
      throw new ConfigError('invalid configuration: INFLUX_DATABASE="": required when INFLUX_API=v1');
    }
    return {
      ...common,
      api: 'v1',
      database: e.INFLUX_DATABASE,
      retentionPolicy: e.INFLUX_RETENTION_POLICY,
      username: e.INFLUX_USERNAME,
      password: e.INFLUX_PASSWORD,
    };
  }
  if (!e.INFLUX_BUCKET) {
    throw new ConfigError('invalid configuration: INFLUX_BUCKET="": required when INFLUX_API=v2');
  }
  return { ...common, api: 'v2', token: e.INFLUX_TOKEN, org: e.INFLUX_ORG, bucket: e.INFLUX_BUCKET };
}

const TYPE_RE = /^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$/;

/** Parses `filter=type;filter=type`. */
export function parseSchemaMappings(text: string): SchemaMapping[] {
  const out: SchemaMapping[] = [];
  for (const part of text.split(/[;\n]/)) {
    const entry = part.trim();
    if (!entry) continue;
    const eq = entry.lastIndexOf('=');
    const filter = entry.slice(0, eq).trim();
    const type = entry.slice(eq + 1).trim();
    if (eq <= 0 || !isValidFilter(filter) || !TYPE_RE.test(type)) {
      throw new ConfigError(
        `invalid configuration: BRIDGE_SCHEMAS=${JSON.stringify(entry)}: expected "topic/filter=package.MessageType"`,
      );
    }
    out.push({ filter, type });
  }
  return out;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
