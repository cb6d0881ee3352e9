/**
 * Raw client connections for the load generator: MQTT over TCP (`net`) or WebSocket (`ws`, binary
 * frames, subprotocol `mqtt`), speaking pre-encoded packets (mqtt-wire.ts).
 *
 * `fastRead` connections are for receivers that must keep up with hundreds of thousands of packets
 * a second on one core (the MQTT fan-out's subscribers): every socket of the thread reads into one
 * shared buffer (`net`'s `onread`: no allocation and no 'data' event per read), and WebSocket is
 * the raw client of raw-ws.ts instead of `ws`, whose per-frame Receiver would limit the generator
 * before the system under test. Both systems of a comparison are read the same way.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { WebSocket } from 'ws';
import { PACKET, PacketSplitter } from './mqtt-wire.js';
import { rawWebSocket } from './raw-ws.js';

/** The read buffer of every fast-read TCP socket of this thread (a read is consumed before the next). */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

export type Transport = 'tcp' | 'ws';

export interface Target {
  readonly host: string;
  /** TCP port (tcp) or HTTP port (ws). */
  readonly port: number;
  /** WebSocket path, default `/mqtt`. */
  readonly path?: string;
  /** Source address (any of 127.0.0.0/8) to spread per-address limits such as the login throttle. */
  readonly localAddress?: string;
}

export interface Conn {
  send(buf: Buffer): void;
  close(): void;
  readonly closed: boolean;
}

/**
 * Opens a byte pipe; resolves once it is open. With `fastRead`, `onData`'s chunk is valid only
 * during the call (the read buffer is reused).
 */
export function openConn(
  transport: Transport,
  target: Target,
  onData: (chunk: Buffer) => void,
  onClose: () => void,
  fastRead = false,
): Promise<Conn> {
  if (fastRead && transport === 'ws') return openRawWs(target, onData, onClose);
  return new Promise((resolve, reject) => {
    let open = false;
    let closed = false;
    const fail = (err: Error) => {
      if (!open) reject(err);
    };
    const done = () => {
      if (closed) return;
      closed = true;
      if (open) onClose();
    };
    if (transport === 'tcp') {
      const socket: Socket = netConnect({
        host: target.host,
        port: target.port,
        ...(target.localAddress ? { localAddress: target.localAddress } : {}),
        ...(fastRead
          ? {
              onread: {
                buffer: READ_BUFFER,
                callback: (n: number) => {
                  onData(READ_BUFFER.subarray(0, n));
                  return true;
                },
              },
            }
          : {}),
      });
      socket.setNoDelay(true);
      if (!fastRead) socket.on('data', onData);
      socket.on('error', fail);
      socket.on('close', done);
      socket.once('connect', () => {
        open = true;
        resolve({
          send: (b) => {
            if (!closed) socket.write(b);
          },
          close: () => socket.destroy(),
          get closed() {
            return closed;
          },
        });
      });
    } else {
      const ws = new WebSocket(`ws://${target.host}:${target.port}${target.path ?? '/mqtt'}`, 'mqtt', {
        perMessageDeflate: false,
        ...(target.localAddress ? { localAddress: target.localAddress } : {}),
      });
      ws.binaryType = 'nodebuffer';
      ws.on('message', (data: Buffer) => onData(data));
      ws.on('error', fail);
      ws.on('close', done);
      ws.once('open', () => {
        open = true;
        resolve({
          send: (b) => {
            if (!closed && ws.readyState === WebSocket.OPEN) ws.send(b);
          },
          close: () => ws.terminate(),
          get closed() {
            return closed;
          },
        });
      });
    }
  });
}

/** MQTT over WebSocket with the raw client (raw-ws.ts): binary frames, subprotocol `mqtt`. */
async function openRawWs(
  target: Target,
  onData: (chunk: Buffer) => void,
  onClose: () => void,
): Promise<Conn> {
  let open = false;
  const ws = await rawWebSocket(
    {
      host: target.host,
      port: target.port,
      path: target.path ?? '/mqtt',
      protocol: 'mqtt',
      ...(target.localAddress ? { localAddress: target.localAddress } : {}),
    },
    (buf, start, end) => onData(buf.subarray(start, end)),
    () => {
      if (open) onClose();
    },
  );
  open = true;
  return {
    send: (b) => ws.sendBinary(b),
    close: () => ws.terminate(),
    get closed() {
      return ws.closed;
    },
  };
}

/**
 * Opens a connection, sends CONNECT and resolves after CONNACK 0; later packets go to `onPacket`
 * (valid only during the call). Rejects on a refusal, a close before CONNACK or `timeoutMs`.
 */
export async function mqttSession(
  transport: Transport,
  target: Target,
  connect: Buffer,
  onPacket: (type: number, buf: Buffer, start: number, end: number) => void,
  onClose: () => void,
  timeoutMs = 30_000,
  fastRead = false,
): Promise<Conn> {
  let settle: ((err?: Error) => void) | undefined;
  const connack = new Promise<void>((resolve, reject) => {
    settle = (err) => (err ? reject(err) : resolve());
  });
  let connected = false;
  const splitter = new PacketSplitter((type, buf, start, end) => {
    if (!connected && type === PACKET.CONNACK) {
      const rc = buf[start + 3];
      if (rc === 0) {
        connected = true;
        settle?.();
      } else settle?.(new Error(`CONNACK ${rc}`));
      return;
    }
    onPacket(type, buf, start, end);
  });
  const conn = await openConn(
    transport,
    target,
    (c) => splitter.push(c),
    () => {
      if (!connected) settle?.(new Error('closed before CONNACK'));
      else onClose();
    },
    fastRead,
  );
  conn.send(connect);
  const timer = setTimeout(() => settle?.(new Error('CONNACK timeout')), timeoutMs);
  try {
    await connack;
  } catch (err) {
    conn.close();
    throw err;
  } finally {
    clearTimeout(timer);
  }
  return conn;
}

/** Runs `fn` over `items` with at most `limit` at a time. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, i: number) => Promise<R>,
): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  });
  await Promise.all(lanes);
  return out;
}

/** A source address for the i-th client, spread over 127.0.0.2–127.0.0.251. */
export function loopbackAddress(i: number): string {
  return `127.0.0.${2 + (i % 250)}`;
}
