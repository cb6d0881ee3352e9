/**
 * LiveClient: the browser (and Node) client of the live channel (contract §5). No runtime
 * dependencies.
 *
 * - Connects with a token (query parameter: browsers cannot set headers on a WebSocket), offers the
 *   `telemetry.v1.json` subprotocol.
 * - Reconnects by itself with exponential backoff and full jitter (see backoff.ts); the attempt
 *   counter resets once a connection has stayed live for `stableMs`.
 * - Resumes: after a reconnect it subscribes again with `since` = the last cursor it saw, so the
 *   server replays exactly what was missed (then `replayed`); when the cursor is too old the server
 *   says `gap` and sends snapshots, which replace the local view.
 * - Keeps the latest state of each device (`devices`), which a dashboard reads.
 * - Never shows a stale view without saying so: one `state`, a union, never several booleans:
 *
 *   ```
 *   connecting ──subscribed/replayed/gap──▶ live ──socket lost──▶ stale ──replayed/gap/subscribed──▶ live
 *        ▲                                                          │
 *        └──────────── socket lost before the first live ───────────┘   any ──close()──▶ closed
 *   ```
 *
 * @example
 * const client = new LiveClient({ url: 'ws://127.0.0.1:8080/live', token, feeds: ['telemetry/+'] });
 * client.on('telemetry', (m) => console.log(m.device, m.values));
 * client.on('state', (s) => console.log('now', s));
 */
import { type BackoffOptions, backoffDelay } from './backoff.js';
import { Emitter } from './emitter.js';
import type {
  AckMessage,
  ClientMessage,
  DeviceState,
  ErrorMessage,
  Feed,
  GapMessage,
  HistoryMessage,
  ReplayedMessage,
  ServerMessage,
  SnapshotMessage,
  StatusMessage,
  TelemetryMessage,
} from './protocol.js';
import { CLOSE_CODES, parseServerMessage, SUBPROTOCOL } from './protocol.js';
import { eventText, globalWebSocket, OPEN, type SocketConstructor, type SocketLike } from './socket.js';

/** The one state of the client. */
export type ConnectionState = 'connecting' | 'live' | 'stale' | 'closed';

/** The latest known state of one device, merged from snapshots, telemetry and status. */
export interface DeviceView {
  readonly device: string;
  /** From `status`; undefined until one is seen. */
  state: DeviceState | undefined;
  firmware: string | undefined;
  seq: number | undefined;
  /** Time of the latest sample, Unix ms. */
  time: number | undefined;
  /** Latest value of each metric (merged: a sample that omits a metric keeps the previous value). */
  values: Record<string, number>;
  labels: Record<string, string>;
  /** Latest sample or status time, Unix ms. */
  lastSeen: number | undefined;
}

/** A client-side failure (as opposed to an `error` message from the server). */
export interface ClientError {
  readonly type: 'client_error';
  readonly code:
    | 'not_connected'
    | 'timeout'
    | 'disconnected'
    | 'too_many_pending'
    | 'bad_frame'
    | 'too_many_devices';
  readonly message: string;
}

export interface LiveClientEvents {
  telemetry: TelemetryMessage;
  status: StatusMessage;
  snapshot: SnapshotMessage;
  state: ConnectionState;
  error: ErrorMessage | ClientError;
  gap: GapMessage;
  replayed: ReplayedMessage;
  /** A feed's history over the window asked for (`history` option), before it goes live. */
  history: HistoryMessage;
  /** The local view was emptied and is being refilled by snapshots (fresh subscribe or gap). */
  reset: undefined;
}

/** Timers, injectable so tests drive time. Handles are opaque. */
export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface LiveClientOptions {
  /** `ws(s)://host:port/live`. */
  readonly url: string;
  /** Browser token (`npx telebridge token create`); sent as the `token` query parameter. */
  readonly token: string;
  /** Feeds to subscribe at connect. Default none. */
  readonly feeds?: readonly Feed[];
  /**
   * Ask for the feeds' history over this window (`"1h"`) with the first subscribe of a fresh view
   * (`history` events, then live); a resume asks for what was missed instead. Default none.
   */
  readonly history?: string;
  /** With `history`: at most this many points a series (downsampled). */
  readonly points?: number;
  /** WebSocket constructor. Default `globalThis.WebSocket` (browsers, Node ≥ 22); in Node 20 pass `ws`'s. */
  readonly WebSocket?: SocketConstructor;
  /** Reconnection backoff; defaults 500 ms base, 30 s cap. */
  readonly backoff?: BackoffOptions;
  /** A connection live this long resets the backoff, ms. Default 10 000. */
  readonly stableMs?: number;
  /** A command with no `ack` or `error` within this fails, ms. Default 10 000. */
  readonly commandTimeoutMs?: number;
  /** Commands awaiting their ack at once. Default 64. */
  readonly maxPendingCommands?: number;
  /** Devices kept in the local view; more are ignored (and reported once). Default 100 000. */
  readonly maxDevices?: number;
  readonly timers?: Timers;
  /** [0, 1) source for the jitter. Default Math.random. */
  readonly random?: () => number;
}

/** At most this many feeds a connection (contract §5). */
export const MAX_FEEDS = 100;

interface PendingCommand {
  resolve(ack: AckMessage): void;
  reject(err: Error): void;
  timer: unknown;
}

/** A command that failed: `code` is the server's error code or the client's. */
export class CommandError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'CommandError';
  }
}

const defaultTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as Parameters<typeof clearTimeout>[0]),
};

export class LiveClient extends Emitter<LiveClientEvents> {
  /** Latest state of each device seen, by device id. Read it; do not write it. */
  readonly devices = new Map<string, DeviceView>();

  private currentState: ConnectionState = 'connecting';
  private socket: SocketLike | undefined;
  private readonly feeds = new Set<Feed>();
  /** Cursor of the last streamed message (`telemetry`/`status`), for `since`. */
  private lastCursor: string | undefined;
  /** Id of the subscribe that (re)establishes the view on this connection, until it resolves. */
  private resumeId: string | undefined;
  private resumeHadSince = false;
  private nextId = 0;
  private attempt = 0;
  private reconnectTimer: unknown;
  private stableTimer: unknown;
  private readonly pending = new Map<string, PendingCommand>();
  private tooManyDevicesReported = false;
  private readonly WebSocketCtor: SocketConstructor;
  private readonly timers: Timers;

  constructor(private readonly options: LiveClientOptions) {
    super();
    const ctor = options.WebSocket ?? globalWebSocket();
    if (!ctor)
      throw new TypeError(
        'LiveClient: no WebSocket constructor (pass options.WebSocket, e.g. ws in Node 20)',
      );
    this.WebSocketCtor = ctor;
    this.timers = options.timers ?? defaultTimers;
    for (const feed of options.feeds ?? []) this.feeds.add(feed);
    if (this.feeds.size > MAX_FEEDS) throw new RangeError(`LiveClient: at most ${MAX_FEEDS} feeds`);
    this.open();
  }

  get state(): ConnectionState {
    return this.currentState;
  }

  /** The cursor a resume would start from (undefined before the first streamed message). */
  get cursor(): string | undefined {
    return this.lastCursor;
  }

  /** Retries since the last stable connection (drives the backoff window). */
  get reconnectAttempt(): number {
    return this.attempt;
  }

  /** Adds feeds; sent at once when connected, and kept for every reconnect. */
  subscribe(feeds: readonly Feed[]): void {
    const added = feeds.filter((f) => !this.feeds.has(f));
    if (this.feeds.size + added.length > MAX_FEEDS)
      throw new RangeError(`LiveClient: at most ${MAX_FEEDS} feeds`);
    for (const feed of added) this.feeds.add(feed);
    if (added.length === 0 || !this.isOpen()) return;
    // Only the new feeds, without `since`: the server answers with their snapshots.
    this.send({ type: 'subscribe', id: this.id(), feeds: added });
  }

  unsubscribe(feeds: readonly Feed[]): void {
    const removed = feeds.filter((f) => this.feeds.delete(f));
    if (removed.length === 0 || !this.isOpen()) return;
    this.send({ type: 'unsubscribe', id: this.id(), feeds: removed });
  }

  /**
   * Sends a command to a device (tokens with command rights). Resolves with the `ack`; rejects with
   * a CommandError carrying the server's code (`forbidden`, …) or the client's (`not_connected`,
   * `timeout`, `disconnected`). Never resent after a disconnect: a command is not idempotent.
   */
  command(device: string, name: string, args: Readonly<Record<string, string>> = {}): Promise<AckMessage> {
    if (!this.isOpen()) return Promise.reject(new CommandError('not_connected', 'not connected'));
    const limit = this.options.maxPendingCommands ?? 64;
    if (this.pending.size >= limit) {
      return Promise.reject(new CommandError('too_many_pending', `more than ${limit} commands awaiting ack`));
    }
    const id = this.id();
    return new Promise<AckMessage>((resolve, reject) => {
      const timer = this.timers.setTimeout(() => {
        this.pending.delete(id);
        reject(new CommandError('timeout', `no ack for command ${id}`));
      }, this.options.commandTimeoutMs ?? 10_000);
      this.pending.set(id, { resolve, reject, timer });
      this.send({ type: 'command', id, device, name, args });
    });
  }

  /** Closes for good: no reconnect. State becomes `closed`. */
  close(): void {
    if (this.currentState === 'closed') return;
    this.timers.clearTimeout(this.reconnectTimer);
    this.timers.clearTimeout(this.stableTimer);
    const socket = this.socket;
    this.socket = undefined;
    if (socket) {
      detach(socket);
      socket.close(CLOSE_CODES.normal, 'client closed');
    }
    this.failPending('disconnected', 'client closed');
    this.setState('closed');
  }

  // ── connection ──────────────────────────────────────────────────────────────────────────────

  private open(): void {
    const url = `${this.options.url}${this.options.url.includes('?') ? '&' : '?'}token=${encodeURIComponent(this.options.token)}`;
    let socket: SocketLike;
    try {
      socket = new this.WebSocketCtor(url, [SUBPROTOCOL]);
    } catch (err) {
      // A malformed URL throws synchronously; treat it like a failed connection (it will be retried,
      // and the error is reported).
      this.emit('error', { type: 'client_error', code: 'bad_frame', message: String(err) });
      this.onSocketClosed();
      return;
    }
    this.socket = socket;
    socket.onopen = () => this.onSocketOpen();
    socket.onmessage = (event) => this.onFrame(eventText(event));
    socket.onerror = () => {}; // a close event always follows; that is where we act
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = undefined;
      this.onSocketClosed();
    };
  }

  private onSocketOpen(): void {
    if (this.feeds.size === 0) {
      // Nothing to resume: the (empty) view is current.
      this.becomeLive();
      return;
    }
    const id = this.id();
    this.resumeId = id;
    this.resumeHadSince = this.lastCursor !== undefined;
    const { history, points } = this.options;
    const message: ClientMessage =
      this.lastCursor !== undefined
        ? { type: 'subscribe', id, feeds: [...this.feeds], since: this.lastCursor }
        : history !== undefined
          ? { type: 'subscribe', id, feeds: [...this.feeds], history, ...(points ? { points } : {}) }
          : { type: 'subscribe', id, feeds: [...this.feeds] };
    this.send(message);
  }

  private onSocketClosed(): void {
    this.timers.clearTimeout(this.stableTimer);
    this.resumeId = undefined;
    this.failPending('disconnected', 'connection lost before the ack');
    if (this.currentState === 'closed') return;
    // A view that was live is now possibly stale; one that never was is still connecting.
    this.setState(this.currentState === 'connecting' ? 'connecting' : 'stale');
    const delay = backoffDelay(this.attempt, this.options.backoff, this.options.random);
    this.attempt++;
    this.reconnectTimer = this.timers.setTimeout(() => this.open(), delay);
  }

  private becomeLive(): void {
    this.resumeId = undefined;
    this.setState('live');
    this.timers.clearTimeout(this.stableTimer);
    this.stableTimer = this.timers.setTimeout(() => {
      this.attempt = 0;
    }, this.options.stableMs ?? 10_000);
  }

  // ── messages ────────────────────────────────────────────────────────────────────────────────

  private onFrame(text: string): void {
    const message = parseServerMessage(text);
    if (!message) {
      this.emit('error', {
        type: 'client_error',
        code: 'bad_frame',
        message: `unreadable frame: ${text.slice(0, 100)}`,
      });
      return;
    }
    this.handle(message);
  }

  private handle(message: ServerMessage): void {
    switch (message.type) {
      case 'telemetry':
        this.lastCursor = message.cursor;
        this.applyTelemetry(message.device, message);
        this.emit('telemetry', message);
        return;
      case 'status':
        this.lastCursor = message.cursor;
        this.applyStatus(message.device, message);
        this.emit('status', message);
        return;
      case 'snapshot':
        // Snapshot cursors are per device, not a position in the stream: not kept for `since`.
        if (message.feed.startsWith('status/')) this.applyStatus(message.device, message);
        else this.applyTelemetry(message.device, message);
        this.emit('snapshot', message);
        return;
      case 'subscribed':
        if (message.id === this.resumeId && !this.resumeHadSince) {
          // Fresh subscribe: the snapshots that follow are the whole view.
          this.resetView();
          this.becomeLive();
        }
        return;
      case 'replayed':
        if (message.id === this.resumeId) this.becomeLive();
        this.emit('replayed', message);
        return;
      case 'gap':
        if (message.id === this.resumeId) {
          // Missed more than the server kept: snapshots follow and replace the view.
          this.lastCursor = undefined;
          this.resetView();
          this.becomeLive();
        }
        this.emit('gap', message);
        return;
      case 'ack': {
        const pending = this.pending.get(message.id);
        if (pending) {
          this.pending.delete(message.id);
          this.timers.clearTimeout(pending.timer);
          pending.resolve(message);
        }
        return;
      }
      case 'error': {
        const pending = message.id === undefined ? undefined : this.pending.get(message.id);
        if (pending && message.id !== undefined) {
          this.pending.delete(message.id);
          this.timers.clearTimeout(pending.timer);
          pending.reject(new CommandError(message.code, message.message));
        }
        this.emit('error', message);
        return;
      }
      case 'history':
        this.emit('history', message);
        return;
      case 'unsubscribed':
        return;
    }
  }

  private resetView(): void {
    this.devices.clear();
    this.emit('reset', undefined);
  }

  private view(device: string): DeviceView | undefined {
    let view = this.devices.get(device);
    if (view) return view;
    if (this.devices.size >= (this.options.maxDevices ?? 100_000)) {
      if (!this.tooManyDevicesReported) {
        this.tooManyDevicesReported = true;
        this.emit('error', {
          type: 'client_error',
          code: 'too_many_devices',
          message: 'device view is full',
        });
      }
      return undefined;
    }
    view = {
      device,
      state: undefined,
      firmware: undefined,
      seq: undefined,
      time: undefined,
      values: {},
      labels: {},
      lastSeen: undefined,
    };
    this.devices.set(device, view);
    return view;
  }

  private applyTelemetry(device: string, m: TelemetryMessage | SnapshotMessage): void {
    const view = this.view(device);
    if (!view) return;
    if (m.seq !== undefined) view.seq = m.seq;
    if (m.time !== undefined) {
      view.time = m.time;
      view.lastSeen = Math.max(view.lastSeen ?? 0, m.time);
    }
    if (m.values) Object.assign(view.values, m.values);
    if (m.labels) view.labels = { ...m.labels };
  }

  private applyStatus(device: string, m: StatusMessage | SnapshotMessage): void {
    const view = this.view(device);
    if (!view) return;
    if (m.state !== undefined) view.state = m.state;
    if (m.firmware !== undefined) view.firmware = m.firmware;
    if (m.time !== undefined) view.lastSeen = Math.max(view.lastSeen ?? 0, m.time);
  }

  // ── helpers ─────────────────────────────────────────────────────────────────────────────────

  private setState(next: ConnectionState): void {
    if (next === this.currentState) return;
    this.currentState = next;
    this.emit('state', next);
  }

  private isOpen(): boolean {
    return this.socket !== undefined && this.socket.readyState === OPEN;
  }

  private send(message: ClientMessage): void {
    this.socket?.send(JSON.stringify(message));
  }

  private id(): string {
    this.nextId++;
    return `c${this.nextId}`;
  }

  private failPending(code: string, why: string): void {
    for (const [id, pending] of this.pending) {
      this.timers.clearTimeout(pending.timer);
      pending.reject(new CommandError(code, `${why} (command ${id})`));
    }
    this.pending.clear();
  }
}

function detach(socket: SocketLike): void {
  socket.onopen = null;
  socket.onmessage = null;
  socket.onclose = null;
  socket.onerror = () => {};
}
