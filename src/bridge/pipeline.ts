/**
 * Room: bridge. What happens to a PUBLISH that the broker's rights check let through (the broker's
 * ingest port, src/broker/ingest-port.ts):
 *
 *   PUBLISH ─▶ schema registry ──unmapped──────────────────────────────────────────────▶ relay
 *                    │ mapped
 *                    ▼
 *             validate (contract §3) ──fail──▶ discard, with a Rejection for devices/D/errors,
 *                    │ ok                      counted (neither stored nor relayed)
 *                    ▼
 *     durable sinks (storage: spool) ─▶ relay (the PUBACK goes now) ─▶ other sinks (live fan-out)
 *
 * A durable sink that refuses (storage full) refuses the message: the broker closes the connection
 * unacknowledged and the device keeps its data. The per-client publish rate is the broker's, before
 * this (src/broker/publish-rate.ts): QoS 1/2 over it reach `handle` later, QoS 0 over it is dropped
 * there and reported here (`dropped`).
 */
import type { IngestPort, IngestVerdict, Reply } from '../broker/ingest-port.js';
import { DISCARD, RELAY } from '../broker/ingest-port.js';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { ResolvedMapping, SchemaRegistry } from '../schemas/registry.js';
import { wildcardLevel } from '../topics.js';
import type { Accepted, Sink } from './sink.js';
import { type Rejected, validate } from './validate.js';

export interface PipelineDeps {
  readonly config: Pick<Config, 'maxPayloadBytes'>;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly schemas: SchemaRegistry;
  /** Where accepted messages go: the durable ones first (the PUBACK waits for them), then the others. */
  readonly sinks: readonly Sink[];
}

export class Pipeline implements IngestPort {
  private readonly durable: readonly Sink[];
  private readonly others: readonly Sink[];
  private readonly rejection;
  /** The newest durable promise handed out, with the messages waiting for it and their verdict. */
  private waiting:
    | { safe: Promise<unknown>; messages: Accepted[]; verdict: Promise<IngestVerdict> }
    | undefined;

  constructor(private readonly deps: PipelineDeps) {
    this.durable = deps.sinks.filter((s) => s.durable);
    this.others = deps.sinks.filter((s) => !s.durable);
    this.rejection = deps.schemas.type('telemetry.v1.Rejection');
  }

  ingests(topic: string): boolean {
    return this.deps.schemas.match(topic) !== undefined;
  }

  handle(clientId: string, topic: string, payload: Buffer): IngestVerdict | Promise<IngestVerdict> {
    const mapping = this.match(topic);
    if (!mapping) return RELAY;
    const result = validate(mapping, topic, payload, this.deps.config.maxPayloadBytes, Date.now());
    if (!result.ok) return this.reject(deviceOf(mapping, topic, clientId), result);
    if (result.kind === 'opaque') return RELAY;
    // The validation's result is an `Accepted` as it is (kind and reading or status): no copy.
    return this.accept(result);
  }

  dropped(clientId: string, topic: string, detail: string): Reply | undefined {
    const mapping = this.match(topic);
    const deviceId = mapping ? deviceOf(mapping, topic, clientId) : clientId;
    // Never decoded: no seq, no samples, outside the loss ledger (nothing was taken responsibility for).
    const verdict = this.reject(deviceId, { ok: false, reason: 'rate_limited', detail, seq: 0, samples: 0 });
    return verdict.route === 'discard' ? verdict.reply : undefined;
  }

  /** The topic's schema mapping, counting the message by its kind. */
  private match(topic: string): ResolvedMapping | undefined {
    const mapping = this.deps.schemas.match(topic);
    this.deps.metrics.countMessage(
      mapping?.kind === 'telemetry' || mapping?.kind === 'status' ? mapping.kind : 'other',
    );
    return mapping;
  }

  private accept(message: Accepted): IngestVerdict | Promise<IngestVerdict> {
    if (this.durable.length === 0) {
      this.deliver(message);
      return RELAY;
    }
    const safe =
      this.durable.length === 1
        ? this.durable[0]!.accept(message)
        : Promise.all(this.durable.map((s) => s.accept(message)));
    if (!safe) {
      this.deliver(message);
      return RELAY;
    }
    // Messages made safe by the same write share the durable sink's promise (the spool's group
    // commit): they share one verdict too, which hands them to the other sinks in order once the
    // write is durable. One promise per group, not per message (issue 14).
    if (safe !== this.waiting?.safe) {
      const messages: Accepted[] = [];
      const verdict = safe.then(() => {
        // Closed: a message that gets this same (settled) promise later starts a batch of its own.
        if (this.waiting?.messages === messages) this.waiting = undefined;
        for (const m of messages) this.deliver(m);
        return RELAY;
      });
      this.waiting = { safe, messages, verdict };
    }
    this.waiting.messages.push(message);
    return this.waiting.verdict;
  }

  /** Non-durable sinks, once the message is safe. */
  private deliver(message: Accepted): void {
    for (const sink of this.others) {
      try {
        sink.accept(message);
      } catch (err) {
        this.deps.log.error({ err }, 'a sink failed to take an accepted message');
      }
    }
  }

  private reject(deviceId: string, r: Rejected): IngestVerdict {
    const { metrics, log } = this.deps;
    metrics.rejected.inc({ reason: r.reason });
    if (r.samples > 0) for (const sink of this.deps.sinks) sink.rejected?.(r.samples);
    log.debug({ deviceId, reason: r.reason, detail: r.detail, seq: r.seq }, 'message rejected');
    const payload = this.rejection.encode({ seq: r.seq, reason: r.reason, detail: r.detail }).finish();
    return deviceId
      ? { route: 'discard', reply: { topic: `devices/${deviceId}/errors`, payload: Buffer.from(payload) } }
      : DISCARD;
  }
}

/** The device a message is about: the topic's `+` level, else the publishing client. */
function deviceOf(mapping: ResolvedMapping, topic: string, clientId: string): string {
  return wildcardLevel(mapping.filter, topic) ?? clientId;
}
