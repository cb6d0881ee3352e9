/**
 * One load-generator thread. The parent (generator.ts) sends `init` with a task and its slice of the
 * load; the worker connects, answers `ready`, and runs between `start` and `stop`. Every task records
 * latency only between start and stop.
 *
 * Tasks:
 * - `ingest`: devices keep `window` QoS 1 telemetry PUBLISHes in flight each; PUBACK latency.
 * - `rate`: devices publish telemetry at a fixed total rate (QoS 1 unless `qos` says 0), `seq` =
 *   send time in µs.
 * - `subscribe`: MQTT subscribers (QoS 0) read with `fastRead` connections (conn.ts); latency =
 *   receive time − the `seq` stamp. A connection the server closes while recording counts as
 *   dropped (a broker dropping a subscriber that fell behind).
 * - `hold`: idle connections; with `reconnect`, each reconnects after its server went away (storm).
 * - `live`: /live browsers (JSON over WebSocket); latency from the message's `seq` stamp.
 * - `resume`: /live browsers that were away, all resuming at once from a cursor (history, issue 15);
 *   latency = start to each browser's `replayed`.
 * - `sio`: Socket.IO browsers as raw Engine.IO 4 WebSocket clients; `sio-rate`: Socket.IO devices.
 *   Both browser kinds are raw `net` WebSocket clients (live-browsers.ts, raw-ws.ts).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { type Conn, loopbackAddress, mapLimit, mqttSession } from './conn.js';
import { liveBrowsers, resumeBrowsers, sioBrowsers, sioSocket } from './live-browsers.js';
import {
  connectPacket,
  DISCONNECT,
  nowMicros,
  PACKET,
  pubackId,
  publishPayloadOffset,
  subscribePacket,
  TelemetryTemplate,
  telemetrySeq,
} from './mqtt-wire.js';
import { LatencyRecorder } from './stats.js';
import type { WorkerResult, WorkerTask } from './worker-protocol.js';

interface Running {
  start(): void;
  stop(): Promise<WorkerResult>;
  arm?(): void;
  progress?(): number;
  close(): Promise<void>;
}

const KEEPALIVE_S = 600;
const CONNECT_CONCURRENCY = 64;
const epochMs = () => performance.timeOrigin + performance.now();

async function ingest(p: Extract<WorkerTask, { task: 'ingest' }>): Promise<Running> {
  let rec = new LatencyRecorder();
  let running = false;
  let sent = 0;
  let acked = 0;
  let inflight = 0;
  let drained: (() => void) | undefined;
  const conns: Conn[] = [];
  await mapLimit(p.devices, CONNECT_CONCURRENCY, async (d, i) => {
    const tpl = new TelemetryTemplate(d.id);
    const sendTimes = new Float64Array(65_536);
    let seq = 0;
    let nextId = 1;
    const next = (): Buffer => {
      const id = nextId;
      nextId = nextId === 65_535 ? 1 : nextId + 1;
      seq++;
      sendTimes[id] = performance.now();
      sent++;
      inflight++;
      return tpl.publish(1, id, seq, p.baseTimeMs + seq);
    };
    const out: Buffer[] = [];
    let conn: Conn | undefined;
    const flush = () => {
      if (out.length === 0) return;
      conn?.send(out.length === 1 ? out[0]! : Buffer.concat(out));
      out.length = 0;
    };
    conn = await mqttSession(
      p.transport,
      { ...p.target, ...(p.spreadAddresses ? { localAddress: loopbackAddress(i) } : {}) },
      connectPacket(d.id, {
        username: d.id,
        ...(d.password ? { password: d.password } : {}),
        keepalive: KEEPALIVE_S,
      }),
      (type, buf, start) => {
        if (type !== PACKET.PUBACK) return;
        const id = pubackId(buf, start);
        rec.add(performance.now() - sendTimes[id]!);
        acked++;
        inflight--;
        if (running) {
          out.push(next());
          // Replies to one chunk go out as one write: the generator must not be the bottleneck.
          if (out.length === 1) queueMicrotask(flush);
        } else if (inflight === 0) drained?.();
      },
      () => {},
    );
    conns.push(conn);
    (conn as Conn & { kick?: () => void }).kick = () => {
      for (let k = 0; k < p.window; k++) out.push(next());
      flush();
    };
  });
  return {
    start() {
      running = true;
      for (const c of conns) (c as Conn & { kick: () => void }).kick();
    },
    // The end of a warm-up: latencies from here on.
    arm() {
      rec = new LatencyRecorder();
    },
    progress: () => acked,
    async stop() {
      running = false;
      if (inflight > 0) {
        await new Promise<void>((resolve) => {
          drained = resolve;
          setTimeout(resolve, 15_000);
        });
      }
      return { latency: rec.snapshot(), sent, acked };
    },
    async close() {
      for (const c of conns) {
        c.send(DISCONNECT);
        c.close();
      }
    },
  };
}

async function rate(p: Extract<WorkerTask, { task: 'rate' }>): Promise<Running> {
  const qos = p.qos ?? 1;
  let acked = 0;
  let sent = 0;
  const devices = await mapLimit(p.devices, CONNECT_CONCURRENCY, async (id) => ({
    tpl: new TelemetryTemplate(id),
    nextId: 1,
    conn: await mqttSession(
      p.transport,
      p.target,
      connectPacket(id, { username: id, keepalive: KEEPALIVE_S }),
      (type) => {
        if (type === PACKET.PUBACK) acked++;
      },
      () => {},
    ),
  }));
  let timer: NodeJS.Timeout | undefined;
  return {
    start() {
      const t0 = performance.now();
      timer = setInterval(() => {
        const due = Math.min(Math.floor(((performance.now() - t0) / 1000) * p.rate), p.total ?? Infinity);
        while (sent < due) {
          const d = devices[sent % devices.length]!;
          const id = d.nextId;
          if (qos) d.nextId = id === 65_535 ? 1 : id + 1;
          // seq carries the send time (µs) for the receivers; the sample time is the wall clock.
          d.conn.send(d.tpl.publish(qos, id, nowMicros(), Date.now()));
          sent++;
        }
      }, 1);
    },
    progress: () => acked,
    async stop() {
      clearInterval(timer);
      return { sent, acked };
    },
    async close() {
      for (const d of devices) {
        d.conn.send(DISCONNECT);
        d.conn.close();
      }
    },
  };
}

async function subscribe(p: Extract<WorkerTask, { task: 'subscribe' }>): Promise<Running> {
  const rec = new LatencyRecorder();
  let recording = false;
  let closing = false;
  let received = 0;
  let dropped = 0;
  let lastAt = 0;
  const conns = await mapLimit(p.clients, CONNECT_CONCURRENCY, async (id) => {
    let subacked: (() => void) | undefined;
    const suback = new Promise<void>((r) => {
      subacked = r;
    });
    const conn = await mqttSession(
      p.transport,
      p.target,
      connectPacket(id, { username: id, keepalive: KEEPALIVE_S }),
      (type, buf, start) => {
        if (type === PACKET.SUBACK) subacked?.();
        else if (type === PACKET.PUBLISH && recording) {
          const stamp = telemetrySeq(buf, publishPayloadOffset(buf, start));
          received++;
          const now = nowMicros();
          lastAt = now / 1000;
          if (stamp > 0) rec.add((now - stamp) / 1000);
        }
      },
      () => {
        if (recording && !closing) dropped++;
      },
      30_000,
      true,
    );
    conn.send(subscribePacket(p.topic, 1));
    await suback;
    return conn;
  });
  return {
    start() {
      recording = true;
    },
    progress: () => received,
    async stop() {
      recording = false;
      return { latency: rec.snapshot(), received, dropped, lastAt };
    },
    async close() {
      closing = true;
      for (const c of conns) c.close();
    },
  };
}

async function hold(p: Extract<WorkerTask, { task: 'hold' }>): Promise<Running> {
  let armed = false;
  let connected = 0;
  let attempts = 0;
  let firstConnectAt = 0;
  let lastConnectAt = 0;
  let closing = false;
  const errors = new Set<string>();
  const conns = new Map<string, Conn>();
  const open = async (id: string, i: number): Promise<void> => {
    attempts++;
    try {
      const conn = await mqttSession(
        p.transport,
        p.target,
        connectPacket(id, { username: id, keepalive: KEEPALIVE_S }),
        () => {},
        () => {
          connected--;
          conns.delete(id);
          // A device retries at once with jitter, then backs off a little on refusals (below).
          if (p.reconnect && armed && !closing) setTimeout(() => void open(id, i), Math.random() * 250);
        },
      );
      conns.set(id, conn);
      connected++;
      if (armed) {
        const t = epochMs();
        if (!firstConnectAt) firstConnectAt = t;
        lastConnectAt = t;
      }
    } catch (err) {
      if (errors.size < 5) errors.add((err as Error).message);
      if (p.reconnect && armed && !closing) setTimeout(() => void open(id, i), 200 + Math.random() * 300);
      else if (!armed) throw err;
    }
  };
  await mapLimit(p.clients, p.concurrency, (id, i) => open(id, i));
  return {
    start() {},
    arm() {
      armed = true;
      errors.clear();
    },
    progress: () => connected,
    async stop() {
      return { connected, firstConnectAt, lastConnectAt, attempts, errors: [...errors] };
    },
    async close() {
      closing = true;
      for (const c of conns.values()) c.close();
    },
  };
}

async function sioRate(p: Extract<WorkerTask, { task: 'sio-rate' }>): Promise<Running> {
  let sent = 0;
  const devices = await mapLimit(p.devices, CONNECT_CONCURRENCY, async (id) => ({
    id,
    ws: await sioSocket(p.target, 'device', () => {}),
  }));
  let timer: NodeJS.Timeout | undefined;
  return {
    start() {
      const t0 = performance.now();
      timer = setInterval(() => {
        const due = Math.floor(((performance.now() - t0) / 1000) * p.rate);
        while (sent < due) {
          const d = devices[sent % devices.length]!;
          // The same object the bridge streams on /live (contract §5).
          const reading = {
            type: 'telemetry',
            feed: `telemetry/${d.id}`,
            device: d.id,
            cursor: String(sent),
            seq: nowMicros(),
            time: Date.now(),
            values: { temperature_c: 21.5, humidity: 40.25, pressure_hpa: 1013.2 },
            labels: {},
          };
          d.ws.send(`42${JSON.stringify(['reading', reading])}`);
          sent++;
        }
      }, 1);
    },
    async stop() {
      clearInterval(timer);
      return { sent };
    },
    async close() {
      for (const d of devices) d.ws.terminate();
    },
  };
}

const TASKS = {
  ingest,
  rate,
  subscribe,
  hold,
  live: liveBrowsers,
  resume: resumeBrowsers,
  sio: sioBrowsers,
  'sio-rate': sioRate,
} as const;

const port = parentPort;
if (port) {
  let running: Running | undefined;
  const post = (m: object) => port.postMessage(m);
  const init = workerData as WorkerTask;
  const make = TASKS[init.task] as (p: WorkerTask) => Promise<Running>;
  make(init).then(
    (r) => {
      running = r;
      post({ ev: 'ready' });
    },
    (err: Error) => post({ ev: 'error', message: `${init.task}: ${err.message}` }),
  );
  port.on('message', (m: { cmd: string }) => {
    if (!running) return;
    const r = running;
    switch (m.cmd) {
      case 'start':
        r.start();
        break;
      case 'arm':
        r.arm?.();
        break;
      case 'progress':
        post({ ev: 'progress', value: r.progress?.() ?? 0 });
        break;
      case 'stop':
        r.stop().then((result) => post({ ev: 'result', result }));
        break;
      case 'close':
        r.close().then(() => post({ ev: 'closed' }));
        break;
    }
  });
}
