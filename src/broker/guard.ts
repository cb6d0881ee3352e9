/**
 * The packet guard: a duplex stream between a client's byte stream (TCP, TLS or WebSocket) and
 * Aedes. It reads every MQTT fixed header as bytes arrive and fails the connection as soon as a
 * packet announces a remaining length over the limit, before its body is buffered anywhere, however
 * the bytes are split into chunks or frames. Bodies pass through untouched (no copies); the UTF-8
 * strings of CONNECT, PUBLISH, SUBSCRIBE and UNSUBSCRIBE are checked on the way (conformance.ts).
 *
 * On the way out it coalesces what is written in one tick (mqtt-packet corks each packet, Aedes
 * writes several chunks per packet) into one write of the underlying stream: over WebSocket that is
 * one frame instead of one frame a chunk.
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

/** Wraps a client stream; hand the result to `aedes.handle`. */
export class GuardedStream extends Duplex {
  private readonly reader: FixedHeaderReader;
  private corked = false;

  constructor(
    readonly inner: Duplex,
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
  }

  override _read(): void {
    this.inner.resume();
  }

  override write(chunk: unknown, encoding?: unknown, cb?: unknown): boolean {
    if (!this.corked) {
      this.corked = true;
      this.cork();
      process.nextTick(() => {
        this.corked = false;
        this.uncork();
      });
    }
    // biome-ignore lint/suspicious/noExplicitAny: Writable.write's overloads are passed through as given.
    return super.write(chunk, encoding as any, cb as any);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, cb: (error?: Error | null) => void): void {
    this.inner.write(chunk, cb);
  }

  override _writev(chunks: { chunk: Buffer }[], cb: (error?: Error | null) => void): void {
    const data = chunks.length === 1 ? chunks[0]!.chunk : Buffer.concat(chunks.map((c) => c.chunk));
    this.inner.write(data, cb);
  }

  override _final(cb: (error?: Error | null) => void): void {
    this.inner.end(cb);
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    this.inner.destroy();
    cb(err);
  }
}
