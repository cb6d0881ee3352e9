/**
 * Where an idle MQTT connection's memory goes (issue 8).
 *
 * Starts the bridge in this process (BRIDGE_AUTH=off; `--sut aedes` for plain Aedes as
 * bench/plain-aedes serves it), opens N idle connections from a child process (CONNECT with
 * keepalive 60, CONNACK, then nothing) over TCP and over WebSocket, and reports per connection:
 * RSS (settled, as the idle benchmark reads it, and after a full GC), V8 heap used, external memory,
 * and the heap diff by constructor from two heap snapshots (self sizes; arrays, contexts and other
 * internal nodes are labelled with the object that holds them).
 *
 *   npm run build && node dist/bench/idle-memory.js [--n 2000] [--sut bridge|aedes|raw]
 *        [--transport tcp,ws] [--top 40] [--keep-snapshots DIR] [--no-snapshot] [--idle-wait S] [--by-holder]
 *
 * Run it compiled: under tsx every function carries a `name` property (esbuild's keepNames), which
 * adds ~1.8 KiB of property arrays per connection that the built bridge does not have.
 *
 * `--by-holder` labels each object also with what holds it (`Object ← Socket._events`,
 * `WritableState ← BufferListStream._writableState`): which stream, listener list or dictionary a
 * generic object belongs to.
 *
 * `--process`: the system under test as the idle benchmark runs it (`npm start` in a child process,
 * or bench/plain-aedes), its RSS by kind of mapping read from /proc/<pid>/smaps after it has idled
 * for 20 s, then every 10 s for `--watch` seconds (30) after the connections are up; for the bridge
 * also V8's heap (used and reserved, old and new space) from its `/metrics`. `--node-options=...`
 * starts the bridge with NODE_OPTIONS (V8 flags such as `--max-semi-space-size=4`). Right after a
 * burst of connections V8 holds its grown young generation and whatever the burst promoted to the
 * old generation and then dropped: V8's memory reducer judges the allocation rate from samples taken
 * at garbage collections, so in an idle process it still sees the burst's rate and waits (measured:
 * the first full GC came 60-100 s after the last connection).
 *
 * The clients run in a child process so that their objects are in neither the heap nor the RSS.
 */
import { fork } from 'node:child_process';
import { createReadStream, mkdtempSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createNetServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { type Conn, mapLimit, mqttSession, type Target, type Transport } from './lib/conn.js';
import { connectPacket } from './lib/mqtt-wire.js';
import { smapsRss } from './lib/stats.js';

const here = fileURLToPath(import.meta.url);

// ---------------------------------------------------------------------------------------------
// Client side (child process): holds N idle sessions until told to close.

interface ClientOrder {
  transport: Transport;
  target: Target;
  n: number;
  prefix: string;
}

async function clientMain(): Promise<void> {
  const conns: Conn[] = [];
  process.on('message', async (msg: ClientOrder | 'close') => {
    if (msg === 'close') {
      for (const c of conns.splice(0)) c.close();
      process.send?.({ closed: true });
      return;
    }
    const ids = Array.from({ length: msg.n }, (_, i) => `${msg.prefix}-${i}`);
    try {
      await mapLimit(ids, 50, async (id) => {
        const conn = await mqttSession(
          msg.transport,
          msg.target,
          connectPacket(id, { keepalive: 60 }),
          () => {},
          () => {},
        );
        conns.push(conn);
      });
      process.send?.({ connected: conns.length });
    } catch (err) {
      process.send?.({ error: (err as Error).message });
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Heap snapshot reading.

interface Snapshot {
  /** key → [count, self bytes] */
  groups: Map<string, [number, number]>;
  total: number;
}

/**
 * @param byHolder label objects, closures and internal nodes also with the object and property that
 *   holds them (`Object ← Socket._events`), to tell apart what the constructor name alone does not.
 */
async function readSnapshot(file: string, byHolder = false): Promise<Snapshot> {
  const chunks: Buffer[] = [];
  for await (const c of createReadStream(file)) chunks.push(c as Buffer);
  const snap = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
    snapshot: { meta: { node_fields: string[]; node_types: [string[]]; edge_fields: string[] } };
    nodes: number[];
    edges: number[];
    strings: string[];
  };
  const { meta } = snap.snapshot;
  const nf = meta.node_fields.length;
  const ef = meta.edge_fields.length;
  const types = meta.node_types[0];
  const iType = meta.node_fields.indexOf('type');
  const iName = meta.node_fields.indexOf('name');
  const iSize = meta.node_fields.indexOf('self_size');
  const iEdges = meta.node_fields.indexOf('edge_count');
  const eTo = meta.edge_fields.indexOf('to_node');
  const eType = meta.edge_fields.indexOf('type');
  const eName = meta.edge_fields.indexOf('name_or_index');
  const edgeTypes = (meta as unknown as { edge_types: [string[]] }).edge_types[0];
  const weak = edgeTypes.indexOf('weak');
  const { nodes, edges, strings } = snap;
  const count = nodes.length / nf;
  // The first holder of each node that is a "real" object (object, closure, native): what an
  // array, a context or a hidden node belongs to.
  const owner = new Int32Array(count).fill(-1);
  /** The name of the edge from `owner` (a string index), or -1 for an element or hidden edge. */
  const ownerEdge = new Int32Array(count).fill(-1);
  const namedEdge = new Set(['property', 'internal', 'context', 'shortcut'].map((t) => edgeTypes.indexOf(t)));
  const real = (t: string) => t === 'object' || t === 'closure' || t === 'native' || t === 'regexp';
  let e = 0;
  for (let n = 0; n < count; n++) {
    const from = n;
    const fromType = types[nodes[n * nf + iType]!]!;
    const edgeCount = nodes[n * nf + iEdges]!;
    for (let k = 0; k < edgeCount; k++, e += ef) {
      if (edges[e + eType] === weak) continue;
      const to = edges[e + eTo]! / nf;
      if (owner[to] !== -1) continue;
      if (real(fromType) || fromType === 'hidden' || fromType === 'array') {
        owner[to] = from;
        if (namedEdge.has(edges[e + eType]!)) ownerEdge[to] = edges[e + eName]!;
      }
    }
  }
  const nameOf = (n: number) => strings[nodes[n * nf + iName]!]!;
  const typeOf = (n: number) => types[nodes[n * nf + iType]!]!;
  /** Nearest real-object owner's name, through at most 3 internal hops. */
  const ownerName = (n: number): string => {
    let o = owner[n]!;
    for (let hop = 0; hop < 3 && o !== -1; hop++) {
      if (real(typeOf(o))) return typeOf(o) === 'closure' ? `closure ${nameOf(o) || '(anon)'}` : nameOf(o);
      o = owner[o]!;
    }
    return '?';
  };
  /** ` ← Holder.edge` of a node: the nearest real object holding it, and the property it sits in. */
  const generic = new Set(['Object', 'Array', 'system / Context', '(anon)']);
  const holder = (n: number, depth = 0): string => {
    let o = owner[n]!;
    let edge = ownerEdge[n]!;
    for (let hop = 0; hop < 4 && o !== -1; hop++) {
      if (real(typeOf(o)) || nameOf(o) === 'system / Context') {
        const name = typeOf(o) === 'closure' ? `closure ${nameOf(o) || '(anon)'}` : nameOf(o);
        const here = ` ← ${name}${edge >= 0 ? `.${strings[edge]}` : ''}`;
        // A plain object or array says little by itself: name what holds it too.
        return depth < 2 && (generic.has(name) || name.startsWith('closure'))
          ? here + holder(o, depth + 1)
          : here;
      }
      edge = ownerEdge[o]!;
      o = owner[o]!;
    }
    return '';
  };
  const groups = new Map<string, [number, number]>();
  let total = 0;
  for (let n = 0; n < count; n++) {
    const type = typeOf(n);
    const size = nodes[n * nf + iSize]!;
    if (size === 0) continue;
    total += size;
    let key: string;
    if (type === 'object' || type === 'native' || type === 'regexp') key = nameOf(n);
    else if (type === 'closure') key = `closure ${nameOf(n) || '(anon)'}`;
    else if (type === 'string' || type === 'concatenated string' || type === 'sliced string')
      key = `(string) of ${ownerName(n)}`;
    else if (type === 'code') key = '(code)';
    else key = `(${type}) ${nameOf(n).slice(0, 40)} of ${ownerName(n)}`;
    if (byHolder && type !== 'code') key += holder(n);
    const g = groups.get(key);
    if (g) {
      g[0]++;
      g[1] += size;
    } else groups.set(key, [1, size]);
  }
  return { groups, total };
}

// ---------------------------------------------------------------------------------------------
// Server side.

interface Sut {
  tcp: number;
  http: number;
  wsPath: string;
  close(): Promise<void>;
}

async function startSut(kind: string, dir: string): Promise<Sut> {
  if (kind === 'raw') {
    // The floor: a bare net.Socket / ws WebSocket that answers CONNECT with CONNACK and holds on.
    const { WebSocketServer } = await import('ws');
    const connack = Buffer.from([0x20, 2, 0, 0]);
    const held = new Set<unknown>();
    const net: Server = createNetServer((socket) => {
      held.add(socket);
      socket.once('data', () => socket.write(connack));
      socket.once('close', () => held.delete(socket));
    });
    const http = createHttpServer();
    const wss = new WebSocketServer({ server: http, perMessageDeflate: false });
    wss.on('connection', (ws) => {
      ws.once('message', () => ws.send(connack));
    });
    await new Promise<void>((r) => net.listen(0, '127.0.0.1', r));
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    return {
      tcp: (net.address() as { port: number }).port,
      http: (http.address() as { port: number }).port,
      wsPath: '/',
      close: async () => {
        net.close();
        wss.close();
        http.close();
      },
    };
  }
  if (kind === 'aedes') {
    const { Aedes } = await import('aedes');
    const websocketStream = (await import('websocket-stream')).default as unknown as {
      createServer(options: { server: HttpServer }, onStream: (stream: Duplex) => void): void;
    };
    const aedes = await Aedes.createBroker();
    const net: Server = createNetServer((socket) => aedes.handle(socket));
    const http = createHttpServer();
    websocketStream.createServer({ server: http }, (stream) => aedes.handle(stream as never));
    await new Promise<void>((r) => net.listen(0, '127.0.0.1', r));
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    return {
      tcp: (net.address() as { port: number }).port,
      http: (http.address() as { port: number }).port,
      wsPath: '/',
      close: async () => {
        net.close();
        http.close();
        await new Promise<void>((r) => aedes.close(() => r()));
      },
    };
  }
  const { loadConfig } = await import('../src/config.js');
  const { startBridge } = await import('../src/app.js');
  const bridge = await startBridge(
    loadConfig({
      BRIDGE_MQTT_PORT: '0',
      BRIDGE_HTTP_PORT: '0',
      BRIDGE_HOST: '127.0.0.1',
      BRIDGE_DATA_DIR: dir,
      BRIDGE_AUTH: 'off',
      BRIDGE_DEVICE_RATE: '0',
      BRIDGE_MAX_CONNECTIONS: '0',
      INFLUX_SELF_METRICS_MS: '0',
      LOG_LEVEL: 'error',
    }),
  );
  return { tcp: bridge.ports.mqtt, http: bridge.ports.http, wsPath: '/mqtt', close: () => bridge.close() };
}

const gc = (() => {
  v8.setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
})();

function fullGc(): void {
  for (let i = 0; i < 3; i++) gc();
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** RSS in bytes once it stopped moving, as bench/scenarios/connections.ts reads it (no forced GC). */
async function settledRss(): Promise<number> {
  let last = process.memoryUsage.rss();
  for (let i = 0; i < 20; i++) {
    await sleep(250);
    const now = process.memoryUsage.rss();
    if (Math.abs(now - last) < 64 * 1024) return now;
    last = now;
  }
  return last;
}

interface Sample {
  rssSettled: number;
  /** RSS after `--idle-wait` more seconds of idleness (V8's memory reducer runs after ~8 s idle). */
  rssIdle: number;
  rssGc: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
  mallocedMemory: number;
  smapsBrk: number;
  smapsAnon: number;
  smapsAnonBig: number;
  [space: `${string}_space`]: number;
}

async function sample(idleWaitMs: number): Promise<Sample> {
  const rssSettled = await settledRss();
  await sleep(idleWaitMs);
  const rssIdle = process.memoryUsage.rss();
  fullGc();
  await sleep(200);
  fullGc();
  const m = process.memoryUsage();
  const h = v8.getHeapStatistics();
  const maps = smapsRss();
  return {
    rssSettled,
    rssIdle,
    rssGc: m.rss,
    heapUsed: m.heapUsed,
    heapTotal: m.heapTotal,
    external: m.external,
    arrayBuffers: m.arrayBuffers,
    mallocedMemory: h.malloced_memory,
    smapsBrk: maps.brk,
    smapsAnon: maps.anon,
    smapsAnonBig: maps.anonBig,
    ...Object.fromEntries(v8.getHeapSpaceStatistics().map((sp) => [sp.space_name, sp.space_size])),
  };
}

function ask(child: ReturnType<typeof fork>, msg: unknown): Promise<Record<string, unknown>> {
  return new Promise((resolve) => {
    child.once('message', (m) => resolve(m as Record<string, unknown>));
    child.send(msg as never);
  });
}

const kib = (b: number) => (b / 1024).toFixed(2);

async function serverMain(): Promise<void> {
  const { values } = parseArgs({
    options: {
      n: { type: 'string', default: '2000' },
      sut: { type: 'string', default: 'bridge' },
      transport: { type: 'string', default: 'tcp,ws' },
      top: { type: 'string', default: '40' },
      'keep-snapshots': { type: 'string' },
      'no-snapshot': { type: 'boolean', default: false },
      'idle-wait': { type: 'string', default: '0' },
      'by-holder': { type: 'boolean', default: false },
    },
  });
  const n = Number(values.n);
  const top = Number(values.top);
  const idleWaitMs = Number(values['idle-wait']) * 1000;
  const dir = mkdtempSync(join(tmpdir(), 'idle-memory-'));
  const snapDir = values['keep-snapshots'] ?? dir;
  const sut = await startSut(values.sut!, dir);
  const child = fork(here, ['--client'], { execArgv: process.execArgv });
  console.log(`sut=${values.sut} n=${n} node ${process.version}`);
  const transports = values.transport!.split(',') as Transport[];
  const targetOf = (transport: Transport): Target => ({
    host: '127.0.0.1',
    port: transport === 'tcp' ? sut.tcp : sut.http,
    path: sut.wsPath,
  });
  const hold = async (transport: Transport, count: number, prefix: string) => {
    const res = await ask(child, { transport, target: targetOf(transport), n: count, prefix });
    if (res.error) throw new Error(String(res.error));
    return Number(res.connected);
  };
  const release = async () => {
    await ask(child, 'close');
    await sleep(1000);
  };
  const snapshots: { transport: Transport; before: string; after: string }[] = [];
  try {
    // Warm up: one round of connections first, so code, shapes and pools exist before "before".
    for (const transport of transports) await hold(transport, 50, `warm-${transport}`);
    await release();
    // Pass 1: memory figures, with no heap snapshot anywhere near (writing one grows the RSS).
    for (const transport of transports) {
      const before = await sample(idleWaitMs);
      const t0 = performance.now();
      const connected = await hold(transport, n, `idle-${transport}`);
      const connectMs = performance.now() - t0;
      const after = await sample(idleWaitMs);
      console.log(
        `\n== ${transport}: ${connected} connections in ${Math.round(connectMs)} ms; per connection (KiB):`,
      );
      for (const k of Object.keys(before) as (keyof Sample)[]) {
        console.log(`  ${k.padEnd(14)} ${kib(((after[k] ?? 0) - (before[k] ?? 0)) / n).padStart(8)}`);
      }
      await release();
    }
    // Pass 2: the same again between two heap snapshots; read them once every connection is gone.
    for (const transport of values['no-snapshot'] ? [] : transports) {
      fullGc();
      const before = v8.writeHeapSnapshot(join(snapDir, `${values.sut}-${transport}-before.heapsnapshot`));
      await hold(transport, n, `snap-${transport}`);
      await sleep(500);
      fullGc();
      const after = v8.writeHeapSnapshot(join(snapDir, `${values.sut}-${transport}-after.heapsnapshot`));
      await release();
      snapshots.push({ transport, before, after });
    }
    for (const s of snapshots) {
      const a = await readSnapshot(s.before, values['by-holder']);
      const b = await readSnapshot(s.after, values['by-holder']);
      console.log(
        `\n== ${s.transport}: heap snapshot diff, ${kib((b.total - a.total) / n)} KiB per connection`,
      );
      const rows: { key: string; count: number; bytes: number }[] = [];
      for (const [key, [count, bytes]] of b.groups) {
        const old = a.groups.get(key) ?? [0, 0];
        rows.push({ key, count: (count - old[0]) / n, bytes: (bytes - old[1]) / n });
      }
      rows.sort((x, y) => y.bytes - x.bytes);
      console.log('  bytes/conn  objs/conn  constructor (self sizes; internal nodes by holder)');
      for (const r of rows.slice(0, top)) {
        console.log(`  ${r.bytes.toFixed(0).padStart(9)}  ${r.count.toFixed(2).padStart(9)}  ${r.key}`);
      }
      if (!values['keep-snapshots']) {
        rmSync(s.before);
        rmSync(s.after);
      }
    }
  } finally {
    child.kill();
    await sut.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** V8 heap figures of a running bridge, from the default metrics on its `/metrics` (bytes). */
async function heapFigures(httpPort: number): Promise<Record<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  const value = (re: RegExp) => Number(re.exec(text)?.[1] ?? Number.NaN);
  return {
    used: value(/^nodejs_heap_size_used_bytes (\S+)$/m),
    total: value(/^nodejs_heap_size_total_bytes (\S+)$/m),
    external: value(/^nodejs_external_memory_bytes (\S+)$/m),
    old_used: value(/^nodejs_heap_space_size_used_bytes\{space="old"\} (\S+)$/m),
    old_total: value(/^nodejs_heap_space_size_total_bytes\{space="old"\} (\S+)$/m),
    new_total: value(/^nodejs_heap_space_size_total_bytes\{space="new"\} (\S+)$/m),
  };
}

/** `--process`: RSS by mapping kind of a SUT in its own process, steady state (see the top). */
async function processMain(): Promise<void> {
  const { values } = parseArgs({
    options: {
      process: { type: 'boolean' },
      n: { type: 'string', default: '2000' },
      sut: { type: 'string', default: 'bridge' },
      transport: { type: 'string', default: 'tcp,ws' },
      watch: { type: 'string', default: '30' },
      'node-options': { type: 'string', default: '' },
    },
  });
  const { pinning, startAedesSut, startBridgeSut } = await import('./lib/suts.js');
  const { freePort } = await import('../test/support/services.js');
  const n = Number(values.n);
  const pin = pinning();
  for (const transport of values.transport!.split(',') as Transport[]) {
    const dir = mkdtempSync(join(tmpdir(), 'idle-memory-'));
    const ports = { mqtt: await freePort(), http: await freePort() };
    const sut =
      values.sut === 'aedes'
        ? await startAedesSut(pin, ports)
        : await startBridgeSut(pin, {
            ports,
            dataDir: dir,
            env: values['node-options'] ? { NODE_OPTIONS: values['node-options'] } : {},
          });
    const child = fork(here, ['--client'], { execArgv: process.execArgv });
    try {
      await sleep(20_000);
      const before = smapsRss(sut.pid);
      const heapBefore = values.sut === 'aedes' ? undefined : await heapFigures(sut.httpPort);
      const target = {
        host: '127.0.0.1',
        port: transport === 'tcp' ? sut.mqttPort : sut.httpPort,
        path: sut.wsPath,
      };
      const res = await ask(child, { transport, target, n, prefix: `proc-${transport}` });
      if (res.error) throw new Error(String(res.error));
      for (let t = 0; t <= Number(values.watch); t += 10) {
        if (t > 0) await sleep(10_000);
        const after = smapsRss(sut.pid);
        const per = (k: keyof typeof after) => kib((after[k] - before[k]) / n);
        const total =
          after.brk +
          after.anon +
          after.anonBig +
          after.file -
          before.brk -
          before.anon -
          before.anonBig -
          before.file;
        console.log(
          `${values.sut} ${transport} +${t}s: ${kib(total / n)} KiB/conn (malloc heap ${per('brk')}, anonymous ${per('anon')}, files ${per('file')})`,
        );
        if (heapBefore) {
          // The bridge's own figures (prom-client's default metrics): V8's heap, used and reserved.
          const heap = await heapFigures(sut.httpPort);
          const d = (k: string) => kib(((heap[k] ?? 0) - (heapBefore[k] ?? 0)) / n);
          console.log(
            `  V8 heap used ${d('used')}, heap total ${d('total')} (old space ${d('old_used')} of ${d('old_total')}, new space ${d('new_total')}), external ${d('external')} KiB/conn`,
          );
        }
      }
    } finally {
      child.kill();
      await sut.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }
}

if (process.argv.includes('--client')) await clientMain();
else if (process.argv.includes('--process')) await processMain();
else await serverMain();
