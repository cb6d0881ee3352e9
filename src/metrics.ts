/**
 * Room: shared. The Prometheus metrics of one bridge instance (prom-client). Created per instance, so several
 * bridges in one test process keep separate counts. Names and labels are part of the contract
 * (README "Metrics"); docs/operations.md says what each means.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

export type Metrics = ReturnType<typeof createMetrics>;

/** The `topic_kind` label of bridge_messages_total. */
export type TopicKind = 'telemetry' | 'status' | 'other';

export function createMetrics(options: { defaultMetrics?: boolean } = {}) {
  const registry = new Registry();
  if (options.defaultMetrics !== false) collectDefaultMetrics({ register: registry });
  const registers = [registry];
  // Counted per message as plain numbers and added to the counter whenever it is read (a scrape,
  // the self-metrics): prom-client's inc() hashes and checks its labels on every call, about 1 % of
  // the pipeline's CPU per message.
  const messagesPending: Record<TopicKind, number> = { telemetry: 0, status: 0, other: 0 };
  return {
    registry,
    /** One PUBLISH received, by topic kind (bridge_messages_total). */
    countMessage(kind: TopicKind): void {
      messagesPending[kind]++;
    },
    connections: new Gauge({
      name: 'bridge_connections',
      help: 'Open MQTT connections by listener (tcp, tls, ws).',
      labelNames: ['listener'] as const,
      registers,
    }),
    messages: new Counter({
      name: 'bridge_messages_total',
      help: 'MQTT PUBLISH packets received from clients, by topic kind (telemetry, status, other).',
      labelNames: ['topic_kind'] as const,
      registers,
      collect() {
        for (const kind of Object.keys(messagesPending) as TopicKind[]) {
          const n = messagesPending[kind];
          if (n === 0) continue;
          messagesPending[kind] = 0;
          this.inc({ topic_kind: kind }, n);
        }
      },
    }),
    rejected: new Counter({
      name: 'bridge_rejected_total',
      help: 'Messages refused by validation, by reason.',
      labelNames: ['reason'] as const,
      registers,
    }),
    publishesDelayed: new Counter({
      name: 'bridge_publishes_delayed_total',
      help: 'QoS 1/2 PUBLISH packets held back by the per-client rate limit until their token was due (backpressure; none is dropped).',
      registers,
    }),
    samplesReceived: new Counter({
      name: 'bridge_samples_received_total',
      help: 'Points the bridge took responsibility for: accepted samples and status changes (acknowledged and spooled), rejected samples, and points recovered from the spool at start-up.',
      registers,
    }),
    samplesRejected: new Counter({
      name: 'bridge_samples_rejected_total',
      help: 'Samples in messages refused by validation.',
      registers,
    }),
    pointsWritten: new Counter({
      name: 'bridge_influx_points_written_total',
      help: 'Points confirmed written by InfluxDB.',
      registers,
    }),
    deadLettered: new Counter({
      name: 'bridge_dead_lettered_points_total',
      help: 'Points InfluxDB refused for their content, kept in the dead-letter file.',
      registers,
    }),
    writeSeconds: new Histogram({
      name: 'bridge_influx_write_seconds',
      help: 'Duration of one InfluxDB write request.',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    writeFailures: new Counter({
      name: 'bridge_influx_write_failures_total',
      help: 'Failed InfluxDB write requests by class (retry, rejected).',
      labelNames: ['class'] as const,
      registers,
    }),
    backlog: new Gauge({
      name: 'bridge_backlog_points',
      help: 'Points accepted but not yet confirmed by InfluxDB (in the spool or in flight).',
      registers,
    }),
    spoolBytes: new Gauge({
      name: 'bridge_spool_bytes',
      help: 'Bytes the durable spool uses on disk.',
      registers,
    }),
    // The loss ledger: received = written + rejected + dead-lettered + backlog, at every moment.
    // Refused points are outside it: they were never acknowledged, the device still has them.
    samplesRefused: new Counter({
      name: 'bridge_samples_refused_total',
      help: 'Points the spool refused (disk limit reached or closing): not acknowledged, the device resends them.',
      registers,
    }),
    spoolRecovered: new Counter({
      name: 'bridge_spool_recovered_points_total',
      help: 'Points found unconfirmed in the spool at start-up (accepted by an earlier run); also counted as received.',
      registers,
    }),
    subscribersDropped: new Counter({
      name: 'bridge_subscribers_dropped_total',
      help: 'MQTT subscribers disconnected for reading too slowly, by reason: buffer (more than BRIDGE_SUBSCRIBER_BUFFER_BYTES queued), drain_timeout (socket not drained within BRIDGE_DRAIN_TIMEOUT_MS).',
      labelNames: ['reason'] as const,
      registers,
    }),
    liveClients: new Gauge({
      name: 'bridge_live_clients',
      help: 'Open browser connections on /live and /live/sse.',
      registers,
    }),
    historyBytes: new Gauge({
      name: 'bridge_history_bytes',
      help: 'Bytes the history store uses on disk (journals and series files).',
      registers,
    }),
    historyEvents: new Gauge({
      name: 'bridge_history_events',
      help: 'Readings and status changes the history store holds.',
      registers,
    }),
    historyDropped: new Counter({
      name: 'bridge_history_dropped_total',
      help: 'Streamed events left out of history (the disk could not keep up, or the store failed); a resume across them gets gap.',
      registers,
    }),
    e2eLatency: new Histogram({
      name: 'bridge_e2e_latency_seconds',
      help: 'From the sample time set by the device to fan-out to live clients.',
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
  };
}
