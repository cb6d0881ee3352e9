import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { Reading } from '../reading.js';
import { escapeTag, quoteString, readingToLines, statusToLine } from './line-protocol.js';

const reading = (labels: Record<string, string>, values: Record<string, number> = { t: 1 }): Reading => ({
  deviceId: 'd1',
  seq: 1,
  receivedAt: 0,
  samples: [{ time: 1764115200000, values, labels }],
});

/** Splits a line into measurement+tags, fields, timestamp at unescaped spaces (quotes count only in fields). */
function sections(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i] as string;
    if (c === '\\') {
      cur += c + (line[i + 1] ?? '');
      i++;
    } else if (c === '"' && out.length === 1) {
      quoted = !quoted;
      cur += c;
    } else if (c === ' ' && !quoted) {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out;
}

test('a sample becomes one telemetry point: sorted tags, float fields, ms timestamp', () => {
  const lines = readingToLines(reading({ zone: 'b', room: 'lab' }, { temperature_c: 21.5, humidity: 40 }));
  assert.deepEqual(lines, [
    'telemetry,device_id=d1,room=lab,zone=b humidity=40,temperature_c=21.5 1764115200000',
  ]);
});

test('several samples give several lines, in order', () => {
  const r: Reading = {
    deviceId: 'd1',
    seq: 2,
    receivedAt: 0,
    samples: [
      { time: 1000, values: { a: 1 }, labels: {} },
      { time: 2000, values: { a: -0.5 }, labels: {} },
    ],
  };
  assert.deepEqual(readingToLines(r), [
    'telemetry,device_id=d1 a=1 1000',
    'telemetry,device_id=d1 a=-0.5 2000',
  ]);
});

test('a device_id label never overrides the real device id, empty labels are dropped', () => {
  const [line] = readingToLines(reading({ device_id: 'other', empty: '', x: 'y' }));
  assert.equal(line, 'telemetry,device_id=d1,x=y t=1 1764115200000');
});

test('special characters in label values cannot break the line', () => {
  const nasty = 'a b,c=d"e\\f\ng\rh\\';
  const [line] = readingToLines(reading({ k: nasty }));
  assert.ok(line);
  assert.equal(line.includes('\n'), false);
  assert.equal(line.includes('\r'), false);
  const parts = sections(line);
  assert.equal(parts.length, 3, line);
  assert.equal(parts[0], 'telemetry,device_id=d1,k=a\\ b\\,c\\=d"e\\f\\ g\\ h/');
  assert.equal(parts[1], 't=1');
});

test('escapeTag: ambiguous backslashes become slashes, others stay', () => {
  assert.equal(escapeTag('a\\b'), 'a\\b');
  assert.equal(escapeTag('a\\\\b'), 'a/\\b');
  assert.equal(escapeTag('a\\,b'), 'a/\\,b');
  assert.equal(escapeTag('end\\'), 'end/');
  assert.equal(escapeTag('x y=z,w'), 'x\\ y\\=z\\,w');
});

test('status: online boolean and quoted firmware', () => {
  assert.equal(
    statusToLine({ deviceId: 'd1', state: 'online', firmware: '1.2.0', time: 5 }),
    'device_status,device_id=d1 online=true,firmware="1.2.0" 5',
  );
  assert.equal(
    statusToLine({ deviceId: 'd1', state: 'offline', firmware: 'v"2"\\x\ny', time: 6.7 }),
    'device_status,device_id=d1 online=false,firmware="v\\"2\\"\\\\x y" 6',
  );
  assert.equal(quoteString(''), '""');
});

test('non-finite values are refused rather than written', () => {
  assert.throws(() => readingToLines(reading({}, { t: Number.NaN })), RangeError);
});

/** The first (straightforward, slower) encoder: the fast paths must produce exactly its output. */
const reference = {
  escape: (t: string) =>
    t
      .replace(/[\r\n]/g, ' ')
      .replace(/\\(?=[\\,= ]|$)/g, '/')
      .replace(/[,= ]/g, (c) => `\\${c}`),
  quote: (t: string) => `"${t.replace(/[\r\n]/g, ' ').replace(/["\\]/g, (c) => `\\${c}`)}"`,
  lines(r: Reading): string[] {
    const out: string[] = [];
    for (const s of r.samples) {
      const names = Object.keys(s.values).sort();
      if (names.length === 0) continue;
      const keys = Object.keys(s.labels)
        .filter((k) => k !== 'device_id' && s.labels[k] !== '')
        .sort();
      let tags = `,device_id=${reference.escape(r.deviceId)}`;
      for (const k of keys) tags += `,${reference.escape(k)}=${reference.escape(s.labels[k] as string)}`;
      const fields = names.map((n) => `${reference.escape(n)}=${String(s.values[n])}`).join(',');
      out.push(`telemetry${tags} ${fields} ${Math.trunc(s.time)}`);
    }
    return out;
  },
};

test('fast paths: output identical to the reference encoder for arbitrary names, labels and values', () => {
  const text = fc.string({
    unit: fc.constantFrom('a', 'Z', '_', '.', ' ', ',', '=', '\\', '"', '\n', '\r', 'é'),
  });
  const record = <T>(v: fc.Arbitrary<T>) => fc.dictionary(text, v, { maxKeys: 5 });
  const sample = fc.record({
    time: fc.integer({ min: 0, max: 2 ** 42 }),
    values: record(fc.double({ noNaN: true, noDefaultInfinity: true })),
    labels: record(text),
  });
  fc.assert(
    fc.property(text, fc.array(sample, { maxLength: 4 }), (deviceId, samples) => {
      const r: Reading = { deviceId, seq: 1, receivedAt: 0, samples };
      assert.deepEqual(readingToLines(r), reference.lines(r));
      assert.equal(escapeTag(deviceId), reference.escape(deviceId));
      assert.equal(quoteString(deviceId), reference.quote(deviceId));
    }),
    { numRuns: 2000 },
  );
});
