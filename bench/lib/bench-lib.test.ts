import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import mqttPacket from 'mqtt-packet';
import { BUILTIN_SCHEMAS } from '../../src/config.js';
import { loadSchemas } from '../../src/schemas/registry.js';
import type { ScenarioResult } from './context.js';
import {
  PACKET,
  PacketSplitter,
  publishPayloadOffset,
  TelemetryTemplate,
  telemetrySeq,
} from './mqtt-wire.js';
import { moduleOf, summarizeProfile } from './profile.js';
import { evaluateTargets, withRatios } from './report.js';
import { LatencyRecorder, summarize } from './stats.js';

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
  it('attributes self time to functions and modules, leaving idle out', () => {
    const frame = (functionName: string, url: string) => ({ functionName, url, lineNumber: 0 });
    const summary = summarizeProfile({
      nodes: [
        { id: 1, callFrame: frame('(idle)', '') },
        { id: 2, callFrame: frame('writev', '') },
        { id: 3, callFrame: frame('handle', 'file:///x/node_modules/aedes/lib/client.js') },
      ],
      samples: [1, 2, 3, 3],
      timeDeltas: [5000, 1000, 1000, 2000],
    });
    assert.equal(summary.totalMs, 4);
    assert.equal(summary.modules[0]?.module, 'aedes');
    assert.equal(summary.modules[0]?.percent, 75);
    assert.equal(moduleOf('file:///w/dist/src/bridge/spool.js'), 'src/bridge');
  });
});

describe('targets', () => {
  const row = (group: string, sut: string, baseline: string, value: number, extra = {}): ScenarioResult => ({
    group,
    sut,
    baseline,
    primary: { name: 'm', value, unit: 'u', better: 'higher' },
    params: {},
    sutUsage: { cpuSeconds: 0, cpuPercent: 0, peakCpuPercent: 0, peakRssMiB: 0 },
    generatorCpuPercent: 0,
    extra,
  });
  it('compares each row with its baseline and judges the ingest target', () => {
    const rows = [
      row('ingest-tcp', 'bridge', 'aedes', 90, { dbCountEqualsAcked: true }),
      row('ingest-tcp', 'aedes', 'aedes', 100),
    ];
    assert.equal(withRatios(rows)[0]?.ratio, 0.9);
    const t = evaluateTargets(rows).find((x) => x.name.startsWith('ingest TCP'));
    assert.equal(t?.met, false);
    rows[0] = row('ingest-tcp', 'bridge', 'aedes', 100, { dbCountEqualsAcked: true });
    assert.equal(evaluateTargets(rows).find((x) => x.name.startsWith('ingest TCP'))?.met, true);
  });
});
