/**
 * The packet guard: a duplex stream between a client's byte stream (TCP, TLS or WebSocket) and
 * Aedes. It reads every MQTT fixed header as bytes arrive and fails the connection as soon as a
 * packet announces a remaining length over the limit, before its body is buffered anywhere, however
 * the bytes are split into chunks or frames. Bodies pass through untouched (no copies); the UTF-8
 * strings of CONNECT, PUBLISH, SUBSCRIBE and UNSUBSCRIBE are checked on the way (conformance.ts).
 *
 * On the way out, bytes go straight to an `OutboundSink`: the socket itself for TCP and TLS, one
 * WebSocket frame per tick for MQTT over WebSocket (see `webSocketSink`).
 */
import { Duplex } from 'node:stream';
import { Utf8FieldInspector } from './conformance.js';

export class PacketTooLargeError extends Error {
  readonly code = 'E_PACKET_TOO_LARGE';
  constructor(
    readonly announced: number,
    readonly limit: number,
  ) {
    super(`MQTT packet announces ${announced} bytes; the limit is ${limit}`);
  }
}

export class MalformedLengthError extends Error {
  readonly code = 'E_MALFORMED_LENGTH';
  constructor() {
    super('malformed MQTT remaining length (more than 4 bytes)');
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
  /** Bytes accepted and not yet handed to the kernel. */
  readonly queuedBytes: number;
  onDrain(listener: () => void): void;
  end(): void;
}

/** TCP and TLS: the socket itself; its own cork turns a packet's chunks into one writev. */
export function socketSink(socket: Duplex): OutboundSink {
  return {
    write: (data) => socket.write(data),
    cork: () => socket.cork(),
    uncork: () => socket.uncork(),
    get queuedBytes() {
      return socket.writableLength;
    },
    onDrain: (listener) => socket.on('drain', listener),
    end: () => socket.end(),
  };
}

/** What the WebSocket sink needs of a `ws` WebSocket. */
export interface FrameSocket {
  send(data: Buffer, options: { binary: true; compress: false }): void;
  readonly bufferedAmount: number;
  close(): void;
}

/**
 * MQTT over WebSocket: everything written in one tick goes out as one binary frame (MQTT over
 * WebSocket allows several packets per frame), straight through `ws`, instead of one frame per chunk
 * through a stream wrapper (measured: 5 frames per QoS 0 PUBLISH, each its own system call).
 * @param raw the upgraded TCP socket, for its `drain` event.
 */
export function webSocketSink(ws: FrameSocket, raw: Duplex, highWaterMark = 64 * 1024): OutboundSink {
  const pending: Buffer[] = [];
  let pendingBytes = 0;
  let corks = 0;
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    if (corks > 0 || pending.length === 0) return;
    const data = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
    pending.length = 0;
    pendingBytes = 0;
    try {
      ws.send(data, { binary: true, compress: false });
    } catch (err) {
      // Runs from nextTick: a throw here would end the process, not just this connection.
      raw.destroy(err as Error);
    }
  };
  return {
    write(data) {
      const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
      pending.push(bytes);
      pendingBytes += bytes.length;
      if (!scheduled) {
        scheduled = true;
        process.nextTick(flush);
      }
      return pendingBytes + ws.bufferedAmount < highWaterMark;
    },
    cork: () => {
      corks++;
    },
    uncork: () => {
      if (corks > 0 && --corks === 0 && !scheduled) flush();
    },
    get queuedBytes() {
      return pendingBytes + ws.bufferedAmount;
    },
    onDrain: (listener) => raw.on('drain', listener),
    end: () => {
      flush();
      ws.close();
    },
  };
}

/**
 * Wraps a client connection; hand the result to `aedes.handle`. Inbound bytes come from `inner` (the
 * socket, or websocket-stream's readable side) through the fixed-header guard; outbound bytes go to
 * `sink` directly, without a second stream's buffering in between.
 */
export class GuardedStream extends Duplex {
  private readonly reader: FixedHeaderReader;

  constructor(
    readonly inner: Duplex,
    private readonly sink: OutboundSink,
    private readonly options: GuardOptions,
  ) {
    super({ allowHalfOpen: false });
    this.reader = new FixedHeaderReader(options.maxPacketBytes, new Utf8FieldInspector());
    inner.on('data', (chunk: Buffer) => {
      const err = this.reader.feed(chunk);
      if (err) {
        this.options.onViolation?.(err);
        inner.destroy();
        this.destroy(err);
        return;
      }
      if (!this.push(chunk)) inner.pause();
    });
    inner.once('end', () => this.push(null));
    inner.once('close', () => this.destroy());
    inner.on('error', (err) => this.destroy(err));
    sink.onDrain(() => this.emit('drain'));
  }

  override _read(): void {
    this.inner.resume();
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

  /** Bytes queued for the client and not yet taken by the kernel (read by the slow-subscriber guard). */
  get queuedBytes(): number {
    return this.sink.queuedBytes;
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

// Writable's own `writableLength` counts its buffer, which the sink bypasses: report the sink's.
Object.defineProperty(GuardedStream.prototype, 'writableLength', {
  get(this: GuardedStream) {
    return this.queuedBytes;
  },
});
