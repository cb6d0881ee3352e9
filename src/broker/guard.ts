/**
 * Room: broker. The packet guard, between a client's byte stream (TCP, TLS or WebSocket) and Aedes. It reads every MQTT fixed header as bytes arrive and fails the connection as soon as a
 * packet announces a remaining length over the limit, before its body is buffered anywhere, however
 * the bytes are split into chunks or frames. Bodies pass through untouched (no copies); the UTF-8
 * strings of CONNECT, PUBLISH, SUBSCRIBE and UNSUBSCRIBE are checked on the way (conformance.ts).
 *
 * TCP and TLS sockets are guarded in place (`guardSocket`) and handed to Aedes themselves, which
 * writes to them directly: a second Duplex per connection (its stream states, listeners and Aedes's
 * end-of-stream hooks on it) was ~2 KiB of every idle connection's ~8 KiB of heap
 * (bench/idle-memory.ts). MQTT over WebSocket is read through websocket-stream into a
 * `GuardedStream`, whose writes go to a `webSocketSink`: one ws frame per tick.
 */
import type { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { ERROR_CODES, TelebridgeError } from '../errors.js';
import { corkForTurn } from '../turn-cork.js';
import { interceptSocketReads, pushOnward } from './aedes-internals.js';
import { Utf8FieldInspector } from './conformance.js';
import type { EncodedPacket } from './encoded-publish.js';

export class PacketTooLargeError extends TelebridgeError {
  constructor(
    readonly announced: number,
    readonly limit: number,
  ) {
    super(ERROR_CODES.packetTooLarge, `MQTT packet announces ${announced} bytes; the limit is ${limit}`);
  }
}

export class MalformedLengthError extends TelebridgeError {
  constructor() {
    super(ERROR_CODES.malformedLength, 'malformed MQTT remaining length (more than 4 bytes)');
  }
}

/**
 * Incremental MQTT fixed-header reader. `feed` returns an error as soon as one is certain.
 * State: 0 = expecting a header byte; 1..4 = reading the remaining-length varint; 5 = in a body.
 */
export class FixedHeaderReader {
  private state = 0;
  private length = 0;
  private multiplier = 1;
  private bodyLeft = 0;
  private firstByte = 0;

  /**
   * @param maxPacketBytes largest whole packet (fixed header included) allowed.
   * @param strings when given, sees every body byte to check the packets' UTF-8 strings.
   */
  constructor(
    private readonly maxPacketBytes: number,
    private readonly strings?: Utf8FieldInspector,
  ) {}

  feed(chunk: Uint8Array): Error | undefined {
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      if (this.state === 5) {
        const take = Math.min(this.bodyLeft, n - i);
        const err = this.strings?.body(chunk.subarray(i, i + take));
        if (err) return err;
        this.bodyLeft -= take;
        i += take;
        if (this.bodyLeft === 0) {
          this.state = 0;
          this.strings?.end();
        }
        continue;
      }
      const byte = chunk[i++]!;
      if (this.state === 0) {
        this.firstByte = byte;
        this.state = 1;
        this.length = 0;
        this.multiplier = 1;
        continue;
      }
      this.length += (byte & 0x7f) * this.multiplier;
      // 1 type byte + up to 4 length bytes, so a packet is at least header + length long.
      if (this.length + 1 + this.state > this.maxPacketBytes) {
        return new PacketTooLargeError(this.length + 1 + this.state, this.maxPacketBytes);
      }
      if (byte & 0x80) {
        if (this.state === 4) return new MalformedLengthError();
        this.multiplier *= 128;
        this.state++;
        continue;
      }
      this.bodyLeft = this.length;
      this.state = this.bodyLeft === 0 ? 0 : 5;
      if (this.bodyLeft > 0) this.strings?.start(this.firstByte);
    }
    return undefined;
  }
}

export interface GuardOptions {
  maxPacketBytes: number;
  /** Called once when the guard cuts the connection. */
  onViolation?: (err: Error) => void;
}

/**
 * Where a connection's outbound bytes go. Aedes writes each packet as several small chunks (mqtt-packet
 * corks the stream around them); a sink decides how they reach the wire.
 */
export interface OutboundSink {
  /**
   * Writes bytes (mqtt-packet writes topics as strings, UTF-8); false once the sink is over its
   * buffer limit (a `drain` follows).
   */
  write(data: Buffer | string): boolean;
  cork(): void;
  uncork(): void;
  /**
   * Writes a packet encoded once for many connections (fanout.ts), after everything written before
   * it; false once the sink is over its buffer limit.
   */
  writePacket(packet: EncodedPacket): boolean;
  /** Bytes accepted and not yet handed to the kernel. */
  readonly queuedBytes: number;
  /** True while what is written waits for an uncork (a packet's chunks, or the turn: turn-cork.ts). */
  readonly corked: boolean;
  /** Emits 'drain' on `target` whenever the sink drains. */
  onDrain(target: EventEmitter): void;
  end(): void;
}

/** What the WebSocket sink needs of a `ws` WebSocket. */
export interface FrameSocket {
  send(data: Buffer, options: { binary: true; compress: false }): void;
  readonly bufferedAmount: number;
  /** 1 (OPEN) until a close frame is sent or received. */
  readonly readyState: number;
  close(): void;
}

const WS_OPEN = 1;

/**
 * MQTT over WebSocket: everything Aedes writes in one tick goes out as one binary frame (MQTT over
 * WebSocket allows several packets per frame), straight through `ws`, instead of one frame per chunk
 * through a stream wrapper (measured: 5 frames per QoS 0 PUBLISH, each its own system call). A
 * packet encoded for many connections (`writePacket`) is written already framed to the upgraded
 * socket itself, corked for the event-loop turn (turn-cork.ts): the frame is built once per message,
 * and a connection gets one `writev` per turn. That is safe next to `ws`'s own writes (pings, the
 * close frame, the frames above) because without permessage-deflate (off on `/mqtt`) `ws` writes each
 * frame to the socket synchronously, whole; fanned-out frames are written only while `readyState` is
 * OPEN, so never after a close frame.
 * @param raw the upgraded TCP socket: fanned-out frames go to it, and its `drain` event is the sink's.
 */
export function webSocketSink(ws: FrameSocket, raw: Duplex, highWaterMark = 64 * 1024): OutboundSink {
  return new WebSocketSink(ws, raw, highWaterMark);
}

/**
 * A class rather than closures over an object literal: one small object per connection instead of
 * six closures, their context and a dictionary-mode object (~1 KiB per idle connection).
 */
class WebSocketSink implements OutboundSink {
  /** Chunks written this tick; allocated at the first write (an idle connection writes only CONNACK). */
  private pending: Buffer[] | undefined;
  private pendingBytes = 0;
  private corks = 0;
  private scheduled = false;

  constructor(
    private readonly ws: FrameSocket,
    private readonly raw: Duplex,
    private readonly highWaterMark: number,
  ) {}

  write(data: Buffer | string): boolean {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    // Created on first use: an idle connection carries no array.
    this.pending ??= [];
    this.pending.push(bytes);
    this.pendingBytes += bytes.length;
    if (!this.scheduled) {
      this.scheduled = true;
      process.nextTick(flushSink, this);
    }
    return this.pendingBytes + this.ws.bufferedAmount < this.highWaterMark;
  }

  cork(): void {
    this.corks++;
  }

  uncork(): void {
    if (this.corks > 0 && --this.corks === 0 && !this.scheduled) this.flush();
  }

  writePacket(packet: EncodedPacket): boolean {
    // Aedes's chunks of this tick are whole packets (mqtt-packet writes one in a single call): they
    // go first, whatever its cork, to keep the connection's order.
    if (this.pendingBytes > 0) this.send();
    const raw = this.raw;
    if (this.ws.readyState === WS_OPEN && !raw.destroyed) {
      corkForTurn(raw);
      raw.write(packet.frame);
    }
    return this.pendingBytes + this.ws.bufferedAmount < this.highWaterMark;
  }

  get queuedBytes(): number {
    return this.pendingBytes + this.ws.bufferedAmount;
  }

  get corked(): boolean {
    return this.corks > 0 || this.raw.writableCorked > 0;
  }

  onDrain(target: EventEmitter): void {
    // A shared listener: the raw socket carries its target.
    (this.raw as DrainSource)[kDrainTarget] = target;
    this.raw.on('drain', emitDrainOnTarget);
  }

  end(): void {
    // Whatever Aedes wrote goes before the close frame, corked or not.
    this.send();
    this.ws.close();
  }

  flush(): void {
    this.scheduled = false;
    if (this.corks === 0) this.send();
  }

  /** Sends what Aedes wrote since the last send as one frame. */
  private send(): void {
    const pending = this.pending;
    if (!pending || pending.length === 0) return;
    const data = pending.length === 1 ? pending[0]! : Buffer.concat(pending, this.pendingBytes);
    pending.length = 0;
    this.pendingBytes = 0;
    try {
      this.ws.send(data, { binary: true, compress: false });
    } catch (err) {
      // Runs from nextTick: a throw here would end the process, not just this connection.
      this.raw.destroy(err as Error);
    }
  }
}

/** Where a WebSocket sink's raw socket keeps what its 'drain' is passed on to. */
const kDrainTarget = Symbol('telebridge.guard.drainTarget');
type DrainSource = Duplex & { [kDrainTarget]: EventEmitter };

function emitDrainOnTarget(this: DrainSource): void {
  this[kDrainTarget].emit('drain');
}

function flushSink(sink: WebSocketSink): void {
  sink.flush();
}

/** Where `guardSocket` keeps a socket's header reader and options (own properties, no closure). */
const kReader = Symbol('telebridge.guard.reader');
const kOptions = Symbol('telebridge.guard.options');
type GuardedSocket = Socket & { [kReader]: FixedHeaderReader; [kOptions]: GuardOptions };

/**
 * TCP and TLS: guards a socket in place and returns it, to be handed to `aedes.handle` as it is.
 * Every chunk the socket reads passes through its `push` (Node's stream read path), where the
 * fixed-header reader sees it before it is buffered; on a violation the chunk is dropped and the
 * socket destroyed with the error. Outbound, Aedes writes to the socket itself (its cork gives one
 * writev per packet). Costs two own properties on the socket, no closure, no second stream.
 */
export function guardSocket(socket: Socket, options: GuardOptions): Socket {
  const guarded = socket as GuardedSocket;
  guarded[kReader] = new FixedHeaderReader(options.maxPacketBytes, new Utf8FieldInspector());
  guarded[kOptions] = options;
  interceptSocketReads(socket, guardedPush);
  return socket;
}

function guardedPush(this: Socket, chunk: unknown, encoding?: BufferEncoding): boolean {
  const guarded = this as GuardedSocket;
  if (chunk !== null) {
    if (guarded.destroyed) return false;
    const err = guarded[kReader].feed(chunk as Buffer);
    if (err) {
      guarded[kOptions].onViolation?.(err);
      guarded.destroy(err);
      return false;
    }
  }
  return pushOnward(guarded, chunk, encoding);
}

/** What reads a connection from the network, when pausing the stream above it does not stop it. */
export interface PausableSource {
  pause(): void;
  resume(): void;
}

/**
 * Wraps a client connection; hand the result to `aedes.handle`. Inbound bytes come from `inner` (the
 * socket, or websocket-stream's readable side) through the fixed-header guard; outbound bytes go to
 * `sink` directly, without a second stream's buffering in between.
 *
 * Backpressure: while Aedes does not read (a packet of its last read is still being handled, such as
 * one waiting for the publish rate), this stream's buffer fills and `inner` and `source` are paused.
 * websocket-stream pushes every frame `ws` hands it whatever its reader does, so for MQTT over
 * WebSocket `source` is the `ws` socket itself: pausing it stops reading the TCP socket.
 */
export class GuardedStream extends Duplex {
  private readonly reader: FixedHeaderReader;

  constructor(
    readonly inner: Duplex,
    private readonly sink: OutboundSink,
    private readonly options: GuardOptions,
    private readonly source?: PausableSource,
  ) {
    super({ allowHalfOpen: false });
    this.reader = new FixedHeaderReader(options.maxPacketBytes, new Utf8FieldInspector());
    // Shared listeners that find this stream on `inner`: closures (and `once` wrappers) would be
    // made per connection (~0.6 KiB of an idle WebSocket connection, bench/idle-memory.ts).
    (inner as GuardedInner)[kGuarded] = this;
    inner.on('data', innerData);
    // A stream emits 'end' and 'close' once: `on` spares the wrapper `once` makes.
    inner.on('end', innerEnd);
    inner.on('close', innerClose);
    inner.on('error', innerError);
    sink.onDrain(this);
  }

  /** A chunk read from `inner`: through the header guard, then to Aedes. */
  receive(chunk: Buffer): void {
    const err = this.reader.feed(chunk);
    if (err) {
      this.options.onViolation?.(err);
      this.inner.destroy();
      this.destroy(err);
      return;
    }
    if (!this.push(chunk)) {
      this.inner.pause();
      this.source?.pause();
    }
  }

  override _read(): void {
    this.inner.resume();
    this.source?.resume();
  }

  // Aedes (through mqtt-packet) only ever calls write/cork/uncork and checks write's result, so the
  // Writable machinery (its buffer, callbacks, state) is bypassed: the bytes go to the sink as given.
  override write(chunk: unknown, encoding?: unknown, cb?: unknown): boolean {
    if (this.destroyed) return false;
    const ok = this.sink.write(chunk as Buffer | string);
    const callback = typeof encoding === 'function' ? encoding : cb;
    if (typeof callback === 'function') process.nextTick(callback as () => void);
    return ok;
  }

  override cork(): void {
    this.sink.cork();
  }

  override uncork(): void {
    this.sink.uncork();
  }

  /** A packet encoded once for many connections (fanout.ts), in order with everything else written. */
  writePacket(packet: EncodedPacket): boolean {
    if (this.destroyed) return false;
    return this.sink.writePacket(packet);
  }

  /** Bytes queued for the client and not yet taken by the kernel (read by the fan-out's allowance). */
  get queuedBytes(): number {
    return this.sink.queuedBytes;
  }

  /** True while the sink holds what is written for an uncork. */
  get outboundCorked(): boolean {
    return this.sink.corked;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, cb: (error?: Error | null) => void): void {
    this.sink.write(chunk);
    cb();
  }

  override _final(cb: (error?: Error | null) => void): void {
    this.sink.end();
    cb();
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    this.inner.destroy();
    cb(err);
  }
}

/** Where a GuardedStream's inner stream keeps it, for the shared listeners below. */
const kGuarded = Symbol('telebridge.guard.stream');
type GuardedInner = Duplex & { [kGuarded]: GuardedStream };

function innerData(this: GuardedInner, chunk: Buffer): void {
  this[kGuarded].receive(chunk);
}

function innerEnd(this: GuardedInner): void {
  this[kGuarded].push(null);
}

function innerClose(this: GuardedInner): void {
  this[kGuarded].destroy();
}

function innerError(this: GuardedInner, err: Error): void {
  this[kGuarded].destroy(err);
}

// Writable's own `writableLength` and `writableCorked` describe its buffer, which the sink
// bypasses: report the sink's.
Object.defineProperty(GuardedStream.prototype, 'writableLength', {
  get(this: GuardedStream) {
    return this.queuedBytes;
  },
});
Object.defineProperty(GuardedStream.prototype, 'writableCorked', {
  get(this: GuardedStream) {
    return this.outboundCorked ? 1 : 0;
  },
});
