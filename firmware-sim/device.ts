/**
 * One simulated device that behaves like good firmware on a bad network (contract §3).
 *
 * - MQTT 3.1.1 (protocolVersion 4) over mqtt://, mqtts://, ws://, wss:// (ws path `/mqtt`; mqtt.js
 *   offers the `mqtt` subprotocol); username = client id = device id, password = secret, clean session.
 * - On connect: subscribes to `devices/<id>/commands` and `devices/<id>/errors`, then publishes a
 *   retained ONLINE `DeviceStatus`; its will is the retained OFFLINE form.
 * - Every `intervalMs` a sample is taken from the sensor models and appended to a bounded ring
 *   (`bufferCapacity` samples; when full the oldest is dropped and counted). Sampling goes on offline.
 * - The sender forms `Telemetry` messages from the ring, oldest first: one sample each while the ring
 *   is short, up to `batchSize` (≤ 1000) when replaying a backlog. A message gets its seq when it is
 *   formed (+1 a message, never reused, kept across reconnects) and is forgotten only after its PUBACK;
 *   a message sent but not acknowledged when the connection drops is re-sent on the next connection
 *   with the SAME seq and samples, so the accepted seqs have no gaps (a duplicate of an already
 *   stored message is harmless: storage dedupes by series and timestamp, contract §4). At most
 *   `maxInflight` messages are unacknowledged at once, which bounds memory besides the ring.
 * - If the bridge withholds PUBACKs (its spool is full) the data stays here; after `ackTimeoutMs`
 *   without an acknowledgement the device reconnects, and re-sends.
 * - mqtt.js's own reconnect is off (reconnectPeriod 0): reconnection uses `Backoff` (full jitter).
 *
 * Events: 'online', 'offline' (error?), 'rejection' (WireRejection), 'command' (WireCommand),
 * 'acked' (seq, samples), 'fault' (FaultMessage).
 */
import { EventEmitter } from 'node:events';
import { readFile, rename, writeFile } from 'node:fs/promises';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { Logger } from '../src/log.js';
import { Backoff, type BackoffOptions } from './backoff.js';
import {
  type Codec,
  codec,
  STATE_OFFLINE,
  STATE_ONLINE,
  type WireCommand,
  type WireSample,
} from './codec.js';
import { buildFault, FAULT_KINDS, FAULT_SEQ_BASE, type FaultKind, type FaultOptions } from './faults.js';
import { LatencyHistogram } from './latency.js';
import { Ring } from './ring.js';
import { SensorModel } from './sensors.js';

export const DEFAULT_FIRMWARE = 'telebridge-sim/1.0.0';

export interface DeviceOptions {
  /** Device id = MQTT username = client id. */
  readonly id: string;
  /** Device secret (MQTT password); omit when the bridge runs with BRIDGE_AUTH=off. */
  readonly secret?: string;
  /** Broker URL: mqtt://host:1883, mqtts://host:8883, ws://host:8080/mqtt, wss://host:8443/mqtt. */
  readonly url: string;
  /** Sampling interval, ms. Default 1000. Changed at run time by the `set_interval` command. */
  readonly intervalMs?: number;
  readonly firmware?: string;
  /** Offline ring capacity, samples. Default 10 000. */
  readonly bufferCapacity?: number;
  /** Most samples in one replay message (1..1000). Default 100. */
  readonly batchSize?: number;
  /** Largest Telemetry payload formed, bytes (the bridge's BRIDGE_MAX_PAYLOAD_BYTES). Default 16 384. */
  readonly maxPayloadBytes?: number;
  /** Most unacknowledged messages at once. Default 8. */
  readonly maxInflight?: number;
  /** No PUBACK for this long → reconnect and re-send, ms. Default 30 000. */
  readonly ackTimeoutMs?: number;
  readonly backoff?: BackoffOptions;
  /** MQTT keepalive, s. Default 60. */
  readonly keepaliveS?: number;
  /** CONNACK must arrive within this, ms. Default 10 000. */
  readonly connectTimeoutMs?: number;
  /** TLS (mqtts, wss): CA to trust (PEM), and whether to verify the server. */
  readonly ca?: string | Buffer;
  readonly rejectUnauthorized?: boolean;
  readonly faults?: FaultOptions;
  /** Labels on every sample. */
  readonly labels?: Record<string, string>;
  /** JSON file keeping seq/counter/battery across process restarts; optional. */
  readonly stateFile?: string;
  /** Source of randomness for faults (backoff has its own in `backoff.random`). */
  readonly random?: () => number;
  readonly log?: Logger;
}

/** Counters of one device (fleets add them up). */
export interface DeviceStats {
  connects: number;
  /** Connects after the first. */
  reconnects: number;
  disconnects: number;
  /** Attempts that never reached CONNACK 0 (refused, timed out, connection errors). */
  connectFailures: number;
  authFailures: number;
  samples: number;
  /** Telemetry messages of the normal stream published (re-sends included). */
  sent: number;
  resent: number;
  acked: number;
  samplesAcked: number;
  /** Samples dropped because the offline ring was full. */
  dropped: number;
  rejected: number;
  /** Rejections of normal-stream seqs (should be 0). */
  unexpectedRejections: number;
  faultsSent: number;
  commands: number;
  /** Samples waiting (ring + unacknowledged messages). */
  buffered: number;
  online: number;
}

export function emptyStats(): DeviceStats {
  return {
    connects: 0,
    reconnects: 0,
    disconnects: 0,
    connectFailures: 0,
    authFailures: 0,
    samples: 0,
    sent: 0,
    resent: 0,
    acked: 0,
    samplesAcked: 0,
    dropped: 0,
    rejected: 0,
    unexpectedRejections: 0,
    faultsSent: 0,
    commands: 0,
    buffered: 0,
    online: 0,
  };
}

interface Outgoing {
  readonly seq: number;
  readonly samples: WireSample[];
  readonly payload: Buffer;
  /** Connection generation it was last published on; undefined = waiting to be (re)sent. */
  gen: number | undefined;
  sentAt: number;
  sends: number;
}

interface PersistedState {
  seq: number;
  faultSeq: number;
  counter: number;
  battery: number;
}

type ConnState = 'idle' | 'connecting' | 'online' | 'waiting' | 'stopped';

export class SimDevice extends EventEmitter {
  readonly id: string;
  readonly stats: DeviceStats = emptyStats();
  readonly latency = new LatencyHistogram();
  readonly rejectionsByReason: Record<string, number> = {};
  readonly faultsByKind: Partial<Record<FaultKind, number>> = {};
  readonly commandsByName: Record<string, number> = {};

  private readonly opts: DeviceOptions;
  private readonly codec: Codec;
  private readonly backoff: Backoff;
  private readonly ring: Ring<WireSample>;
  private readonly unacked: Outgoing[] = [];
  private readonly sensors: SensorModel;
  private readonly random: () => number;
  private readonly statusTopic: string;
  private readonly telemetryTopic: string;
  private interval: number;
  private state: ConnState = 'idle';
  private client: MqttClient | undefined;
  private gen = 0;
  private seq = 0;
  private faultSeq = FAULT_SEQ_BASE;
  private sampleTimer: NodeJS.Timeout | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private everConnected = false;
  private lastSaved = 0;
  private sampling = true;

  constructor(options: DeviceOptions) {
    super();
    this.opts = options;
    this.id = options.id;
    this.codec = codec();
    this.backoff = new Backoff(options.backoff);
    this.ring = new Ring(options.bufferCapacity ?? 10_000);
    this.sensors = new SensorModel(options.id);
    this.random = options.random ?? Math.random;
    this.interval = options.intervalMs ?? 1000;
    this.statusTopic = `devices/${options.id}/status`;
    this.telemetryTopic = `devices/${options.id}/telemetry`;
    const batch = options.batchSize ?? 100;
    if (!(batch >= 1 && batch <= 1000)) throw new RangeError('batchSize must be 1..1000 (contract §3)');
  }

  /** The seq of the last message formed (the next normal message gets seq + 1). */
  get lastSeq(): number {
    return this.seq;
  }

  get intervalMs(): number {
    return this.interval;
  }

  get connState(): ConnState {
    return this.state;
  }

  /** Loads persisted state (if any), starts sampling, connects. */
  async start(): Promise<void> {
    if (this.state !== 'idle') return;
    if (this.opts.stateFile) await this.loadState(this.opts.stateFile);
    this.scheduleSample();
    this.connect();
  }

  /**
   * Stops sampling and disconnects cleanly (an OFFLINE status first, so the will is not needed).
   * What is still buffered is lost, like RAM on a device that is switched off; seq is saved.
   */
  async stop(options: { drainMs?: number } = {}): Promise<void> {
    if (this.state === 'stopped') return;
    if (options.drainMs) await this.drain(options.drainMs);
    const wasOnline = this.state === 'online';
    this.state = 'stopped';
    clearTimeout(this.sampleTimer);
    clearTimeout(this.reconnectTimer);
    const client = this.client;
    this.client = undefined;
    if (client) {
      if (wasOnline) await this.publishStatus(client, STATE_OFFLINE).catch(() => {});
      await new Promise<void>((resolve) => client.end(!wasOnline, {}, () => resolve()));
    }
    this.stats.online = 0;
    if (this.opts.stateFile) await this.saveState(this.opts.stateFile).catch(() => {});
  }

  /**
   * Stops sampling and waits (at most `timeoutMs`) until everything buffered is acknowledged.
   * Resolves true when drained. Sampling does not resume.
   */
  async drain(timeoutMs: number): Promise<boolean> {
    clearTimeout(this.sampleTimer);
    this.sampling = false;
    const deadline = Date.now() + timeoutMs;
    while (this.stats.buffered > 0 && Date.now() < deadline && this.state !== 'stopped') {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.off('acked', done);
          resolve();
        };
        const timer = setTimeout(done, Math.min(250, Math.max(1, deadline - Date.now())));
        this.once('acked', done);
      });
    }
    return this.stats.buffered === 0;
  }

  /** Simulates a network failure: the socket is destroyed (no DISCONNECT, so the will fires). */
  dropConnection(): void {
    this.client?.stream.destroy();
  }

  // ---- sampling -------------------------------------------------------------------------------

  private scheduleSample(): void {
    this.sampleTimer = setTimeout(() => {
      this.takeSample();
      if (this.state !== 'stopped' && this.sampling) this.scheduleSample();
    }, this.interval);
  }

  private takeSample(): void {
    const now = Date.now();
    const sample: WireSample = {
      time_unix_ms: now,
      values: { ...this.sensors.sample(now) },
      ...(this.opts.labels ? { labels: { ...this.opts.labels } } : {}),
    };
    this.stats.samples++;
    if (this.ring.push(sample) !== undefined) this.stats.dropped++;
    this.injectFaults(sample);
    this.checkAckTimeout(now);
    this.pump();
    this.updateBuffered();
    if (this.opts.stateFile && now - this.lastSaved > 5000) {
      this.lastSaved = now;
      void this.saveState(this.opts.stateFile).catch((err: Error) =>
        this.opts.log?.warn({ device: this.id, err: err.message }, 'state file not saved'),
      );
    }
  }

  private injectFaults(sample: WireSample): void {
    const rates = this.opts.faults?.rates;
    if (!rates || this.state !== 'online' || !this.client) return;
    for (const kind of FAULT_KINDS) {
      const rate = rates[kind] ?? 0;
      if (rate <= 0 || this.random() >= rate) continue;
      const messages = buildFault(
        kind,
        this.id,
        sample,
        () => ++this.faultSeq,
        this.codec.telemetry,
        this.opts.faults,
      );
      for (const m of messages) {
        // Fire and forget: faulty messages are never buffered or re-sent. A burst goes at QoS 0: only
        // QoS 0 over the rate is dropped (`rate_limited`); QoS 1 would just be slowed (contract §3).
        this.client.publish(this.telemetryTopic, m.payload, { qos: m.kind === 'burst' ? 0 : 1 }, () => {});
        this.stats.faultsSent++;
        this.faultsByKind[kind] = (this.faultsByKind[kind] ?? 0) + 1;
        this.emit('fault', m);
      }
    }
  }

  // ---- sending --------------------------------------------------------------------------------

  /** Publishes what may be published now: re-sends first (lowest seqs), then new messages. */
  private pump(): void {
    const client = this.client;
    if (this.state !== 'online' || !client) return;
    let inflight = this.unacked.filter((m) => m.gen === this.gen).length;
    const max = this.opts.maxInflight ?? 8;
    for (const m of this.unacked) {
      if (inflight >= max) return;
      if (m.gen === this.gen) continue;
      this.stats.resent++;
      this.send(client, m);
      inflight++;
    }
    const batch = this.opts.batchSize ?? 100;
    const maxPayload = this.opts.maxPayloadBytes ?? 16_384;
    while (inflight < max && this.ring.size > 0) {
      const samples = this.ring.take(batch);
      const seq = ++this.seq;
      let payload = this.codec.telemetry(this.id, seq, samples);
      // Never exceed the bridge's payload limit: halve the batch, the rest goes back to the front.
      while (payload.length > maxPayload && samples.length > 1) {
        this.ring.unshift(samples.splice(Math.ceil(samples.length / 2)));
        payload = this.codec.telemetry(this.id, seq, samples);
      }
      const m: Outgoing = {
        seq,
        samples,
        payload,
        gen: undefined,
        sentAt: 0,
        sends: 0,
      };
      this.unacked.push(m);
      this.send(client, m);
      inflight++;
    }
  }

  private send(client: MqttClient, m: Outgoing): void {
    const gen = this.gen;
    m.gen = gen;
    m.sentAt = performance.now();
    m.sends++;
    this.stats.sent++;
    client.publish(this.telemetryTopic, m.payload, { qos: 1 }, (err) => {
      // An error means the connection closed before the PUBACK: the close handler re-queues it.
      if (err || m.gen !== gen) return;
      const i = this.unacked.indexOf(m);
      if (i < 0) return;
      this.unacked.splice(i, 1);
      this.latency.record(performance.now() - m.sentAt);
      this.stats.acked++;
      this.stats.samplesAcked += m.samples.length;
      this.updateBuffered();
      this.emit('acked', m.seq, m.samples);
      this.pump();
    });
  }

  /** A bridge that stopped acknowledging gets a fresh connection (and the data a re-send). */
  private checkAckTimeout(now: number): void {
    if (this.state !== 'online') return;
    const limit = this.opts.ackTimeoutMs ?? 30_000;
    const oldest = this.unacked.find((m) => m.gen === this.gen);
    if (oldest && performance.now() - oldest.sentAt > limit) {
      this.opts.log?.warn({ device: this.id, seq: oldest.seq, now }, 'no PUBACK in time: reconnecting');
      this.dropConnection();
    }
  }

  private updateBuffered(): void {
    let n = this.ring.size;
    for (const m of this.unacked) n += m.samples.length;
    this.stats.buffered = n;
  }

  // ---- connection -----------------------------------------------------------------------------

  private connect(): void {
    if (this.state === 'stopped') return;
    this.state = 'connecting';
    const gen = ++this.gen;
    const o = this.opts;
    const options: IClientOptions = {
      protocolVersion: 4,
      clientId: o.id,
      username: o.id,
      ...(o.secret !== undefined ? { password: o.secret } : {}),
      clean: true,
      reconnectPeriod: 0, // ours: Backoff with full jitter
      connectTimeout: o.connectTimeoutMs ?? 10_000,
      keepalive: o.keepaliveS ?? 60,
      will: {
        topic: this.statusTopic,
        payload: this.codec.status(STATE_OFFLINE, o.firmware ?? DEFAULT_FIRMWARE, 0),
        qos: 1,
        retain: true,
      },
      ...(o.ca !== undefined ? { ca: o.ca } : {}),
      ...(o.rejectUnauthorized !== undefined ? { rejectUnauthorized: o.rejectUnauthorized } : {}),
    };
    const client = mqtt.connect(o.url, options);
    this.client = client;
    let lastError: Error | undefined;
    let reachedOnline = false;
    client.on('error', (err: Error & { code?: number }) => {
      lastError = err;
      if (err.code === 4 || err.code === 5) this.stats.authFailures++;
    });
    client.on('connect', () => {
      if (gen !== this.gen || this.state === 'stopped') return;
      reachedOnline = true;
      this.onConnected(client, gen);
    });
    client.on('message', (topic, payload) => this.onMessage(topic, payload));
    client.once('close', () => {
      if (gen !== this.gen) return;
      if (reachedOnline) this.stats.disconnects++;
      else this.stats.connectFailures++;
      this.onClosed(lastError);
    });
  }

  private onConnected(client: MqttClient, gen: number): void {
    this.backoff.connected();
    this.stats.connects++;
    if (this.everConnected) this.stats.reconnects++;
    this.everConnected = true;
    // Subscribe before publishing, so no Rejection of our first messages is missed (clean session:
    // subscriptions are renewed on every connection).
    client.subscribe([`devices/${this.id}/commands`, `devices/${this.id}/errors`], { qos: 1 }, (err) => {
      if (gen !== this.gen || this.state === 'stopped') return;
      if (err) {
        this.opts.log?.warn({ device: this.id, err: err.message }, 'subscribe failed');
      }
      this.state = 'online';
      this.stats.online = 1;
      void this.publishStatus(client, STATE_ONLINE).catch(() => {});
      this.emit('online');
      this.pump();
    });
  }

  private onClosed(err: Error | undefined): void {
    this.client = undefined;
    this.stats.online = 0;
    if (this.state === 'stopped') return;
    this.backoff.disconnected();
    // Everything unacknowledged waits for the next connection, same seq and samples.
    for (const m of this.unacked) m.gen = undefined;
    this.state = 'waiting';
    const delay = this.backoff.next();
    this.emit('offline', err);
    this.opts.log?.debug(
      { device: this.id, err: err?.message, delay, attempt: this.backoff.attempt },
      'offline',
    );
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
  }

  private publishStatus(
    client: MqttClient,
    state: typeof STATE_ONLINE | typeof STATE_OFFLINE,
  ): Promise<void> {
    const payload = this.codec.status(state, this.opts.firmware ?? DEFAULT_FIRMWARE, Date.now());
    return new Promise((resolve, reject) =>
      client.publish(this.statusTopic, payload, { qos: 1, retain: true }, (err) =>
        err ? reject(err) : resolve(),
      ),
    );
  }

  // ---- what the bridge sends ------------------------------------------------------------------

  private onMessage(topic: string, payload: Buffer): void {
    if (topic.endsWith('/errors')) {
      let r: ReturnType<Codec['rejection']>;
      try {
        r = this.codec.rejection(payload);
      } catch {
        this.opts.log?.warn({ device: this.id }, 'undecodable Rejection');
        return;
      }
      this.stats.rejected++;
      this.rejectionsByReason[r.reason] = (this.rejectionsByReason[r.reason] ?? 0) + 1;
      // seq 0: the bridge could not read the message (too_large, decode_error); only faults do that.
      const expected = r.seq >= FAULT_SEQ_BASE || (r.seq === 0 && this.stats.faultsSent > 0);
      if (!expected) this.stats.unexpectedRejections++;
      this.opts.log?.[expected ? 'debug' : 'warn']({ device: this.id, ...r }, 'rejected by the bridge');
      this.emit('rejection', r);
    } else if (topic.endsWith('/commands')) {
      let c: WireCommand;
      try {
        c = this.codec.command(payload);
      } catch {
        this.opts.log?.warn({ device: this.id }, 'undecodable Command');
        return;
      }
      this.onCommand(c);
    }
  }

  private onCommand(c: WireCommand): void {
    this.stats.commands++;
    this.commandsByName[c.name] = (this.commandsByName[c.name] ?? 0) + 1;
    switch (c.name) {
      case 'set_interval': {
        const ms = Number(c.args['ms']);
        if (!Number.isInteger(ms) || ms < 10 || ms > 86_400_000) {
          this.opts.log?.warn(
            { device: this.id, command: c },
            'set_interval: args.ms must be an integer 10..86400000',
          );
          break;
        }
        this.interval = ms;
        clearTimeout(this.sampleTimer);
        if (this.sampling) this.scheduleSample();
        this.opts.log?.info({ device: this.id, command: c.id, ms }, 'command set_interval applied');
        break;
      }
      case 'reboot': {
        this.opts.log?.info({ device: this.id, command: c.id }, 'command reboot: going down');
        this.reboot();
        break;
      }
      default:
        this.opts.log?.warn({ device: this.id, command: c }, 'unknown command ignored');
    }
    this.emit('command', c);
  }

  /** Restart like firmware: OFFLINE status, clean disconnect, back after a fresh backoff; seq kept. */
  private reboot(): void {
    const client = this.client;
    if (!client || this.state !== 'online') return;
    this.backoff.reset();
    void this.publishStatus(client, STATE_OFFLINE)
      .catch(() => {})
      .finally(() => client.end(false));
  }

  // ---- persistence ----------------------------------------------------------------------------

  private async loadState(path: string): Promise<void> {
    try {
      const s = JSON.parse(await readFile(path, 'utf8')) as Partial<PersistedState>;
      if (Number.isSafeInteger(s.seq)) this.seq = s.seq!;
      if (Number.isSafeInteger(s.faultSeq) && s.faultSeq! >= FAULT_SEQ_BASE) this.faultSeq = s.faultSeq!;
      if (Number.isSafeInteger(s.counter)) this.sensors.state.counter = s.counter!;
      if (typeof s.battery === 'number' && s.battery > 0) this.sensors.state.battery = s.battery;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }

  private async saveState(path: string): Promise<void> {
    // Samples not yet sent are lost on restart; their seqs are not yet assigned, so none is skipped.
    const s: PersistedState = {
      seq: this.seq,
      faultSeq: this.faultSeq,
      counter: this.sensors.state.counter,
      battery: this.sensors.state.battery,
    };
    const tmp = `${path}.tmp`;
    await writeFile(tmp, JSON.stringify(s));
    await rename(tmp, path);
  }
}
