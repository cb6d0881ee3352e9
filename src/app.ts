/**
 * Room: composition. The composition root: config → storage, history store and live hub (the sinks)
 * → pipeline → broker → /live endpoints → listeners, each given what it needs at construction;
 * closed in reverse.
 * `main.ts` runs one of these per process; tests start several in one process.
 */
import type { Server } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { openAuth } from './auth/open-auth.js';
import type { Registry } from './auth/registry.js';
import type { TokenService } from './auth/tokens.js';
import { DEFAULT_HISTORY_LIMITS } from './bridge/history/engine.js';
import { InfluxHistory } from './bridge/history/influx-query.js';
import { HistoryReader } from './bridge/history/reader.js';
import { HistoryStore } from './bridge/history/store.js';
import { MemoryLiveBroker } from './bridge/live/broker-memory.js';
import { HistoryFeed } from './bridge/live/history-feed.js';
import { LiveHistory } from './bridge/live/history-source.js';
import { createLiveChannel, LiveHub } from './bridge/live/index.js';
import type { LiveChannel } from './bridge/live/types.js';
import { Pipeline } from './bridge/pipeline.js';
import { openStorage } from './bridge/storage/open-storage.js';
import { SelfMetrics } from './bridge/storage/self-metrics.js';
import { type Broker, createBroker } from './broker/broker.js';
import { ConnectionLimiter } from './broker/listeners/connection-limiter.js';
import { type HttpRoutes, startHttpListener } from './broker/listeners/http.js';
import { boundPort, closeServer } from './broker/listeners/listen.js';
import { serveDashboard } from './broker/listeners/static.js';
import { startMqttListener } from './broker/listeners/tcp.js';
import { type ClusterMode, liveStreamIdentity, openClusterMode } from './cluster-mode.js';
import type { Config } from './config.js';
import { createLogger, type Logger } from './log.js';
import { createMetrics, type Metrics } from './metrics.js';
import { opsRoutes } from './ops.js';
import { loadSchemas } from './schemas/registry.js';

export interface BridgeHandle {
  readonly config: Config;
  /** The bound ports (differ from the config when it asked for port 0). */
  readonly ports: { readonly mqtt: number; readonly mqtts?: number; readonly http: number };
  readonly metrics: Metrics;
  /** Devices and users: the data directory's, or the cluster's in Redis (REDIS_URL). */
  readonly registry: Registry;
  /** Browser tokens, signed with the data directory's key or the cluster's. */
  readonly tokens: TokenService;
  readonly broker: Broker;
  readonly live: LiveChannel;
  /** The live channel's hub: what accepted messages stream through to browsers. */
  readonly hub: LiveHub;
  /** The history store (undefined with BRIDGE_HISTORY_RETENTION=0). */
  readonly history: HistoryStore | undefined;
  /** Graceful stop, as on SIGTERM: stop accepting, close peers, flush storage within the grace period. */
  close(): Promise<void>;
}

export interface StartOptions {
  readonly log?: Logger;
}

/** How often a warning is logged while BRIDGE_AUTH=off. */
const AUTH_OFF_WARNING_MS = 60_000;
/** How often the history store's figures are read into the metrics. */
const HISTORY_METRICS_MS = 5000;

/**
 * Opens the history store (issue 15) in its key space: the memory broker's cursors (this process),
 * or the Redis stream's IDs (cluster mode). Undefined when BRIDGE_HISTORY_RETENTION=0.
 */
async function openHistory(config: Config, log: Logger): Promise<HistoryStore | undefined> {
  const h = config.history;
  if (h.retentionMs === 0) {
    log.info('history off (BRIDGE_HISTORY_RETENTION=0)');
    return undefined;
  }
  const dir = h.dir ?? join(config.dataDir, 'history');
  const store = await HistoryStore.open({
    dir,
    keys: config.redis
      ? { type: 'external', stream: liveStreamIdentity(config.redis.url) }
      : { type: 'local' },
    retentionMs: h.retentionMs,
    maxBytes: h.maxBytes,
    limits: { maxWindowMs: h.maxWindowMs },
    log,
  });
  log.info(
    { dir, retentionMs: h.retentionMs, partitions: store.info.partitions, events: store.info.events },
    'history store open',
  );
  return store;
}

/**
 * Starts a bridge.
 * @example
 * const bridge = await startBridge(loadConfig(process.env));
 * process.once('SIGTERM', () => bridge.close());
 */
export async function startBridge(config: Config, options: StartOptions = {}): Promise<BridgeHandle> {
  const log = options.log ?? createLogger(config.logLevel);
  const metrics = createMetrics();
  const schemas = loadSchemas(config.schemas, config.schemaDir);
  const storage = await openStorage({ config, log, metrics }); // names its own module in the log
  if (!storage) log.info('storage off: INFLUX_URL is not set; readings are streamed live but not stored');
  let history: HistoryStore | undefined;
  try {
    history = await openHistory(config, log.child({ module: 'history' }));
  } catch (err) {
    await storage?.close(0);
    throw err;
  }
  // Fed from the live broker's stream: every event it streams (in cluster mode, every event this
  // instance's reader reads), by its fields.
  const feed = history ? new HistoryFeed(history) : undefined;
  // Cluster mode (REDIS_URL): relay, MQTT sessions, the live stream, devices, users and tokens on
  // Redis; the spool and the history store stay local.
  let cluster: ClusterMode | undefined;
  let auth: Awaited<ReturnType<typeof openAuth>>;
  try {
    if (config.redis)
      cluster = await openClusterMode(config.redis, config.live, log.child({ module: 'redis' }), feed);
    auth = await openAuth({
      dataDir: config.dataDir,
      ...(cluster
        ? {
            redis: {
              target: cluster.target,
              health: cluster.health,
              watch: true,
              log: log.child({ module: 'auth' }),
            },
          }
        : {}),
    });
  } catch (err) {
    await cluster?.close();
    await history?.close();
    await storage?.close(0);
    throw err;
  }
  const { registry, tokens } = auth;
  // The memory broker continues the store's cursors (epoch, positions) across restarts.
  const liveBroker =
    cluster?.live ??
    new MemoryLiveBroker({
      historyCount: config.live.historyCount,
      historyBytes: config.live.historyBytes,
      ...(history ? { epoch: history.info.epoch, nextPosition: history.info.nextPosition } : {}),
    });
  if (feed && !cluster) liveBroker.onMessage(feed.append);
  const influxHistory =
    config.influx && config.history.influx
      ? new InfluxHistory(config.influx, { maxRawRows: DEFAULT_HISTORY_LIMITS.maxRawRows })
      : undefined;
  const liveHistory = new LiveHistory(
    new HistoryReader({
      store: history,
      influx: influxHistory,
      limits: { maxWindowMs: config.history.maxWindowMs },
      log: log.child({ module: 'history' }),
    }),
    config.history.maxWindowMs,
  );

  const timers: NodeJS.Timeout[] = [];
  if (!config.auth) {
    const topics = config.acl ? `the topics BRIDGE_ACL_FILE=${config.acl.file} allows` : 'every topic';
    const warn = () =>
      log.warn(`BRIDGE_AUTH=off: every client may connect and use ${topics}; never in production`);
    warn();
    timers.push(setInterval(warn, AUTH_OFF_WARNING_MS).unref());
  }

  // The stages, each given what it needs at construction (docs/architecture.md):
  // live hub (a sink) → pipeline (its sinks) → broker (the pipeline as its ingest port) → /live endpoints.
  const hub = new LiveHub({ config, log: log.child({ module: 'live' }), metrics, broker: liveBroker });
  const pipeline = new Pipeline({
    config,
    log: log.child({ module: 'pipeline' }),
    metrics,
    schemas,
    sinks: storage ? [storage, hub] : [hub],
  });
  const broker = await createBroker({
    config,
    log: log.child({ module: 'broker' }),
    metrics,
    registry,
    ingest: pipeline,
    ...(cluster ? { cluster: cluster.aedes } : {}),
  });
  const commandType = schemas.type('telemetry.v1.Command');
  const live = createLiveChannel({
    config,
    log: log.child({ module: 'live' }),
    tokens,
    hub,
    history: liveHistory,
    sendCommand: async (deviceId, command) => {
      broker.publish(`devices/${deviceId}/commands`, Buffer.from(commandType.encode(command).finish()), 1);
    },
  });

  if (storage && config.influx && config.influx.selfMetricsMs > 0) {
    const self = new SelfMetrics(metrics, { instance: hostname() });
    timers.push(
      setInterval(() => {
        self
          .lines()
          .then((lines) => storage.append(lines))
          .catch((err: Error) => log.warn({ err: err.message }, 'self metrics not stored'));
      }, config.influx.selfMetricsMs).unref(),
    );
  }

  if (history) {
    const store = history;
    let dropped = 0;
    timers.push(
      setInterval(() => {
        store.stats().then(
          (s) => {
            metrics.historyBytes.set(s.bytes);
            metrics.historyEvents.set(s.events);
            metrics.historyDropped.inc(s.dropped - dropped);
            dropped = s.dropped;
          },
          () => {}, // a failed store logged why
        );
      }, HISTORY_METRICS_MS).unref(),
    );
  }

  let listening = false;
  const limiter = new ConnectionLimiter(config.limits.maxConnections, config.limits.maxConnectionsPerIp);
  const routes: HttpRoutes = {
    request: [
      opsRoutes(metrics, () => {
        if (!listening) return { ok: false, reason: 'listeners are starting or stopping' };
        const r = cluster?.readiness();
        if (r && !r.ok) return { ok: false, reason: r.reason ?? 'redis unavailable' };
        const s = storage?.readiness();
        return s && !s.ok ? { ok: false, reason: s.reason ?? 'storage not ready' } : { ok: true };
      }),
      (req, res) => live.handleRequest(req, res),
      serveDashboard,
    ],
    upgrade: new Map([['/live', (req, socket, head) => live.handleUpgrade(req, socket, head)]]),
  };
  const servers: Server[] = [];
  try {
    servers.push(await startMqttListener('tcp', config, broker, limiter));
    if (config.tls) servers.push(await startMqttListener('tls', config, broker, limiter));
    servers.push(await startHttpListener(config, broker, limiter, routes));
  } catch (err) {
    await Promise.all(servers.map(closeServer));
    await live.close();
    await broker.close();
    await hub.close();
    await auth.close();
    await cluster?.close();
    await history?.close();
    await storage?.close(0);
    throw err;
  }
  listening = true;
  const [tcpServer, second, third] = servers;
  const httpServer = (third ?? second)!;
  const ports = {
    mqtt: boundPort(tcpServer!),
    ...(third ? { mqtts: boundPort(second!) } : {}),
    http: boundPort(httpServer),
  };
  log.info({ ports, host: config.host, tls: Boolean(config.tls), auth: config.auth }, 'telebridge listening');

  let closing: Promise<void> | undefined;
  return {
    config,
    ports,
    metrics,
    registry,
    tokens,
    broker,
    live,
    hub,
    history,
    close() {
      closing ??= (async () => {
        listening = false;
        for (const t of timers) clearInterval(t);
        // Stop accepting first, then close peers (devices get their socket closed after what they
        // were sent), then give storage its grace period.
        const stopped = Promise.all(servers.map(closeServer));
        await live.close();
        await broker.close();
        await hub.close();
        await auth.close();
        await cluster?.close();
        // After the live channel and the stream's reader: nothing appends any more.
        await history?.close();
        for (const s of servers) (s as Server & { closeAllConnections?: () => void }).closeAllConnections?.();
        await stopped;
        await storage?.close(config.shutdownGraceMs);
        log.info('telebridge stopped');
      })();
      return closing;
    },
  };
}
