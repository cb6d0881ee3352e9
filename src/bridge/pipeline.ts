/**
 * What happens to a PUBLISH that the broker's rights check let through:
 *
 *   PUBLISH ─▶ schema registry ──unmapped───────────────────────────────────────────▶ relay (plain broker)
 *                                  │ mapped
 *                                  ▼
 *                           validate (contract §3) ──fail──▶ Rejection on devices/D/errors, counted,
 *                                  │ ok                      acknowledged, neither stored nor relayed
 *                                  ▼
 *                    line protocol ─▶ storage.append (durable) ─▶ acknowledge + relay ─▶ live fan-out
 *
 * The broker acknowledges (PUBACK) only when `handle` resolves; a rejection makes it resolve with
 * 'discard' so the message is acknowledged but routed nowhere. When storage is full `handle`
 * rejects: the connection is closed unacknowledged and the device keeps its data.
 *
 * The per-client rate limit is the broker's, before this (src/broker/publish-rate.ts): QoS 1/2 over
 * it reach `handle` later, QoS 0 over it is dropped there and reported here (`rateLimited`).
 */
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { SchemaRegistry } from '../schemas/registry.js';
import { wildcardLevel } from '../topics.js';
import { readingToLines, statusToLine } from './line-protocol.js';
import type { LiveChannel } from './live/types.js';
import type { Reading, StatusChange } from './reading.js';
import type { Storage } from './storage.js';
import { type Rejected, validate } from './validate.js';

export type Outcome = 'relay' | 'discard';

export interface PipelineDeps {
  readonly config: Config;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly schemas: SchemaRegistry;
  readonly storage: Storage | undefined;
  /** Sends a `Rejection` to `devices/<deviceId>/errors`. */
  readonly sendRejection: (
    deviceId: string,
    rejection: { seq: number; reason: string; detail: string },
  ) => void;
}

export class Pipeline {
  /** Set after construction: the live channel needs the broker, the broker needs the pipeline. */
  live: LiveChannel | undefined;

  constructor(private readonly deps: PipelineDeps) {}

  /**
   * @param clientId the publishing client (names the device when the topic does not)
   * @returns how the broker should route the message once acknowledged
   * @throws when the message must not be acknowledged (storage full): close the connection
   */
  async handle(clientId: string, topic: string, payload: Buffer): Promise<Outcome> {
    const { config } = this.deps;
    const mapping = this.match(topic);
    if (!mapping) return 'relay';
    const deviceId = wildcardLevel(mapping.filter, topic) ?? clientId;
    const result = validate(mapping, topic, payload, config.maxPayloadBytes, Date.now());
    if (!result.ok) {
      this.reject(deviceId, result);
      return 'discard';
    }
    if (result.kind === 'telemetry')
      await this.accept(readingToLines(result.reading), result.reading, undefined);
    else if (result.kind === 'status')
      await this.accept([statusToLine(result.status)], undefined, result.status);
    return 'relay';
  }

  /** Stores lines the bridge itself produces (its health figures) through the same ledger. */
  async store(lines: readonly string[]): Promise<void> {
    await this.accept(lines, undefined, undefined);
  }

  /**
   * A QoS 0 message the broker dropped over the client's rate (contract §3): counted as
   * `rate_limited` and reported on the device's errors topic. It was never decoded, so it names no
   * seq and no samples, and stays outside the loss ledger (nothing was taken responsibility for).
   */
  rateLimited(clientId: string, topic: string, detail: string): void {
    const mapping = this.match(topic);
    const deviceId = (mapping && wildcardLevel(mapping.filter, topic)) ?? clientId;
    this.reject(deviceId, { ok: false, reason: 'rate_limited', detail, seq: 0, samples: 0 });
  }

  /** The topic's schema mapping, counting the message by its kind. */
  private match(topic: string) {
    const mapping = this.deps.schemas.match(topic);
    this.deps.metrics.messages.inc({
      topic_kind: mapping?.kind === 'telemetry' || mapping?.kind === 'status' ? mapping.kind : 'other',
    });
    return mapping;
  }

  private async accept(
    lines: readonly string[],
    reading: Reading | undefined,
    status: StatusChange | undefined,
  ) {
    const { storage, metrics } = this.deps;
    if (storage) {
      await storage.append(lines);
      metrics.samplesReceived.inc(lines.length);
    }
    if (reading) this.live?.publishTelemetry(reading);
    if (status) this.live?.publishStatus(status);
  }

  private reject(deviceId: string, r: Rejected): void {
    const { metrics, log } = this.deps;
    metrics.rejected.inc({ reason: r.reason });
    if (this.deps.storage && r.samples > 0) {
      metrics.samplesReceived.inc(r.samples);
      metrics.samplesRejected.inc(r.samples);
    }
    log.debug({ deviceId, reason: r.reason, detail: r.detail, seq: r.seq }, 'message rejected');
    this.deps.sendRejection(deviceId, { seq: r.seq, reason: r.reason, detail: r.detail });
  }
}
