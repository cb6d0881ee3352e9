/**
 * The benchmark's report: ratios to baselines, targets (issue 8 point 5) met or missed, and the
 * files under bench/results/: `<date>.json`, `latest.json`, `latest.md` (the README's table) and
 * `latest.svg` (ratio chart).
 */
import { cpus, freemem, release, totalmem } from 'node:os';
import type { ScenarioResult } from './context.js';
import type { ProfileSummary } from './profile.js';
import { round } from './stats.js';

export interface Target {
  readonly name: string;
  readonly met: boolean | undefined;
  readonly detail: string;
  /** The scenario to profile when missed. */
  readonly scenario: string;
}

export interface Report {
  readonly date: string;
  readonly mode: 'quick' | 'full';
  readonly machine: {
    cpu: string;
    cores: number;
    memoryGiB: number;
    freeMemoryGiB: number;
    kernel: string;
    loadAverageAtStart: number[];
  };
  readonly versions: Record<string, string>;
  readonly pinning: string;
  readonly notes: string[];
  readonly results: (ScenarioResult & { ratio: number | undefined })[];
  readonly targets: Target[];
  readonly profiles: { scenario: string; summary: ProfileSummary }[];
  readonly extras: Record<string, unknown>;
}

export function machine(loadavg: number[]): Report['machine'] {
  const c = cpus();
  return {
    cpu: c[0]?.model ?? 'unknown',
    cores: c.length,
    memoryGiB: round(totalmem() / 2 ** 30, 1),
    freeMemoryGiB: round(freemem() / 2 ** 30, 1),
    kernel: release(),
    loadAverageAtStart: loadavg.map((x) => round(x, 2)),
  };
}

/** Each row's primary metric divided by its group's baseline row. */
export function withRatios(results: readonly ScenarioResult[]): Report['results'] {
  return results.map((r) => {
    const base = results.find((b) => b.group === r.group && b.sut === r.baseline);
    const ratio = base && base.primary.value > 0 ? round(r.primary.value / base.primary.value, 2) : undefined;
    return { ...r, ratio };
  });
}

export function evaluateTargets(results: readonly ScenarioResult[]): Target[] {
  const row = (group: string, sut: string) => results.find((r) => r.group === group && r.sut === sut);
  const targets: Target[] = [];
  for (const t of ['tcp', 'ws']) {
    const b = row(`ingest-${t}`, 'bridge');
    const a = row(`ingest-${t}`, 'aedes');
    const ratio = b && a ? b.primary.value / a.primary.value : undefined;
    const db = b?.extra['dbCountEqualsAcked'];
    targets.push({
      name: `ingest ${t.toUpperCase()} (validated + stored) ≥ 1.0× plain Aedes QoS 1`,
      met: ratio === undefined ? undefined : ratio >= 1 && db === true,
      detail:
        ratio === undefined
          ? 'not measured'
          : `${b!.primary.value} vs ${a!.primary.value} msg/s = ${round(ratio, 2)}×; DB count = acked: ${db}`,
      scenario: 'ingest',
    });
  }
  const fb = row('mqtt-fanout', 'bridge');
  const fm = row('mqtt-fanout', 'mosquitto');
  targets.push({
    name: 'MQTT fan-out p99 ≤ Mosquitto p99',
    met: fb && fm ? fb.primary.value <= fm.primary.value : undefined,
    detail: fb && fm ? `${fb.primary.value} ms vs ${fm.primary.value} ms` : 'not measured',
    scenario: 'mqtt-fanout',
  });
  const lb = row('live-fanout', 'bridge');
  targets.push({
    name: `/live fan-out p99 ≤ 50 ms at ${lb?.params['browsers'] ?? 1000} browsers`,
    met: lb ? lb.primary.value <= 50 : undefined,
    detail: lb ? `${lb.primary.value} ms (generator CPU ${lb.generatorCpuPercent}%)` : 'not measured',
    scenario: 'live-fanout',
  });
  for (const [t, limit] of [
    ['tcp', 10],
    ['ws', 15],
  ] as const) {
    const ib = row(`idle-${t}`, 'bridge');
    targets.push({
      name: `idle connection ≤ ${limit} KiB over ${t.toUpperCase()}`,
      met: ib ? ib.primary.value <= limit : undefined,
      detail: ib ? `${ib.primary.value} KiB/conn at ${ib.params['connections']} connections` : 'not measured',
      scenario: 'idle',
    });
  }
  return targets;
}

const fmt = (n: number | undefined, digits = 1) =>
  n === undefined || Number.isNaN(n)
    ? '–'
    : n >= 1000
      ? Math.round(n).toLocaleString('en-US')
      : String(round(n, digits));

export function markdown(report: Report): string {
  const m = report.machine;
  const lines = [
    `### Benchmark (${report.mode}, ${report.date.slice(0, 10)})`,
    '',
    `${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB; Linux ${m.kernel}; load average at start ${m.loadAverageAtStart.join(' ')}. ` +
      `${Object.entries(report.versions)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}. ${report.pinning}.`,
    '',
    '| scenario | system | throughput | p50 ms | p99 ms | max ms | SUT CPU s | SUT peak RSS MiB | generator CPU | primary metric | × baseline |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |',
  ];
  for (const r of report.results) {
    lines.push(
      `| ${r.group} | ${r.sut} | ${r.throughput ? `${fmt(r.throughput.value)} ${r.throughput.unit}` : '–'} | ${fmt(r.latencyMs?.p50)} | ${fmt(r.latencyMs?.p99)} | ${fmt(r.latencyMs?.max)} | ${fmt(r.sutUsage.cpuSeconds, 2)} | ${fmt(r.sutUsage.peakRssMiB)} | ${fmt(r.generatorCpuPercent)}% | ${r.primary.name}: ${fmt(r.primary.value, 2)} | ${r.sut === r.baseline ? 'baseline' : r.ratio === undefined ? '–' : `${r.ratio}× ${r.baseline}`} |`,
    );
  }
  lines.push('', '| target | result | numbers |', '| --- | --- | --- |');
  for (const t of report.targets) {
    lines.push(
      `| ${t.name} | ${t.met === undefined ? 'not measured' : t.met ? '**met**' : '**missed**'} | ${t.detail} |`,
    );
  }
  for (const p of report.profiles) {
    lines.push(
      '',
      `CPU profile of the bridge in ${p.scenario} (self time, ${fmt(p.summary.totalMs)} ms sampled): ` +
        p.summary.modules
          .slice(0, 6)
          .map((x) => `${x.module} ${x.percent}%`)
          .join(', ') +
        '; top functions: ' +
        p.summary.functions
          .slice(0, 6)
          .map((x) => `\`${x.name}\` ${x.percent}%`)
          .join(', '),
    );
  }
  if (report.notes.length) lines.push('', ...report.notes.map((n) => `- ${n}`));
  return `${lines.join('\n')}\n`;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** Horizontal bars: each non-baseline row's primary metric as a multiple of its baseline (log scale). */
export function svgChart(report: Report): string {
  const rows = report.results.filter((r) => r.sut !== r.baseline && r.ratio !== undefined && r.ratio > 0);
  const width = 860;
  const rowH = 24;
  const left = 330;
  const plotW = width - left - 90;
  const height = 60 + rows.length * rowH + 30;
  const min = 0.01;
  const max = 100;
  const x = (v: number) =>
    left +
    ((Math.log10(Math.min(max, Math.max(min, v))) - Math.log10(min)) / (Math.log10(max) - Math.log10(min))) *
      plotW;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="10" y="20" font-size="14" font-weight="bold">${esc(`telebridge benchmark ${report.date.slice(0, 10)} (${report.mode}): primary metric ÷ baseline, log scale`)}</text>`,
    `<text x="10" y="38" fill="#555">${esc('green = better than the baseline (throughput higher, or latency/memory/time lower); red = worse')}</text>`,
  ];
  for (const tick of [0.01, 0.1, 1, 10, 100]) {
    parts.push(
      `<line x1="${x(tick)}" y1="48" x2="${x(tick)}" y2="${height - 25}" stroke="${tick === 1 ? '#000' : '#ddd'}"/>`,
      `<text x="${x(tick)}" y="${height - 10}" text-anchor="middle" fill="#555">${tick}×</text>`,
    );
  }
  rows.forEach((r, i) => {
    const y = 55 + i * rowH;
    const ratio = r.ratio!;
    const good = r.primary.better === 'higher' ? ratio >= 1 : ratio <= 1;
    const x0 = x(1);
    const x1 = x(ratio);
    parts.push(
      `<text x="${left - 8}" y="${y + 15}" text-anchor="end">${esc(`${r.group} ${r.sut} (${r.primary.name}) vs ${r.baseline}`)}</text>`,
      `<rect x="${Math.min(x0, x1)}" y="${y + 3}" width="${Math.max(1, Math.abs(x1 - x0))}" height="${rowH - 8}" fill="${good ? '#3a9a4a' : '#c8463c'}"/>`,
      `<text x="${Math.max(x0, x1) + 4}" y="${y + 15}">${ratio}×</text>`,
    );
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
