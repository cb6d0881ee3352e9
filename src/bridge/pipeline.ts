/**
 * What happens to a PUBLISH that the broker's rights check let through:
 *
 *   PUBLISH ─▶ rate limit ─▶ schema registry ──unmapped──────────────────────────────▶ relay (plain broker)
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
 */
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { TokenBucket } from '../rate-limit.js';
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
  /** Disconnects a client that keeps flooding; it may come back after the ban. */
  readonly disconnect: (clientId: string, why: string) => void;
}

/** Consecutive rate-limited messages after which a device is disconnected (and banned a while). */
const FLOOD_DISCONNECT_AFTER = 100;

export class Pipeline {
  /** Set after construction: the live channel needs the broker, the broker needs the pipeline. */
  live: LiveChannel | undefined;
  private readonly buckets = new Map<string, TokenBucket>();
  private readonly floods = new Map<string, number>();

  constructor(private readonly deps: PipelineDeps) {}

  /**
   * @param clientId the publishing client (rate limits are per client)
   * @returns how the broker should route the message once acknowledged
   * @throws when the message must not be acknowledged (storage full): close the connection
   */
  async handle(clientId: string, topic: string, payload: Buffer): Promise<Outcome> {
    const { schemas, metrics, config } = this.deps;
    const mapping = schemas.match(topic);
    metrics.messages.inc({
      topic_kind: mapping?.kind === 'telemetry' || mapping?.kind === 'status' ? mapping.kind : 'other',
    });
    if (!mapping) return 'relay';
    const deviceId = wildcardLevel(mapping.filter, topic) ?? clientId;
    if (!this.allow(clientId)) {
      this.reject(deviceId, {
        ok: false,
        reason: 'rate_limited',
        detail: `over ${config.limits.deviceRate} messages/s`,
        seq: 0,
        samples: 0,
      });
      return 'discard';
    }
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

  /** Forget per-client state when a client goes. */
  forget(clientId: string): void {
    this.buckets.delete(clientId);
    this.floods.delete(clientId);
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

  private allow(clientId: string): boolean {
    const { deviceRate, deviceBurst } = this.deps.config.limits;
    if (deviceRate === 0) return true;
    let bucket = this.buckets.get(clientId);
    if (!bucket) {
      bucket = new TokenBucket(deviceRate, deviceBurst);
      this.buckets.set(clientId, bucket);
    }
    if (bucket.take()) {
      this.floods.delete(clientId);
      return true;
    }
    const floods = (this.floods.get(clientId) ?? 0) + 1;
    this.floods.set(clientId, floods);
    if (floods >= FLOOD_DISCONNECT_AFTER) {
      this.floods.delete(clientId);
      this.deps.disconnect(clientId, `flooding: ${floods} messages over the rate limit in a row`);
    }
    return false;
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
