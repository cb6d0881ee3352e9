/**
 * A minimal WebSocket client over `net` for the load generator's browsers: the HTTP/1.1 upgrade
 * handshake (Sec-WebSocket-Accept checked), then unmasked server frames parsed in place. Each text
 * frame is handed over as (chunk, start, end) without copying or decoding, so a receiver reads only
 * the bytes it needs (e.g. the `"seq":` stamp) and a thread can keep up with thousands of sockets.
 * Reads go into one buffer per thread (`net`'s `onread`): no allocation and no 'data' event a read.
 *
 * Scope (what a bench browser needs, no more): no extensions unless `offerDeflate` (then compressed
 * frames are reported with `compressed` set and never inflated: they can be counted, not read),
 * no fragmented messages (servers here send every message in one frame; a continuation frame is an
 * error), pings answered with pongs, a close frame ends the connection. Client frames are masked as
 * RFC 6455 requires, with an all-zero key (valid, and the payload then goes out unchanged).
 */
import { createHash, randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';

export interface RawWsOptions {
  readonly host: string;
  readonly port: number;
  /** Request target, e.g. `/live?token=…`. */
  readonly path: string;
  /** Offered subprotocol (Sec-WebSocket-Protocol). */
  readonly protocol?: string;
  readonly localAddress?: string;
  /** Offers permessage-deflate as browsers do (to measure what compression costs the server). */
  readonly offerDeflate?: boolean;
  /** Handshake deadline, ms (default 30 s). */
  readonly timeoutMs?: number;
}

/**
 * Called for every complete text or binary frame; `now` is `performance.now()` taken once per
 * socket read (every frame of one read arrived together). The bytes are valid only during the call.
 */
export type FrameHandler = (
  buf: Buffer,
  start: number,
  end: number,
  now: number,
  compressed: boolean,
) => void;

export interface RawWs {
  /** Sends a text frame (masked). No-op once closed. */
  send(text: string): void;
  /** Sends a binary frame (masked), e.g. MQTT packets. No-op once closed. */
  sendBinary(data: Buffer): void;
  /** Destroys the socket at once (no close handshake). */
  terminate(): void;
  readonly closed: boolean;
}

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const OP_CONTINUATION = 0x0;
const OP_CLOSE = 0x8;
const OP_PING = 0x9;
/** Largest frame accepted, bytes: bounds the partial-frame buffer. */
const MAX_FRAME = 1024 * 1024;
const HEADER_END = Buffer.from('\r\n\r\n');
/** Longest handshake response accepted, bytes. */
const MAX_HANDSHAKE = 16 * 1024;
/**
 * Every socket of this thread reads into this buffer; a read is processed before the next one, and a
 * partial frame is copied out, so sharing it is safe.
 */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

/** A masked client frame (all-zero masking key, so the payload is copied as is). */
export function clientFrame(opcode: number, payload: Buffer): Buffer {
  const len = payload.length;
  const ext = len < 126 ? 0 : len < 65_536 ? 2 : 8;
  const out = Buffer.allocUnsafe(2 + ext + 4 + len);
  out[0] = 0x80 | opcode;
  if (ext === 0) out[1] = 0x80 | len;
  else if (ext === 2) {
    out[1] = 0x80 | 126;
    out.writeUInt16BE(len, 2);
  } else {
    out[1] = 0x80 | 127;
    out.writeBigUInt64BE(BigInt(len), 2);
  }
  out.fill(0, 2 + ext, 6 + ext);
  payload.copy(out, 6 + ext);
  return out;
}

/**
 * Splits a stream of unmasked server frames. Keeps at most one partial frame (≤ MAX_FRAME bytes);
 * whole frames are reported in place, without copying.
 */
export class FrameSplitter {
  private rest: Buffer | undefined;

  constructor(
    private readonly onData: FrameHandler,
    private readonly onControl: (opcode: number, payload: Buffer) => void,
  ) {}

  /** Takes chunk[0, length). Throws on a protocol error (masked or fragmented frame, oversized frame). */
  push(chunk: Buffer, length: number, now: number): void {
    let buf = chunk;
    let n = length;
    if (this.rest) {
      buf = Buffer.concat([this.rest, chunk.subarray(0, length)]);
      n = buf.length;
      this.rest = undefined;
    }
    let off = 0;
    while (n - off >= 2) {
      const b0 = buf[off]!;
      const b1 = buf[off + 1]!;
      if (b1 & 0x80) throw new Error('masked server frame');
      let len = b1 & 0x7f;
      let head = 2;
      if (len === 126) {
        if (n - off < 4) break;
        len = buf.readUInt16BE(off + 2);
        head = 4;
      } else if (len === 127) {
        if (n - off < 10) break;
        len = Number(buf.readBigUInt64BE(off + 2));
        head = 10;
      }
      if (len > MAX_FRAME) throw new Error(`frame of ${len} bytes`);
      if (n - off < head + len) break;
      const start = off + head;
      const end = start + len;
      const opcode = b0 & 0x0f;
      if (opcode === OP_CONTINUATION || (b0 & 0x80) === 0) throw new Error('fragmented message');
      if (opcode < OP_CLOSE) this.onData(buf, start, end, now, (b0 & 0x40) !== 0);
      else this.onControl(opcode, buf.subarray(start, end));
      off = end;
    }
    if (off < n) this.rest = Buffer.from(buf.subarray(off, n));
  }
}

/**
 * Connects and upgrades; resolves once the server answered 101 with the right accept key.
 * `onFrame` gets every data frame, including those in the handshake's read.
 */
export function rawWebSocket(
  opts: RawWsOptions,
  onFrame: FrameHandler,
  onClose?: () => void,
): Promise<RawWs> {
  return new Promise((resolve, reject) => {
    const key = randomBytes(16).toString('base64');
    const accept = createHash('sha1')
      .update(key + GUID)
      .digest('base64');
    const socket: Socket = connect({
      host: opts.host,
      port: opts.port,
      ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
      onread: {
        buffer: READ_BUFFER,
        callback: (n: number) => {
          onRead(READ_BUFFER, n);
          return true; // keep reading
        },
      },
    });
    socket.setNoDelay(true);
    let upgraded = false;
    let closed = false;
    let head: Buffer | undefined;
    const timer = setTimeout(() => fail(new Error('handshake timeout')), opts.timeoutMs ?? 30_000);
    const fail = (err: Error) => {
      clearTimeout(timer);
      socket.destroy();
      if (!upgraded) reject(err);
    };
    const ws: RawWs = {
      send(text) {
        if (!closed) socket.write(clientFrame(0x1, Buffer.from(text)));
      },
      sendBinary(data) {
        if (!closed) socket.write(clientFrame(0x2, data));
      },
      terminate() {
        closed = true;
        socket.destroy();
      },
      get closed() {
        return closed;
      },
    };
    const frames = new FrameSplitter(onFrame, (opcode, payload) => {
      if (opcode === OP_PING) socket.write(clientFrame(0xa, Buffer.from(payload)));
      else if (opcode === OP_CLOSE) {
        if (!closed) socket.end(clientFrame(OP_CLOSE, Buffer.from(payload.subarray(0, 2))));
        closed = true;
      }
    });
    const onRead = (buf: Buffer, n: number) => {
      const now = performance.now();
      if (upgraded) {
        try {
          frames.push(buf, n, now);
        } catch (err) {
          fail(err as Error);
        }
        return;
      }
      // Copied: the read buffer is reused.
      head = head ? Buffer.concat([head, buf.subarray(0, n)]) : Buffer.from(buf.subarray(0, n));
      const endOfHeaders = head.indexOf(HEADER_END);
      if (endOfHeaders < 0) {
        if (head.length > MAX_HANDSHAKE) fail(new Error('handshake response too long'));
        return;
      }
      const text = head.subarray(0, endOfHeaders).toString('latin1');
      const status = /^HTTP\/1\.1 (\d{3})/.exec(text)?.[1];
      if (status !== '101') {
        fail(new Error(`upgrade refused: ${text.split('\r\n')[0]}`));
        return;
      }
      const got = /\r\nsec-websocket-accept:\s*(\S+)/i.exec(text)?.[1];
      if (got !== accept) {
        fail(new Error('bad Sec-WebSocket-Accept'));
        return;
      }
      upgraded = true;
      clearTimeout(timer);
      const rest = head.subarray(endOfHeaders + HEADER_END.length);
      head = undefined;
      resolve(ws);
      if (rest.length > 0) onRead(rest, rest.length);
    };
    socket.on('error', (err) => fail(err));
    socket.on('close', () => {
      closed = true;
      clearTimeout(timer);
      if (!upgraded) reject(new Error('connection closed during the handshake'));
      onClose?.();
    });
    socket.once('connect', () => {
      socket.write(
        `GET ${opts.path} HTTP/1.1\r\nHost: ${opts.host}:${opts.port}\r\nUpgrade: websocket\r\n` +
          `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
          `${opts.protocol ? `Sec-WebSocket-Protocol: ${opts.protocol}\r\n` : ''}` +
          `${opts.offerDeflate ? 'Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n' : ''}\r\n`,
      );
    });
  });
}

/**
 * The unsigned integer after `key` (e.g. `"seq":`) in buf[start, end), or -1 when absent. Reads only
 * up to the key and its digits: the browsers' JSON.parse is not what the benchmark measures.
 */
export function jsonNumberAfter(buf: Buffer, start: number, end: number, key: Buffer): number {
  const i = buf.indexOf(key, start);
  if (i < 0 || i + key.length >= end) return -1;
  let n = 0;
  let o = i + key.length;
  for (; o < end; o++) {
    const c = buf[o]!;
    if (c < 48 || c > 57) break;
    n = n * 10 + (c - 48);
  }
  return o === i + key.length ? -1 : n;
}
