/**
 * Spool engine benchmark: the append-only segment log (src/bridge/storage/spool.ts, fs.promises + fdatasync,
 * group commit) against better-sqlite3 12 in WAL mode with synchronous=FULL (group commit by one
 * transaction per event-loop turn; better-sqlite3 is synchronous, so every commit blocks the loop).
 *
 * Measures, per engine and producer count: appends/s (each append = 1 message of `LINES` lines, each
 * producer waits for durability before its next append, as a QoS 1 PUBACK would), syncs/s, append
 * latency p50/p99, event-loop delay p99/max; then recovery time (open) of a spool holding ~`RECOVER_MB`.
 * Also the raw cost of one 4 KiB write + fdatasync on this disk, and the writer's read path: `READ_LINES`
 * one-line appends read back in batches of 5000 and confirmed, from the memory tail and from disk
 * (memoryBytes 0, as after a restart).
 *
 *   node --import tsx bench/spool.ts   # SECONDS_EACH=3 PRODUCERS=1,50,500 LINES=1 RECOVER_MB=64 READ_LINES=200000
 */
import { rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import Database from 'better-sqlite3';
import { DEFAULT_SPOOL_MEMORY_BYTES, Spool } from '../src/bridge/storage/spool.js';
import { tempDir } from '../test/support/services.js';

const SECONDS = Number(process.env['SECONDS_EACH'] ?? 3);
const PRODUCERS = (process.env['PRODUCERS'] ?? '1,50,500').split(',').map(Number);
const LINES = Number(process.env['LINES'] ?? 1);
const RECOVER_MB = Number(process.env['RECOVER_MB'] ?? 64);
const READ_LINES = Number(process.env['READ_LINES'] ?? 200_000);
const LINE =
  'telemetry,device_id=dev-0042,room=lab-3 humidity=40.25,pressure_hpa=1013.2,temperature_c=21.5 1764115200000';

interface Engine {
  append(lines: readonly string[]): Promise<void>;
  syncs(): number;
  close(): Promise<void>;
}

class SqliteSpool implements Engine {
  private readonly db: Database.Database;
  private readonly insert: Database.Statement;
  private pending: { payload: string; n: number; resolve(): void; reject(e: Error): void }[] = [];
  private scheduled = false;
  private commits = 0;
  constructor(path: string) {
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.exec(
      'CREATE TABLE IF NOT EXISTS q (id INTEGER PRIMARY KEY, n INTEGER NOT NULL, lines TEXT NOT NULL)',
    );
    this.insert = this.db.prepare('INSERT INTO q (n, lines) VALUES (?, ?)');
  }
  append(lines: readonly string[]): Promise<void> {
    return new Promise((resolve, reject) => {
      this.pending.push({ payload: lines.join('\n'), n: lines.length, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.commit());
      }
    });
  }
  private commit(): void {
    this.scheduled = false;
    const group = this.pending.splice(0);
    this.db.transaction(() => {
      for (const p of group) this.insert.run(p.n, p.payload);
    })();
    this.commits++;
    for (const p of group) p.resolve();
  }
  syncs(): number {
    return this.commits;
  }
  count(): number {
    return (this.db.prepare('SELECT coalesce(sum(n), 0) AS n FROM q').get() as { n: number }).n;
  }
  async close(): Promise<void> {
    this.db.close();
  }
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0;
};

async function run(name: string, engine: Engine, producers: number) {
  const lines = Array.from({ length: LINES }, () => LINE);
  const latencies: number[] = [];
  let appends = 0;
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  const syncs0 = engine.syncs();
  const t0 = performance.now();
  const end = t0 + SECONDS * 1000;
  await Promise.all(
    Array.from({ length: producers }, async () => {
      while (performance.now() < end) {
        const a = performance.now();
        await engine.append(lines);
        latencies.push(performance.now() - a);
        appends++;
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  h.disable();
  const syncs = engine.syncs() - syncs0;
  console.log(
    `${name.padEnd(12)} producers=${String(producers).padStart(3)}  ${Math.round(appends / secs)
      .toString()
      .padStart(6)} appends/s  ${Math.round((appends * LINES) / secs)
      .toString()
      .padStart(6)} lines/s  ${Math.round(syncs / secs)
      .toString()
      .padStart(
        5,
      )} syncs/s  ${(appends / Math.max(1, syncs)).toFixed(1).padStart(5)} appends/sync  latency p50 ${pct(
      latencies,
      50,
    ).toFixed(2)} p99 ${pct(latencies, 99).toFixed(2)} ms  loop delay p99 ${(h.percentile(99) / 1e6).toFixed(
      1,
    )} max ${(h.max / 1e6).toFixed(1)} ms`,
  );
}

async function rawSync(dir: string) {
  const fh = await open(join(dir, 'raw'), 'w');
  const buf = Buffer.alloc(4096, 1);
  const n = 200;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    await fh.write(buf, 0, buf.length, i * 4096);
    await fh.datasync();
  }
  const ms = (performance.now() - t0) / n;
  await fh.close();
  console.log(`raw 4 KiB write + fdatasync: ${ms.toFixed(3)} ms each (${Math.round(1000 / ms)}/s)`);
}

async function readBack(dir: string) {
  for (const memoryBytes of [DEFAULT_SPOOL_MEMORY_BYTES, 0]) {
    const s = await Spool.open({ dir: join(dir, `read-${memoryBytes}`), maxBytes: 1 << 30, memoryBytes });
    let appended = 0;
    // 500 producers of one-line appends, as devices publishing one sample per message.
    await Promise.all(
      Array.from({ length: 500 }, async () => {
        while (appended < READ_LINES) {
          appended++;
          await s.append([LINE]);
        }
      }),
    );
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    let n = 0;
    for (let i = 0; i < READ_LINES; i++) {
      const b = await s.read(5000);
      if (!b) break;
      n += b.count;
      await s.confirm(b);
    }
    const ms = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    await s.close();
    console.log(
      `read-back from ${memoryBytes ? 'memory tail' : 'disk       '}: ${n} lines in ${ms.toFixed(0)} ms (${Math.round(
        (n / ms) * 1000,
      )} lines/s, ${(((cpu.user + cpu.system) / Math.max(n, 1)) * 1000).toFixed(0)} ns CPU per line)`,
    );
  }
}

async function recovery(dir: string) {
  const target = RECOVER_MB * 1024 * 1024;
  const batch = Array.from({ length: 1000 }, () => LINE);
  const perBatch = batch.length * (LINE.length + 1);
  const batches = Math.ceil(target / perBatch);
  const logDir = join(dir, 'recover-log');
  const s = await Spool.open({ dir: logDir, maxBytes: 4 * target });
  for (let i = 0; i < batches; i++) await s.append(batch);
  await s.close();
  let t0 = performance.now();
  const reopened = await Spool.open({ dir: logDir, maxBytes: 4 * target });
  const logMs = performance.now() - t0;
  const points = reopened.backlogPoints;
  await reopened.close();
  const db = new SqliteSpool(join(dir, 'recover.db'));
  for (let i = 0; i < batches; i++) await db.append(batch);
  await db.close();
  t0 = performance.now();
  const db2 = new SqliteSpool(join(dir, 'recover.db'));
  const n = db2.count();
  const sqlMs = performance.now() - t0;
  await db2.close();
  console.log(
    `recovery of ${RECOVER_MB} MiB (${points} points): segment log ${logMs.toFixed(0)} ms; sqlite open+count ${sqlMs.toFixed(0)} ms (${n} points)`,
  );
}

const dir = tempDir('bench-spool');
try {
  console.log(
    `node ${process.version}, ${SECONDS}s per run, ${LINES} line(s) of ${LINE.length} B per append, dir ${dir}`,
  );
  await rawSync(dir);
  for (const producers of PRODUCERS) {
    const log = await Spool.open({ dir: join(dir, `log-${producers}`), maxBytes: 8 * 2 ** 30 });
    await run(
      'segment-log',
      { append: (l) => log.append(l), syncs: () => log.syncs, close: () => log.close() },
      producers,
    );
    await log.close();
    const sql = new SqliteSpool(join(dir, `sqlite-${producers}.db`));
    await run('sqlite-wal', sql, producers);
    await sql.close();
  }
  await readBack(dir);
  await recovery(dir);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
