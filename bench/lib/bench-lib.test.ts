import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import mqttPacket from 'mqtt-packet';
import { BUILTIN_SCHEMAS } from '../../src/config.js';
import { loadSchemas } from '../../src/schemas/registry.js';
import { IDLE_SETTLE, settledReading } from '../scenarios/connections.js';
import { droppedSubscribersCounter } from '../scenarios/mqtt-fanout.js';
import { BenchArgsError, parseBenchArgs } from './args.js';
import { meteredFields, profileKey, type ScenarioResult } from './context.js';
import { deliveryRate } from './fanout.js';
import {
  PACKET,
  PacketSplitter,
  publishPayloadOffset,
  TelemetryTemplate,
  telemetrySeq,
} from './mqtt-wire.js';
import { moduleOf, summarizeProfile } from './profile.js';
import { dominates, evaluateTargets, LIMITS, markdown, type Report, withRatios } from './report.js';
import { cpuMicrosPer, LatencyRecorder, median, otherCpuPercent, summarize } from './stats.js';

const Telemetry = loadSchemas(BUILTIN_SCHEMAS).type('telemetry.v1.Telemetry');

function parse(buf: Buffer): mqttPacket.Packet[] {
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  const out: mqttPacket.Packet[] = [];
  parser.on('packet', (p) => out.push(p));
  parser.on('error', (e) => assert.fail(e));
  parser.parse(buf);
  return out;
}

describe('TelemetryTemplate', () => {
  it('writes PUBLISH packets that mqtt-packet parses and whose payload protobufjs decodes', () => {
    const tpl = new TelemetryTemplate('dev-7');
    // Values around varint boundaries, and a seq past 2^32 (µs timestamps).
    for (const [qos, id, seq, time] of [
      [1, 1, 1, 1],
      [1, 65_535, 127, 128],
      [0, 0, 1_764_115_200_123_456, 1_764_115_200_000],
    ] as const) {
      const [p] = parse(tpl.publish(qos, id, seq, time)) as mqttPacket.IPublishPacket[];
      assert.equal(p?.topic, 'devices/dev-7/telemetry');
      assert.equal(p?.qos, qos);
      if (qos) assert.equal(p?.messageId, id);
      const msg = Telemetry.toObject(Telemetry.decode(p!.payload as Buffer), { longs: Number }) as {
        device_id: string;
        seq: number;
        samples: { time_unix_ms: number; values: Record<string, number> }[];
      };
      assert.equal(msg.device_id, 'dev-7');
      assert.equal(msg.seq, seq);
      assert.equal(msg.samples[0]?.time_unix_ms, time);
      assert.deepEqual(msg.samples[0]?.values, {
        temperature_c: 21.5,
        humidity: 40.25,
        pressure_hpa: 1013.2,
      });
    }
  });

  it('reads seq back from the packet bytes', () => {
    const seq = 1_764_115_200_987_654;
    const buf = new TelemetryTemplate('d').publish(0, 0, seq, 5);
    assert.equal(telemetrySeq(buf, publishPayloadOffset(buf, 0)), seq);
  });
});

describe('PacketSplitter', () => {
  it('splits packets across arbitrary chunk boundaries', () => {
    const tpl = new TelemetryTemplate('x');
    const packets = [
      tpl.publish(1, 1, 1, 1),
      Buffer.from([0x40, 0x02, 0x00, 0x07]),
      tpl.publish(0, 0, 300, 2),
    ];
    const all = Buffer.concat(packets);
    for (const cut of [1, 2, 5, 17, all.length - 1]) {
      const seen: { type: number; len: number }[] = [];
      const s = new PacketSplitter((type, _b, start, end) => seen.push({ type, len: end - start }));
      s.push(all.subarray(0, cut));
      s.push(all.subarray(cut));
      assert.deepEqual(
        seen,
        packets.map((p) => ({ type: p[0]! >> 4, len: p.length })),
        `cut at ${cut}`,
      );
    }
    assert.equal(PACKET.PUBACK, 4);
  });
});

describe('stats', () => {
  it('median: the middle value, or the mean of the two middle ones; NaN for none', () => {
    assert.equal(median([3, 1, 2]), 2);
    assert.equal(median([4, 1, 3, 2]), 2.5);
    assert.ok(Number.isNaN(median([])));
  });
  it('takes percentiles over merged recorders and keeps the exact max', () => {
    const a = new LatencyRecorder();
    const b = new LatencyRecorder();
    for (let i = 1; i <= 100; i++) (i % 2 ? a : b).add(i);
    const s = summarize([a.snapshot(), b.snapshot()]);
    assert.equal(s.count, 100);
    assert.equal(s.p50, 51);
    assert.equal(s.p99, 100);
    assert.equal(s.max, 100);
  });
});

describe('profile summary', () => {
  const frame = (functionName: string, url: string) => ({ functionName, url, lineNumber: 0 });
  it('attributes self time to functions and modules, leaving idle out, and gives the GC share', () => {
    const summary = summarizeProfile({
      nodes: [
        { id: 1, callFrame: frame('(idle)', '') },
        { id: 2, callFrame: frame('writev', '') },
        { id: 3, callFrame: frame('handle', 'file:///x/node_modules/aedes/lib/client.js') },
        { id: 4, callFrame: frame('(garbage collector)', '') },
      ],
      samples: [1, 2, 3, 3, 4],
      timeDeltas: [5000, 1000, 1000, 1000, 1000],
    });
    assert.equal(summary.totalMs, 4);
    assert.equal(summary.gcPercent, 25);
    assert.equal(summary.modules[0]?.module, 'aedes');
    assert.equal(summary.modules[0]?.percent, 50);
    assert.deepEqual(summary.modules.map((m) => m.module).sort(), ['GC', 'aedes', 'native']);
    assert.equal(moduleOf('file:///w/dist/src/bridge/spool.js'), 'src/bridge');
    assert.equal(moduleOf('file:///work/wt/bench/dist/src/topics.js'), 'src', 'a checkout under bench/');
    assert.equal(moduleOf('file:///work/wt/bench/dist/bench/lib/x.js'), 'bench/lib');
    assert.equal(moduleOf('', '(program)'), 'V8 (program)');
  });

  it("counts the bridge's own functions inclusively, once per stack", () => {
    // root → accept (src) → encode (src) → encode (recursion) → writeBuffer (native); root → GC
    const summary = summarizeProfile({
      nodes: [
        { id: 1, callFrame: frame('(root)', ''), children: [2, 6] },
        { id: 2, callFrame: frame('accept', 'file:///w/dist/src/bridge/pipeline.js'), children: [3] },
        { id: 3, callFrame: frame('encode', 'file:///w/dist/src/bridge/live/hub.js'), children: [4] },
        { id: 4, callFrame: frame('encode', 'file:///w/dist/src/bridge/live/hub.js'), children: [5] },
        { id: 5, callFrame: frame('writeBuffer', '') },
        { id: 6, callFrame: frame('(garbage collector)', '') },
      ],
      samples: [5, 5, 6, 2],
      timeDeltas: [1000, 1000, 1000, 1000],
    });
    const incl = new Map(summary.ownInclusive.map((f) => [f.name.split(' ')[0], f.percent]));
    assert.equal(incl.get('accept'), 75); // its own sample and the two under it, not GC's
    assert.equal(incl.get('encode'), 50); // not 100: the recursive frame is counted once
  });
});

describe('command line', () => {
  const known = ['ingest', 'spool-ingest', 'mqtt-fanout', 'idle'];
  const opts = (argv: string[]) => {
    const r = parseBenchArgs(argv, known);
    assert.equal(r.help, false);
    return (r as Extract<typeof r, { help: false }>).options;
  };
  const fails = (argv: string[], message: RegExp) =>
    assert.throws(
      () => parseBenchArgs(argv, known),
      (e: Error) => e instanceof BenchArgsError && message.test(e.message),
    );

  it('--help and -h ask for usage, whatever else is there', () => {
    assert.deepEqual(parseBenchArgs(['--help'], known), { help: true });
    assert.deepEqual(parseBenchArgs(['--quick', '-h'], known), { help: true });
  });

  it("--only runs one scenario; --scenarios several, in the runner's order", () => {
    assert.deepEqual(opts(['--only', 'mqtt-fanout']).scenarios, ['mqtt-fanout']);
    assert.deepEqual(opts(['--only=ingest']).scenarios, ['ingest']);
    assert.deepEqual(opts(['--scenarios', 'idle, ingest']).scenarios, ['ingest', 'idle']);
    assert.deepEqual(opts(['--scenarios=idle', '--scenarios', 'spool-ingest']).scenarios, [
      'spool-ingest',
      'idle',
    ]);
    assert.equal(opts([]).scenarios, undefined);
  });

  it('reads the switches and their negations', () => {
    assert.deepEqual(
      opts(['--quick', '--no-profile', '--no-spool', '--out', '/tmp/x', '--label', 'baseline']),
      {
        quick: true,
        profile: false,
        spool: false,
        outDir: '/tmp/x',
        label: 'baseline',
      },
    );
    assert.deepEqual(opts(['--profile', '--spool']), { quick: false, profile: true, spool: true });
  });

  it('refuses what it does not know, clearly', () => {
    fails(['--bogus'], /^unknown option --bogus$/);
    fails(['--only', 'nope'], /^unknown scenario nope; known: ingest, /);
    fails(['--scenarios', 'ingest,nope'], /^unknown scenario nope/);
    fails(['--only', 'ingest', '--only', 'idle'], /--only takes one scenario/);
    fails(['--only', 'ingest', '--scenarios', 'idle'], /either --only or --scenarios/);
    fails(['--only'], /^option --only needs a value$/);
    fails(['--quick=yes'], /^option --quick takes no value$/);
    fails(['ingest'], /^unexpected argument ingest$/);
    fails(['--scenarios', ' , '], /at least one scenario/);
    fails(['--profile', '--no-profile'], /contradict/);
  });
});

describe('metering arithmetic', () => {
  it("CPU per unit of work, in µs, from the SUT's own CPU seconds", () => {
    assert.equal(cpuMicrosPer(2.5, 500_000), 5);
    assert.equal(cpuMicrosPer(0.013, 3), 4333.33);
    assert.equal(cpuMicrosPer(1, 0), undefined);
  });

  it('the rest of the machine: busy time less SUT and generator, never negative', () => {
    assert.equal(otherCpuPercent(3, 1, 0.5, 10), 15);
    assert.equal(otherCpuPercent(1, 0.9, 0.2, 10), 0);
  });

  it('deliveries per second to the last delivery', () => {
    assert.equal(deliveryRate(500_000, 1_000, 11_000), 50_000);
    assert.equal(deliveryRate(10, 5_000, 5_000), 0);
  });

  it('meteredFields carries cores, the unit and the per-unit CPU', () => {
    const m = meteredFields(
      {
        usage: {
          cpuSeconds: 1.5,
          wallSeconds: 10,
          cpuPercent: 15,
          peakCpuPercent: 30,
          peakRssMiB: 80,
          rssMiB: 70,
        },
        generatorCpuPercent: 40,
        otherCpuPercent: 5,
      },
      '0',
      300_000,
      'delivery',
    );
    assert.deepEqual(m.cpuPer, { micros: 5, unit: 'delivery' });
    assert.equal(m.sutUsage.cores, '0');
    assert.equal(m.sutUsage.peakRssMiB, 80);
    assert.deepEqual(
      meteredFields({ ...m, usage: { ...m.sutUsage, wallSeconds: 1, rssMiB: 1 } } as never, '0', 0, 'msg')
        .cpuPer,
      {
        unit: 'msg',
      },
    );
  });

  it("a dropped-subscriber counter is read from the bridge's /metrics when there is one", () => {
    assert.equal(droppedSubscribersCounter('# HELP x\nbridge_connections{listener="ws"} 3\n'), undefined);
    assert.equal(
      droppedSubscribersCounter(
        'bridge_slow_subscribers_dropped_total{listener="ws"} 4\nbridge_slow_subscribers_dropped_total{listener="tcp"} 1\n',
      ),
      5,
    );
    assert.equal(droppedSubscribersCounter('bridge_subscribers_disconnected_total 2\n'), 2);
  });
});

describe('idle RSS settle rule', () => {
  const rule = { minSeconds: 10, quietSeconds: 3, maxSeconds: 30, toleranceKiB: 64 };
  const series = (points: [number, number][]) => points.map(([t, kib]) => ({ t, kib }));
  it('waits for the minimum, then for a quiet spell within the tolerance', () => {
    assert.equal(
      settledReading(
        series([
          [0, 100],
          [3, 100],
          [6, 100],
          [9, 100],
        ]),
        rule,
      ),
      undefined,
    );
    assert.deepEqual(
      settledReading(
        series([
          [0, 100],
          [5, 100],
          [10, 100],
        ]),
        rule,
      ),
      { t: 10, kib: 100, settled: true },
    );
    // Still shrinking at 10 s (the memory reducer): not yet; quiet from 11 s, read at 14 s.
    const shrinking = series([
      [8, 5000],
      [10, 3000],
      [11, 2000],
      [12, 2010],
      [13, 1990],
      [14, 2000],
    ]);
    assert.equal(settledReading(shrinking.slice(0, 2), rule), undefined);
    assert.equal(settledReading(shrinking.slice(0, 5), rule), undefined);
    assert.deepEqual(settledReading(shrinking, rule), { t: 14, kib: 2000, settled: true });
  });
  it('gives the last reading, marked unsettled, at the maximum', () => {
    const moving = series(Array.from({ length: 31 }, (_, i): [number, number] => [i, 1000 + i * 100]));
    assert.deepEqual(settledReading(moving, rule), { t: 30, kib: 4000, settled: false });
  });
  it('the benchmark waits at least one V8 memory-reducer period', () => {
    assert.ok(IDLE_SETTLE.minSeconds >= 8);
  });
});

describe('targets', () => {
  const row = (group: string, sut: string, baseline: string, value: number, extra = {}): ScenarioResult => ({
    group,
    sut,
    baseline,
    primary: { name: 'm', value, unit: 'u', better: 'higher' },
    params: {},
    sutUsage: { cpuSeconds: 0, cpuPercent: 0, peakCpuPercent: 0, peakRssMiB: 0, cores: '0' },
    cpuPer: { unit: 'msg' },
    generatorCpuPercent: 0,
    otherCpuPercent: 0,
    extra,
  });
  const target = (rows: ScenarioResult[], start: string) =>
    evaluateTargets(rows).find((x) => x.name.startsWith(start));

  it('compares each row with its baseline and judges ingest at 0.7× plain Aedes, on one core', () => {
    const rows = [
      row('ingest-tcp', 'bridge', 'aedes', 69, { dbCountEqualsAcked: true }),
      row('ingest-tcp', 'bridge (2 cores)', 'bridge', 138, { dbCountEqualsAcked: true }),
      row('ingest-tcp', 'aedes', 'aedes', 100),
    ];
    const ratios = withRatios(rows);
    assert.equal(ratios[0]?.ratio, 0.69);
    assert.equal(ratios[1]?.ratio, 2, 'the two-core row is compared with the one-core bridge');
    assert.equal(target(rows, 'ingest TCP')?.met, false, 'the two-core row never stands in for the bridge');
    assert.equal(target(rows, 'ingest TCP')?.ratio, 0.69);
    rows[0] = row('ingest-tcp', 'bridge', 'aedes', 70, { dbCountEqualsAcked: true });
    assert.equal(target(rows, 'ingest TCP')?.met, true);
    rows[0] = row('ingest-tcp', 'bridge', 'aedes', 70, { dbCountEqualsAcked: false });
    assert.equal(target(rows, 'ingest TCP')?.met, false, 'and every acked point must be stored');
    // The same comparison by CPU per message, which a busy machine does not skew.
    rows[0] = { ...rows[0]!, cpuPer: { micros: 40, unit: 'msg' } };
    rows[2] = { ...rows[2]!, cpuPer: { micros: 10, unit: 'msg' } };
    assert.match(target(rows, 'ingest TCP')!.detail, /by CPU per msg: 40 vs 10 µs, 0\.25×/);
  });

  it('judges the fan-out targets as ratios to Mosquitto in the same run', () => {
    const fan = (
      sut: string,
      rate: number,
      p99: number,
      micros: number,
      perSecond: number,
      rss: number,
      extra = {},
    ): ScenarioResult => ({
      ...row(`mqtt-fanout-${rate}`, sut, 'mosquitto', rate > 100 ? perSecond : p99),
      throughput: { value: perSecond, unit: 'deliveries/s' },
      latencyMs: { count: 1, p50: 1, p99, max: p99 },
      cpuPer: { micros, unit: 'delivery' },
      sutUsage: { cpuSeconds: 1, cpuPercent: 1, peakCpuPercent: 1, peakRssMiB: rss, cores: '0' },
      extra: {
        allDelivered: true,
        subscribersDropped: 0,
        received: 10,
        expected: 10,
        deliveredFraction: 1,
        ...extra,
      },
    });
    const rows = [
      fan('bridge', 100, 20, 8, 50_000, 100),
      fan('mosquitto', 100, 10, 5, 50_000, 10),
      fan('bridge', 1000, 900, 6, 150_000, 238),
      fan('mosquitto', 1000, 500, 5, 160_000, 30),
    ];
    assert.equal(target(rows, 'MQTT fan-out 100 msg/s × 500')?.met, true);
    assert.deepEqual(
      [target(rows, 'MQTT fan-out 100 msg/s: p99')?.met, target(rows, 'MQTT fan-out 100 msg/s: p99')?.ratio],
      [true, 2],
    );
    assert.deepEqual(
      [
        target(rows, 'MQTT fan-out 100 msg/s: bridge CPU')?.met,
        target(rows, 'MQTT fan-out 100 msg/s: bridge CPU')?.ratio,
      ],
      [true, 1.6],
    );
    assert.deepEqual(
      [target(rows, 'MQTT fan-out 1,000 msg/s (')?.met, target(rows, 'MQTT fan-out 1,000 msg/s (')?.ratio],
      [false, 0.94],
    );
    // 250 MB = 238.4 MiB: 238 MiB is under it.
    assert.equal(target(rows, 'MQTT fan-out 1,000 msg/s: bridge peak RSS')?.met, true);
    assert.equal(LIMITS.fanoutPeakRssBytes, 250e6);
    rows[2] = fan('bridge', 1000, 900, 6, 170_000, 239);
    assert.equal(target(rows, 'MQTT fan-out 1,000 msg/s: bridge peak RSS')?.met, false);
    assert.equal(target(rows, 'MQTT fan-out 1,000 msg/s (')?.met, true);
    rows[0] = fan('bridge', 100, 20.1, 8.1, 50_000, 100, { subscribersDropped: 1 });
    assert.equal(target(rows, 'MQTT fan-out 100 msg/s × 500')?.met, false);
    assert.equal(target(rows, 'MQTT fan-out 100 msg/s: p99')?.met, false);
    assert.equal(target(rows, 'MQTT fan-out 100 msg/s: bridge CPU')?.met, false);
  });

  it('writes every row with its CPU per unit and says what dominates each profiled bridge row', () => {
    const rows = [
      { ...row('ingest-tcp', 'bridge', 'aedes', 50), cpuPer: { micros: 12.5, unit: 'msg' as const } },
      row('ingest-tcp', 'aedes', 'aedes', 100),
    ];
    const report: Report = {
      date: '2026-12-02T00:00:00.000Z',
      mode: 'full',
      scenarios: ['ingest'],
      durationSeconds: 60,
      machine: {
        cpu: 'x',
        cores: 2,
        memoryGiB: 1,
        freeMemoryGiB: 1,
        kernel: 'k',
        loadAverageAtStart: [1, 1, 1],
      },
      versions: {},
      pinning: 'p',
      notes: [],
      results: withRatios(rows),
      targets: evaluateTargets(rows),
      profiles: [
        {
          group: 'ingest-tcp',
          sut: 'bridge',
          summary: summarizeProfile({
            nodes: [{ id: 1, callFrame: { functionName: '(garbage collector)', url: '', lineNumber: 0 } }],
            samples: [1],
            timeDeltas: [1000],
          }),
        },
      ],
      extras: {},
    };
    const md = markdown(report);
    assert.match(md, /\| ingest-tcp \| bridge \| 0 \| .* \| 12\.5 \/msg \|/);
    assert.match(md, /0\.5× aedes/);
    assert.match(md, /\*\*missed\*\* \| 0\.5 \|/);
    assert.doesNotMatch(md, /idle connection/, 'targets of scenarios that did not run are left out');
    const lines = dominates(report);
    assert.match(lines.at(-1)!, /^- \*\*ingest-tcp · bridge\*\* — 12\.5 µs per msg .*GC 100 %/);
    assert.equal(profileKey('ingest-tcp', 'bridge (2 cores)'), 'ingest-tcp~bridge_2_cores_');
  });
});
