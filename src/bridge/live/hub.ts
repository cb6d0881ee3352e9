/**
 * Room: bridge/live. The live hub: the pipeline's live sink. Every accepted reading or status change
 * becomes streamed events in the live broker (cursor, JSON built once, resume history, latest state),
 * and each event is handed to every open browser connection, whatever carries it.
 *
 * ```
 * accept ─▶ LiveBroker.publish ─▶ (cursor, JSON once, history, latest)
 *                  │ onMessage
 *                  ▼
 *       for each client: session.deliver(event)   (sync, never awaits a socket)
 * ```
 *
 * The hub needs nothing of the MQTT broker, so the pipeline can take it at construction; the /live
 * endpoints (channel.ts), which do need the broker for commands, are made after it.
 */
import type { Config } from '../../config.js';
import type { Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import type { Reading, StatusChange } from '../reading.js';
import type { Accepted, Sink } from '../sink.js';
import type { LiveBroker } from './broker.js';
import { MemoryLiveBroker } from './broker-memory.js';
import type { ClientRegistry, LiveClient } from './client.js';

export interface LiveHubDeps {
  readonly config: Pick<Config, 'live'>;
  readonly log: Logger;
  readonly metrics: Metrics;
  /** Default: the in-memory broker sized by config.live.history*. */
  readonly broker?: LiveBroker;
}

export class LiveHub implements Sink, ClientRegistry {
  readonly durable = false;
  readonly broker: LiveBroker;
  private readonly clients = new Set<LiveClient>();
  private readonly stopFanOut: () => void;
  private readonly stopGaps: () => void;
  private onEmpty: (() => void) | undefined;

  constructor(private readonly deps: LiveHubDeps) {
    const { config, metrics, log } = deps;
    this.broker =
      deps.broker ??
      new MemoryLiveBroker({
        historyCount: config.live.historyCount,
        historyBytes: config.live.historyBytes,
      });
    this.stopFanOut = this.broker.onMessage((event) => {
      if (event.kind === 'telemetry') {
        const latency = (Date.now() - event.time) / 1000;
        if (latency >= 0) metrics.e2eLatency.observe(latency);
      }
      for (const client of this.clients) {
        try {
          client.session.deliver(event);
        } catch (err) {
          log.error({ err }, 'live: delivery failed');
        }
      }
    });
    // Events lost on the way (cluster mode: a Redis outage or failover): every browser is told.
    this.stopGaps = this.broker.onGap(() => {
      for (const client of this.clients) client.session.interrupted();
    });
  }

  accept(message: Accepted): void {
    if (message.kind === 'telemetry') this.publishTelemetry(message.reading);
    else this.publishStatus(message.status);
  }

  /** Streams an accepted reading: one `telemetry` event a sample. */
  publishTelemetry(reading: Reading): void {
    for (const sample of reading.samples) {
      this.broker.publish({
        kind: 'telemetry',
        device: reading.deviceId,
        time: sample.time,
        body: { seq: reading.seq, time: sample.time, values: sample.values, labels: sample.labels },
      });
    }
  }

  publishStatus(status: StatusChange): void {
    this.broker.publish({
      kind: 'status',
      device: status.deviceId,
      time: status.time,
      body: { state: status.state, firmware: status.firmware, time: status.time },
    });
  }

  add(client: LiveClient): void {
    this.clients.add(client);
    this.deps.metrics.liveClients.inc();
  }

  remove(client: LiveClient): void {
    if (this.clients.delete(client)) this.deps.metrics.liveClients.dec();
    if (this.clients.size === 0) this.onEmpty?.();
  }

  /** Open browser connections (WebSocket and SSE). */
  get clientCount(): number {
    return this.clients.size;
  }

  /** A snapshot of the open connections (the channel's heartbeat and shutdown walk it). */
  openClients(): LiveClient[] {
    return [...this.clients];
  }

  /** Resolves once every client is gone, or after `timeoutMs`. */
  async emptied(timeoutMs: number): Promise<void> {
    if (this.clients.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => {
        this.onEmpty = resolve;
      }),
      new Promise((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    this.onEmpty = undefined;
  }

  /** After the channel closed its clients: stops the fan-out and closes the live broker. */
  async close(): Promise<void> {
    this.stopFanOut();
    this.stopGaps();
    await this.broker.close();
  }
}
