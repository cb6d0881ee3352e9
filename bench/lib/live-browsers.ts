/**
 * The load generator's browsers for the /live fan-out and its Socket.IO baseline, on the raw client
 * of raw-ws.ts: one thread keeps up with hundreds of sockets at 100 messages/s each because a frame
 * costs a header parse and an `indexOf` for the `"seq":` stamp (the device's send time, µs), never a
 * JSON.parse or a `ws` Receiver. Both systems are read the same way, so their numbers compare.
 */
import { constants, inflateRawSync } from 'node:zlib';
import type { Target } from './conn.js';
import { loopbackAddress, mapLimit } from './conn.js';
import { type FrameHandler, jsonNumberAfter, type RawWs, type RawWsOptions, rawWebSocket } from './raw-ws.js';
import { LatencyRecorder } from './stats.js';
import type { WorkerResult, WorkerTask } from './worker-protocol.js';

/** What a generator task runs between `start` and `stop` (gen-worker.ts drives it). */
export interface BrowserTask {
  start(): void;
  stop(): Promise<WorkerResult>;
  progress(): number;
  close(): Promise<void>;
}

const CONNECT_CONCURRENCY = 64;
const SEQ_KEY = Buffer.from('"seq":');
const SUBSCRIBED = Buffer.from('"type":"subscribed"');
const TELEMETRY_START = Buffer.from('{"type":"telemetry"');
const REPLAYED_START = Buffer.from('{"type":"replayed"');
const GAP_START = Buffer.from('{"type":"gap"');
const COUNT_KEY = Buffer.from('"count":');
const ERROR = Buffer.from('"type":"error"');
/** `performance.now()` → epoch µs, the clock of `nowMicros()` (the devices' stamps). */
const originMicros = performance.timeOrigin * 1000;

/** Counts stamped frames and records their latency while recording. */
class Receiver {
  readonly rec = new LatencyRecorder();
  recording = false;
  received = 0;
  /** Epoch ms of the last delivery recorded. */
  lastAt = 0;

  onFrame = (buf: Buffer, start: number, end: number, now: number, compressed: boolean): void => {
    if (!this.recording) return;
    if (compressed) {
      this.received++; // counted, not read: inflating is not the browsers' cost we measure
      this.lastAt = performance.timeOrigin + now;
      return;
    }
    const stamp = jsonNumberAfter(buf, start, end, SEQ_KEY);
    if (stamp <= 0) return;
    this.received++;
    this.lastAt = performance.timeOrigin + now;
    this.rec.add((originMicros + now * 1000 - stamp) / 1000);
  };

  task(sockets: readonly RawWs[]): BrowserTask {
    return {
      start: () => {
        this.recording = true;
      },
      progress: () => this.received,
      stop: async () => {
        this.recording = false;
        return { latency: this.rec.snapshot(), received: this.received, lastAt: this.lastAt };
      },
      close: async () => {
        for (const s of sockets) s.terminate();
      },
    };
  }
}

/** Inflates a connection's first permessage-deflate message (RFC 7692 §7.2.2: append 00 00 ff ff). */
function inflateFirst(payload: Buffer): Buffer {
  const tail = Buffer.from([0x00, 0x00, 0xff, 0xff]);
  return inflateRawSync(Buffer.concat([payload, tail]), { finishFlush: constants.Z_SYNC_FLUSH });
}

/** /live browsers: subscribe to `feeds` and wait for `subscribed` (snapshots before start are ignored). */
export async function liveBrowsers(p: Extract<WorkerTask, { task: 'live' }>): Promise<BrowserTask> {
  const r = new Receiver();
  const sockets = await mapLimit(
    Array.from({ length: p.count }, (_, i) => i),
    CONNECT_CONCURRENCY,
    async (i) => {
      let settle: ((err?: Error) => void) | undefined;
      const subscribed = new Promise<void>((resolve, reject) => {
        settle = (err) => (err ? reject(err) : resolve());
      });
      const ws = await rawWebSocket(
        {
          ...liveOptions(p.target, p.token, i),
          offerDeflate: p.deflate === true,
        },
        (raw, rawStart, rawEnd, now, compressed) => {
          if (settle) {
            // The answer to `subscribe` is the connection's first message, so with deflate it
            // inflates on its own (no earlier context to need).
            const buf = compressed ? inflateFirst(raw.subarray(rawStart, rawEnd)) : raw;
            const start = compressed ? 0 : rawStart;
            const end = compressed ? buf.length : rawEnd;
            const at = (key: Buffer) => {
              const j = buf.indexOf(key, start);
              return j >= 0 && j < end;
            };
            if (at(SUBSCRIBED)) settle();
            else if (at(ERROR)) settle(new Error(buf.toString('utf8', start, end)));
            else return;
            settle = undefined;
            return;
          }
          r.onFrame(raw, rawStart, rawEnd, now, compressed);
        },
        () => settle?.(new Error('closed before subscribed')),
      );
      ws.send(JSON.stringify({ type: 'subscribe', id: 's1', feeds: p.feeds }));
      await subscribed;
      return ws;
    },
  );
  return r.task(sockets);
}

/**
 * An Engine.IO 4 / Socket.IO 5 client over the raw WebSocket: `0` open → send `40`; `40` connected;
 * `2` ping → `3` pong; `42[…]` events go to `onEvent`.
 */
export function sioSocket(
  target: Target,
  role: 'browser' | 'device',
  onEvent: FrameHandler,
  localAddress?: string,
): Promise<RawWs> {
  return new Promise((resolve, reject) => {
    let ws: RawWs | undefined;
    let connected = false;
    const early: string[] = [];
    const send = (text: string) => (ws ? ws.send(text) : early.push(text));
    rawWebSocket(
      {
        host: target.host,
        port: target.port,
        path: `/socket.io/?EIO=4&transport=websocket&role=${role}`,
        ...(localAddress ? { localAddress } : {}),
      },
      (buf, start, end, now) => {
        const c0 = buf[start];
        const c1 = end - start > 1 ? buf[start + 1] : undefined;
        if (c0 === 0x34 && c1 === 0x32)
          onEvent(buf, start, end, now, false); // "42": event
        else if (c0 === 0x32)
          send('3'); // ping → pong
        else if (c0 === 0x30)
          send('40'); // open → connect the main namespace
        else if (c0 === 0x34 && c1 === 0x30 && ws && !connected) {
          connected = true; // "40": connected
          resolve(ws);
        }
      },
      () => {
        if (!connected) reject(new Error('Socket.IO connection closed before connect'));
      },
    ).then((opened) => {
      ws = opened;
      for (const text of early.splice(0)) ws.send(text);
    }, reject);
  });
}

/** Socket.IO browsers (the baseline), read exactly like the /live ones. */
export async function sioBrowsers(p: Extract<WorkerTask, { task: 'sio' }>): Promise<BrowserTask> {
  const r = new Receiver();
  const sockets = await mapLimit(
    Array.from({ length: p.count }, (_, i) => i),
    CONNECT_CONCURRENCY,
    (i) => sioSocket(p.target, 'browser', r.onFrame, loopbackAddress(i)),
  );
  return r.task(sockets);
}

/** Browser `i`'s connection to `/live` with `token` (its own loopback source address). */
function liveOptions(target: Target, token: string, i: number): RawWsOptions {
  return {
    host: target.host,
    port: target.port,
    path: `/live?token=${encodeURIComponent(token)}`,
    protocol: 'telemetry.v1.json',
    localAddress: loopbackAddress(i),
  };
}

/** True when the frame at `start` begins with `prefix`. */
function startsWith(buf: Buffer, start: number, end: number, prefix: Buffer): boolean {
  return (
    end - start >= prefix.length && buf.compare(prefix, 0, prefix.length, start, start + prefix.length) === 0
  );
}

/**
 * Browsers that were away (issue 15): connected beforehand; at `start` every one subscribes to its
 * feed with `since` at once and counts the readings it gets until `replayed` (or `gap`). A browser
 * is exact when it got `expectedEach` readings and `replayed` says the same count.
 */
export async function resumeBrowsers(p: Extract<WorkerTask, { task: 'resume' }>): Promise<BrowserTask> {
  const rec = new LatencyRecorder();
  let t0 = 0;
  let received = 0;
  let done = 0;
  let gaps = 0;
  let exact = 0;
  const browsers = await mapLimit(p.feeds, CONNECT_CONCURRENCY, async (feed, i) => {
    let count = 0;
    let finished = false;
    const ws = await rawWebSocket(
      liveOptions(p.target, p.token, i),
      (buf, start, end, now) => {
        if (finished) return;
        if (startsWith(buf, start, end, TELEMETRY_START)) {
          count++;
          received++;
        } else if (startsWith(buf, start, end, REPLAYED_START)) {
          finished = true;
          done++;
          rec.add(now - t0);
          if (count === p.expectedEach && jsonNumberAfter(buf, start, end, COUNT_KEY) === count) exact++;
        } else if (startsWith(buf, start, end, GAP_START)) {
          finished = true;
          gaps++;
        }
      },
      () => {},
    );
    return { ws, feed };
  });
  return {
    start() {
      t0 = performance.now();
      for (const b of browsers) {
        b.ws.send(JSON.stringify({ type: 'subscribe', id: 'r', feeds: [b.feed], since: p.since }));
      }
    },
    progress: () => done + gaps,
    stop: async () => ({ latency: rec.snapshot(), received, done, gaps, exact }),
    close: async () => {
      for (const b of browsers) b.ws.terminate();
    },
  };
}
