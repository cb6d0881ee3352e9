/**
 * Room: shared (read by every room). Environment → validated, frozen configuration.
 *
 * Each variable is defined once, in `configSchema` below: its place in the `Config` object, its
 * environment name (`env(...)`), its parser with its default and its doc comment. The `Config` type
 * is inferred from that schema; docs/configuration.md is checked against it (test/docs.test.ts). The
 * public variables are those of the contract (README "Configuration"); the tuning variables are ours.
 * A config file (`BRIDGE_CONFIG=path.json`) may mirror the environment: its keys are the same
 * variable names, and the environment wins over the file.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { z } from 'zod';
import { readAclFile } from './auth/acl-file.js';
import { parseDuration } from './duration.js';
import { ConfigError } from './errors.js';
import { DEFAULT_SENTINEL_NAME, type RedisTarget } from './redis-target.js';
import { isValidFilter } from './topics.js';

/** One topic filter → protobuf message type mapping of the schema registry. */
export interface SchemaMapping {
  /** MQTT topic filter, `+` and `#` allowed, e.g. `devices/+/telemetry`. */
  readonly filter: string;
  /** Fully qualified message type, e.g. `telemetry.v1.Telemetry`. */
  readonly type: string;
}

/** The built-in schema mappings (src/schemas/telemetry.proto); user mappings are added after them. */
export const BUILTIN_SCHEMAS: readonly SchemaMapping[] = Object.freeze([
  { filter: 'devices/+/telemetry', type: 'telemetry.v1.Telemetry' },
  { filter: 'devices/+/status', type: 'telemetry.v1.DeviceStatus' },
  { filter: 'devices/+/errors', type: 'telemetry.v1.Rejection' },
  { filter: 'devices/+/commands', type: 'telemetry.v1.Command' },
]);

/** Which environment variable a leaf of the schema reads. */
const variables = z.registry<{ readonly env: string }>();

/** Marks `schema` as the parser of variable `name` (a new schema each call: registrations are per instance). */
function env<T extends z.ZodType>(name: string, schema: T): T {
  variables.add(schema, { env: name });
  return schema;
}

// Factories, not shared instances: each variable needs its own schema object to carry its name.
const port = () => z.coerce.number().int().min(0).max(65535);
const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.coerce.number().int().min(min).max(max);
const onOff = (fallback: 'on' | 'off') =>
  z
    .enum(['on', 'off'])
    .default(fallback)
    .transform((v) => v === 'on');
const text = () => z.string().min(1).optional();
const path = () =>
  z
    .string()
    .min(1)
    .optional()
    .transform((p) => (p ? resolve(p) : undefined));
const list = () =>
  z
    .string()
    .default('')
    .transform((v) =>
      v
        .split(',')
        .map((o) => o.trim())
        .filter(Boolean),
    );

/** A duration (`24h`, `90m`, `7d`; see duration.ts) → ms, at least `minMs` unless 0 where zero is allowed. */
const duration = (fallback: string, minMs: number, zero: boolean) =>
  z
    .string()
    .default(fallback)
    .transform((v, ctx) => {
      const ms = parseDuration(v);
      if (ms === undefined || (ms < minMs && !(zero && ms === 0))) {
        ctx.addIssue({
          code: 'custom',
          message: `expected a duration of at least ${minMs / 1000} s: a whole number and ms, s, m, h or d (e.g. 24h)${zero ? ', or 0' : ''}`,
        });
        return z.NEVER;
      }
      return ms;
    });

const TYPE_RE = /^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$/;

/** Parses `filter=type;filter=type`; throws a ConfigError naming the first malformed entry. */
export function parseSchemaMappings(value: string): SchemaMapping[] {
  const out: SchemaMapping[] = [];
  for (const part of value.split(/[;\n]/)) {
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

const tlsSchema = z
  .object({
    /** BRIDGE_TLS_CERT, BRIDGE_TLS_KEY: PEM files; both or neither. Set: 8883 listens, /mqtt and /live are wss. */
    certFile: env('BRIDGE_TLS_CERT', path()),
    keyFile: env('BRIDGE_TLS_KEY', path()),
    /** PEM CA: device client certificates are requested and verified (mTLS). */
    caFile: env('BRIDGE_TLS_CA', path()),
  })
  .transform(({ certFile, keyFile, caFile }, ctx) => {
    if (Boolean(certFile) !== Boolean(keyFile)) {
      ctx.addIssue({
        code: 'custom',
        path: [certFile ? 'keyFile' : 'certFile'],
        message: 'required when the other of BRIDGE_TLS_CERT/KEY is set',
      });
      return z.NEVER;
    }
    if (caFile && !certFile) {
      ctx.addIssue({ code: 'custom', path: ['caFile'], message: 'needs BRIDGE_TLS_CERT and BRIDGE_TLS_KEY' });
      return z.NEVER;
    }
    if (!certFile || !keyFile) return undefined;
    return { certFile, keyFile, ...(caFile ? { caFile } : {}) } as {
      readonly certFile: string;
      readonly keyFile: string;
      readonly caFile?: string;
    };
  });

const influxSchema = z
  .object({
    /** `http(s)://host:port` of InfluxDB; unset = storage off. */
    url: env('INFLUX_URL', z.url({ protocol: /^https?$/ }).optional()),
    /** `v2` → /api/v2/write (InfluxDB 2.x, 3.x, Cloud, 1.8+); `v1` → /write (InfluxDB 1.x). */
    api: env('INFLUX_API', z.enum(['v1', 'v2']).default('v2')),
    token: env('INFLUX_TOKEN', text()),
    org: env('INFLUX_ORG', text()),
    bucket: env('INFLUX_BUCKET', text()),
    database: env('INFLUX_DATABASE', text()),
    retentionPolicy: env('INFLUX_RETENTION_POLICY', text()),
    username: env('INFLUX_USERNAME', text()),
    password: env('INFLUX_PASSWORD', text()),
    /** Points per write request. */
    batchSize: env('INFLUX_BATCH_SIZE', int(1, 100_000).default(5000)),
    /** Longest a point waits before its batch is sent, ms. */
    flushIntervalMs: env('INFLUX_FLUSH_INTERVAL_MS', int(10, 60_000).default(1000)),
    /** Timeout of one write request, ms. */
    timeoutMs: env('INFLUX_TIMEOUT_MS', int(100, 600_000).default(10_000)),
    /** gzip request bodies at or above this many bytes; 0 = always. */
    gzipThreshold: env('INFLUX_GZIP_THRESHOLD', int(0).default(1000)),
    /** How often the bridge writes its own health figures into InfluxDB, ms; 0 = never. */
    selfMetricsMs: env('INFLUX_SELF_METRICS_MS', int(0).default(10_000)),
    /** Retry backoff of failed writes: first wait and cap, ms (full jitter in between). */
    retryMinMs: env('INFLUX_RETRY_MIN_MS', int(10, 600_000).default(250)),
    retryMaxMs: env('INFLUX_RETRY_MAX_MS', int(10, 3_600_000).default(30_000)),
  })
  .transform(
    ({ url, api, token, org, bucket, database, retentionPolicy, username, password, ...tuning }, ctx) => {
      if (!url) return undefined;
      const common = { url, ...tuning, retryMaxMs: Math.max(tuning.retryMinMs, tuning.retryMaxMs) };
      if (api === 'v1') {
        if (!database) {
          ctx.addIssue({ code: 'custom', path: ['database'], message: 'required when INFLUX_API=v1' });
          return z.NEVER;
        }
        return { ...common, api, database, retentionPolicy, username, password };
      }
      if (!bucket) {
        ctx.addIssue({ code: 'custom', path: ['bucket'], message: 'required when INFLUX_API=v2' });
        return z.NEVER;
      }
      return { ...common, api, token, org, bucket };
    },
  );

const HOST_PORT_RE = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$/;

/** `host:port,host:port` (IPv6 in brackets) → addresses; an invalid entry is an issue naming it. */
const sentinelList = () =>
  list().transform((entries, ctx) => {
    const out: { host: string; port: number }[] = [];
    for (const entry of entries) {
      const m = HOST_PORT_RE.exec(entry);
      const port = Number(m?.[2]);
      if (!m || port < 1 || port > 65535) {
        ctx.addIssue({ code: 'custom', message: `'${entry}' is not host:port (e.g. 10.0.0.5:26379)` });
        return z.NEVER;
      }
      out.push({ host: m[1]!.replace(/^\[|\]$/g, ''), port });
    }
    return out;
  });

/** Scale-out (docs/scaling.md): unset REDIS_URL = one instance, nothing of Redis loaded. */
const redisSchema = z
  .object({
    /** Redis for scale-out; with sentinels, the primary's password, database and TLS (its host is not used). */
    url: env('REDIS_URL', z.url({ protocol: /^rediss?$/ }).optional()),
    /** Redis Sentinel: `host:port` of each sentinel, comma-separated; empty = no Sentinel. */
    sentinels: env('REDIS_SENTINELS', sentinelList()),
    /** The primary's name at the sentinels. */
    sentinelName: env('REDIS_SENTINEL_NAME', z.string().min(1).default(DEFAULT_SENTINEL_NAME)),
    /** The sentinels' own password, when they require one. */
    sentinelPassword: env('REDIS_SENTINEL_PASSWORD', text()),
  })
  .transform(({ url, sentinels, sentinelName, sentinelPassword }, ctx): RedisTarget | undefined => {
    if (!url) {
      if (sentinels.length > 0) {
        ctx.addIssue({
          code: 'custom',
          path: ['sentinels'],
          message: 'needs REDIS_URL (cluster mode; with sentinels it gives the password and database)',
        });
        return z.NEVER;
      }
      return undefined;
    }
    if (sentinels.length === 0) return { url };
    return { url, sentinels, sentinelName, ...(sentinelPassword ? { sentinelPassword } : {}) };
  });

/**
 * Every variable of the bridge: its place in `Config`, its name, its parser and default. Zero-value
 * meanings are stated where zero is allowed.
 */
const configSchema = z
  .object({
    /** MQTT over TCP (0 = any free port). */
    mqttPort: env('BRIDGE_MQTT_PORT', port().default(1883)),
    /** MQTT over TLS, only when a certificate is configured. */
    mqttsPort: env('BRIDGE_MQTTS_PORT', port().default(8883)),
    /** The one HTTP(S) server: /mqtt, /live, /live/sse, /, /metrics, /healthz, /readyz. */
    httpPort: env('BRIDGE_HTTP_PORT', port().default(8080)),
    /** Bind address of every listener. */
    host: env('BRIDGE_HOST', z.string().min(1).default('127.0.0.1')),
    tls: tlsSchema,
    /** Device registry, token signing key, spool, dead letters. */
    dataDir: env(
      'BRIDGE_DATA_DIR',
      z
        .string()
        .min(1)
        .default('./data')
        .transform((p) => resolve(p)),
    ),
    /** `off` only for local experiments: every client may use every topic (or what BRIDGE_ACL_FILE allows). */
    auth: env('BRIDGE_AUTH', onOff('on')),
    /**
     * Rights of anonymous clients (BRIDGE_AUTH=off) in Mosquitto's acl_file syntax, read at start-up so
     * a bad file is a configuration error; unset = every topic.
     */
    acl: env(
      'BRIDGE_ACL_FILE',
      path().transform((file) => (file ? { file, rules: readAclFile(file) } : undefined)),
    ),
    /** Largest accepted protobuf payload. */
    maxPayloadBytes: env('BRIDGE_MAX_PAYLOAD_BYTES', int(64, 16_777_216).default(16_384)),
    /** Largest MQTT packet; a connection announcing more is closed before the bytes are buffered. */
    maxPacketBytes: env('BRIDGE_MAX_PACKET_BYTES', int(256, 268_435_455).default(65_536)),
    influx: influxSchema,
    logLevel: env(
      'LOG_LEVEL',
      z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
    ),
    spool: z.object({
      /** Disk the spool may use, bytes. Near it /readyz is 503; at it QoS 1 is no longer acknowledged. */
      maxBytes: env('BRIDGE_SPOOL_MAX_BYTES', int(65_536).default(1_073_741_824)),
      /** Fraction of BRIDGE_SPOOL_MAX_BYTES at which /readyz turns 503. */
      readyRatio: env('BRIDGE_SPOOL_READY_RATIO', z.coerce.number().min(0.1).max(1).default(0.9)),
      /**
       * Memory for the unconfirmed tail of the spool, bytes: the InfluxDB writer reads lines appended by
       * this process from memory and reads the disk only after a restart or when the backlog outgrows it.
       * 0 = always read from disk. Default 32 MiB.
       */
      memoryBytes: env('BRIDGE_SPOOL_MEMORY_BYTES', int(0).default(33_554_432)),
    }),
    /** How long SIGTERM waits for the spool to drain into InfluxDB, ms. */
    shutdownGraceMs: env('BRIDGE_SHUTDOWN_GRACE_MS', int(0).default(10_000)),
    /** Topic → type mappings: the built-in ones, then `filter=type[;filter=type]` from BRIDGE_SCHEMAS. */
    schemas: env(
      'BRIDGE_SCHEMAS',
      z
        .string()
        .default('')
        .transform((v): readonly SchemaMapping[] => [...BUILTIN_SCHEMAS, ...parseSchemaMappings(v)]),
    ),
    /** Directory of extra `.proto` files (the built-in `src/schemas/` is always loaded). */
    schemaDir: env('BRIDGE_SCHEMA_DIR', path()),
    limits: z.object({
      /** A device or client must send CONNECT within this many ms of connecting. */
      connectTimeoutMs: env('BRIDGE_CONNECT_TIMEOUT_MS', int(1).default(10_000)),
      /** An HTTP client must send its request headers (upgrades included) within this many ms. */
      httpHeadersTimeoutMs: env('BRIDGE_HTTP_HEADERS_TIMEOUT_MS', int(1).default(10_000)),
      /** Largest MQTT keepalive a client may ask for, s (above: CONNACK 2); 0 = no limit. */
      keepaliveLimitS: env('BRIDGE_KEEPALIVE_LIMIT_S', int(0).default(1200)),
      /** MQTT over WebSocket (`/mqtt`): ping interval, ms; a peer that misses its pong is terminated. */
      mqttWsPingMs: env('BRIDGE_MQTT_WS_PING_MS', int(1).default(20_000)),
      /** Connections in total over every listener; 0 = unlimited. */
      maxConnections: env('BRIDGE_MAX_CONNECTIONS', int(0).default(50_000)),
      /** Connections from one address; 0 = unlimited. */
      maxConnectionsPerIp: env('BRIDGE_MAX_CONNECTIONS_PER_IP', int(0).default(0)),
      /** Per-device publishes per second (token bucket rate); 0 = unlimited. */
      deviceRate: env('BRIDGE_DEVICE_RATE', int(0).default(100)),
      /** Burst of that bucket. */
      deviceBurst: env('BRIDGE_DEVICE_BURST', int(1).default(200)),
      /** A subscriber whose socket does not drain within this many ms is disconnected. */
      drainTimeoutMs: env('BRIDGE_DRAIN_TIMEOUT_MS', int(1).default(5000)),
      /** Bytes queued for one MQTT subscriber past which it is disconnected. */
      subscriberBufferBytes: env('BRIDGE_SUBSCRIBER_BUFFER_BYTES', int(65_536).default(1_048_576)),
    }),
    live: z.object({
      /** Ping interval, ms; a peer missing its pong is terminated. */
      pingMs: env('BRIDGE_LIVE_PING_MS', int(1).default(20_000)),
      /** permessage-deflate when the client offers it. */
      deflate: env('BRIDGE_LIVE_DEFLATE', onOff('on')),
      /** Messages and bytes of history kept in memory for resume. */
      historyCount: env('BRIDGE_LIVE_HISTORY', int(1).default(10_000)),
      historyBytes: env('BRIDGE_LIVE_HISTORY_BYTES', int(1).default(16_777_216)),
      /** Send-buffer soft limit (conflate) and hard limit (close 1013), bytes. */
      softLimitBytes: env('BRIDGE_LIVE_SOFT_LIMIT', int(1).default(262_144)),
      hardLimitBytes: env('BRIDGE_LIVE_HARD_LIMIT', int(1).default(4_194_304)),
      /** Inbound messages per second per connection (token bucket rate; `rate_limited` beyond), and burst. */
      rate: env('BRIDGE_LIVE_RATE', int(1).default(20)),
      burst: env('BRIDGE_LIVE_BURST', int(1).default(50)),
      /** Allowed `Origin`s for /live and /live/sse, comma-separated; empty = any. */
      allowedOrigins: env('BRIDGE_ALLOWED_ORIGINS', list()),
    }),
    history: z.object({
      /**
       * How long readings are kept on disk for charts, /api/history and /live resumes (by arrival;
       * a duration); 0 = no history store.
       */
      retentionMs: env('BRIDGE_HISTORY_RETENTION', duration('24h', 60_000, true)),
      /** Disk the history store may use, bytes (journals and series files); the oldest hours go first. */
      maxBytes: env('BRIDGE_HISTORY_MAX_BYTES', int(16_777_216).default(2_147_483_648)),
      /** Its directory; unset = `<BRIDGE_DATA_DIR>/history`. */
      dir: env('BRIDGE_HISTORY_DIR', path()),
      /** Longest window one history read may span (/live `history`, /api/history). */
      maxWindowMs: env('BRIDGE_HISTORY_MAX_WINDOW', duration('31d', 1000, false)),
      /** Read windows older than the store holds back from InfluxDB (`/query`, InfluxQL) when INFLUX_URL is set. */
      influx: env('BRIDGE_HISTORY_INFLUX', onOff('on')),
    }),
    redis: redisSchema,
  })
  .superRefine((c, ctx) => {
    if (c.acl && c.auth) {
      ctx.addIssue({
        code: 'custom',
        path: ['acl'],
        message: 'applies to anonymous clients, so it needs BRIDGE_AUTH=off',
      });
    }
  });

type DeepReadonly<T> = T extends (infer E)[]
  ? readonly DeepReadonly<E>[]
  : T extends object
    ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
    : T;

/** The validated configuration. Read-only: built once at start-up. */
export type Config = DeepReadonly<z.output<typeof configSchema>>;
export type InfluxConfig = NonNullable<Config['influx']>;

/** A variable: where it sits in `Config` and its parser. */
export interface ConfigVariable {
  readonly name: string;
  readonly path: readonly string[];
  readonly schema: z.ZodType;
}

/** Walks the schema (objects, and objects under a transform) for the leaves that name a variable. */
function collect(schema: z.ZodType, path: string[], out: ConfigVariable[]): ConfigVariable[] {
  const meta = variables.get(schema);
  if (meta) {
    out.push({ name: meta.env, path, schema });
    return out;
  }
  const def = schema._zod.def;
  const inner = def.type === 'pipe' ? (def as unknown as { in: z.ZodType }).in : schema;
  if (inner instanceof z.ZodObject) {
    for (const [key, child] of Object.entries(inner.shape)) collect(child as z.ZodType, [...path, key], out);
  }
  return out;
}

/** Every variable the bridge reads, in schema order (BRIDGE_CONFIG, the file, is not among them). */
export const VARIABLES: readonly ConfigVariable[] = Object.freeze(collect(configSchema, [], []));

/** The variables the bridge reads; docker-compose and docs are checked against this list. */
export const CONFIG_VARIABLES: readonly string[] = Object.freeze([
  ...VARIABLES.map((v) => v.name),
  'BRIDGE_CONFIG',
]);

/**
 * A variable's default as documented: the value before any transform; undefined when it has none
 * (unset means off or absent).
 */
export function defaultOf(variable: ConfigVariable): unknown {
  let s: z.ZodType = variable.schema;
  for (;;) {
    const def = s._zod.def as unknown as { type: string; in?: z.ZodType; defaultValue?: unknown };
    if (def.type === 'default') return def.defaultValue;
    if (def.type === 'pipe' && def.in) s = def.in;
    else return undefined;
  }
}

/**
 * Reads, validates and freezes the configuration.
 * @throws ConfigError with one line naming the variable, its value and what is allowed.
 * @example
 * const config = loadConfig(process.env);
 */
export function loadConfig(environment: NodeJS.ProcessEnv = process.env): Config {
  const merged = { ...readConfigFile(environment['BRIDGE_CONFIG']), ...pickSet(environment) };
  const input: Record<string, unknown> = {};
  for (const v of VARIABLES) {
    let node = input;
    for (const key of v.path.slice(0, -1)) {
      node[key] ??= {};
      node = node[key] as Record<string, unknown>;
    }
    node[v.path.at(-1)!] = merged[v.name];
  }
  const parsed = configSchema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const variable = VARIABLES.find((v) => v.path.join('.') === issue.path.join('.'));
    const name = variable?.name ?? issue.path.join('.');
    throw new ConfigError(
      `invalid configuration: ${name}=${JSON.stringify(merged[name] ?? '')}: ${describeIssue(issue)}`,
    );
  }
  return deepFreeze(parsed.data) as Config;
}

/** Empty strings count as unset, as shells and compose files produce them. */
function pickSet(environment: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const { name } of VARIABLES) {
    const value = environment[name];
    if (value !== undefined && value !== '') out[name] = value;
  }
  return out;
}

function readConfigFile(file: string | undefined): Record<string, string> {
  if (!file) return {};
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ConfigError(
      `invalid configuration: BRIDGE_CONFIG=${JSON.stringify(file)}: ${(err as Error).message}`,
    );
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(
      `invalid configuration: BRIDGE_CONFIG=${JSON.stringify(file)}: expected a JSON object`,
    );
  }
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(raw)) {
    if (!VARIABLES.some((v) => v.name === key)) {
      throw new ConfigError(
        `invalid configuration: BRIDGE_CONFIG=${JSON.stringify(file)}: unknown key ${JSON.stringify(key)}`,
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

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
