/**
 * Every query of every Grafana dashboard panel and template variable, with Grafana's macros expanded
 * as Grafana would, returns data from a real InfluxDB (influxd 1.6, InfluxQL) that the bridge filled
 * from simulated devices: telemetry, device status, its own health (bridge_health) and rejections.
 * The queries are sent the way the provisioned data source sends them (its auth header included).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parse } from 'yaml';
import { SimDevice } from '../firmware-sim/device.js';
import { type BridgeHandle, startBridge } from '../src/app.js';
import { FileRegistry } from '../src/auth/registry-file.js';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { repoRoot } from './support/deploy.js';
import { type InfluxdServer, startInfluxd } from './support/influx.js';
import { tempDir } from './support/services.js';
import { waitFor } from './support/wait.js';

const root = repoRoot();
const DB = 'telebridge';
const DEVICES = ['gf-sensor-1', 'gf-sensor-2'];
const TOKEN = 'test-token';

interface Target {
  refId: string;
  rawQuery?: boolean;
  query?: string;
  datasource?: { type: string; uid: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  targets?: Target[];
  panels?: Panel[];
  repeat?: string;
  datasource?: { type: string; uid: string };
}
interface Variable {
  name: string;
  type: string;
  query: string;
  datasource?: { uid: string };
}
interface Dashboard {
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: Variable[] };
}

const dashboards = readdirSync(join(root, 'grafana', 'dashboards'))
  .filter((f) => f.endsWith('.json'))
  .map((f) => ({
    file: f,
    dashboard: JSON.parse(readFileSync(join(root, 'grafana', 'dashboards', f), 'utf8')) as Dashboard,
  }));

const datasourceFile = parse(
  readFileSync(join(root, 'grafana/provisioning/datasources/influxdb.yml'), 'utf8'),
) as {
  datasources: Array<{
    uid: string;
    type: string;
    jsonData: Record<string, string>;
    secureJsonData: Record<string, string>;
  }>;
};
const datasource = datasourceFile.datasources[0]!;

function allPanels(panels: Panel[]): Panel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
}

test('dashboards: three of them, every panel on the provisioned InfluxQL data source with raw queries', () => {
  assert.deepEqual(dashboards.map((d) => d.file).sort(), [
    'bridge-health.json',
    'device-detail.json',
    'fleet-overview.json',
  ]);
  assert.equal(datasource.type, 'influxdb');
  assert.equal(
    datasource.jsonData['version'] ?? 'InfluxQL',
    'InfluxQL',
    'the data source must speak InfluxQL',
  );
  const uids = new Set<string>();
  for (const { file, dashboard } of dashboards) {
    assert.ok(!uids.has(dashboard.uid), `${file}: duplicate uid`);
    uids.add(dashboard.uid);
    const panels = allPanels(dashboard.panels).filter((p) => p.type !== 'row');
    assert.ok(panels.length >= 3, `${file}: too few panels`);
    const ids = new Set(panels.map((p) => p.id));
    assert.equal(ids.size, panels.length, `${file}: panel ids must be unique`);
    for (const panel of panels) {
      assert.ok(panel.targets && panel.targets.length > 0, `${file} "${panel.title}": no query`);
      for (const t of panel.targets) {
        assert.equal(t.rawQuery, true, `${file} "${panel.title}" ${t.refId}: not a raw InfluxQL query`);
        assert.equal(
          (t.datasource ?? panel.datasource)?.uid,
          datasource.uid,
          `${file} "${panel.title}": data source`,
        );
      }
      if (panel.repeat) {
        assert.ok(
          dashboard.templating.list.some((v) => v.name === panel.repeat),
          `${file}: repeat by unknown variable ${panel.repeat}`,
        );
      }
    }
  }
  const device = dashboards.find((d) => d.file === 'device-detail.json')!.dashboard;
  assert.equal(
    device.templating.list.find((v) => v.name === 'device')?.query,
    'SHOW TAG VALUES FROM "telemetry" WITH KEY = "device_id"',
  );
});

/** Grafana's macros, as it expands them for "last 1 hour" on a narrow panel. */
function expand(query: string, vars: Record<string, string>): string {
  let q = query
    .replaceAll('$timeFilter', 'time > now() - 1h')
    .replaceAll('$__interval_ms', '1000')
    .replaceAll('$__interval', '1s')
    .replaceAll('$interval', '1s')
    .replaceAll('$__from', String(Date.now() - 3_600_000))
    .replaceAll('$__to', String(Date.now()));
  // Longest names first, so $device_id never matches as $device.
  for (const name of Object.keys(vars).sort((a, b) => b.length - a.length)) {
    q = q
      .replaceAll(`\${${name}}`, vars[name]!)
      .replaceAll(`[[${name}]]`, vars[name]!)
      .replaceAll(`$${name}`, vars[name]!);
  }
  assert.ok(!/\$[A-Za-z_]/.test(q.replace(/\$(tag_|col)\w*/g, '')), `unexpanded macro left in: ${q}`);
  return q;
}

/** Escapes a value for a `=~ /^$var$/` regex, as Grafana does for InfluxQL multi-value variables. */
function regexValue(text: string): string {
  return text.replace(/[\\^$*+?.()|[\]{}/]/g, '\\$&');
}

let influx: InfluxdServer | undefined;
let bridge: BridgeHandle | undefined;
let skip: string | undefined;
const sims: SimDevice[] = [];

/** A query as Grafana's data source sends it: GET/POST /query with db, epoch and its header. */
async function grafanaQuery(q: string) {
  const header = datasource.jsonData['httpHeaderName1'];
  // biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's provisioning placeholder, literally
  const value = datasource.secureJsonData['httpHeaderValue1']?.replace('${INFLUX_TOKEN}', TOKEN);
  const res = await fetch(`${influx!.url}/query`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      ...(header && value ? { [header]: value } : {}),
    },
    body: new URLSearchParams({ q, db: DB, epoch: 'ms' }),
  });
  const json = (await res.json()) as {
    results: Array<{
      error?: string;
      series?: Array<{ name: string; columns: string[]; values: unknown[][] }>;
    }>;
  };
  assert.equal(res.status, 200, `${q}: HTTP ${res.status}`);
  for (const r of json.results) assert.equal(r.error, undefined, `${q}: ${r.error}`);
  return json.results.flatMap((r) => r.series ?? []);
}

/** True when some series has a non-null value in a column other than time. */
function hasData(series: Array<{ columns: string[]; values: unknown[][] }>): boolean {
  return series.some((s) =>
    s.values.some((row) => row.some((v, i) => s.columns[i] !== 'time' && v !== null)),
  );
}

describe('with influxd filled by the bridge from simulated devices', () => {
  before(async () => {
    const started = await startInfluxd({ database: DB });
    if ('skip' in started) {
      skip = started.skip;
      return;
    }
    influx = started;
    const dir = tempDir('grafana');
    const registry = await FileRegistry.open(dir);
    const secrets: string[] = [];
    for (const id of DEVICES) secrets.push(await registry.addDevice(id));
    const config = loadConfig({
      BRIDGE_MQTT_PORT: '0',
      BRIDGE_MQTTS_PORT: '0',
      BRIDGE_HTTP_PORT: '0',
      BRIDGE_DATA_DIR: dir,
      INFLUX_URL: influx.url,
      INFLUX_API: 'v1',
      INFLUX_DATABASE: DB,
      INFLUX_FLUSH_INTERVAL_MS: '100',
      INFLUX_SELF_METRICS_MS: '250',
      LOG_LEVEL: 'warn',
    });
    bridge = await startBridge(config, { log: createLogger('warn') });
    DEVICES.forEach((id, i) => {
      sims.push(
        new SimDevice({
          id,
          secret: secrets[i]!,
          url: `mqtt://127.0.0.1:${bridge!.ports.mqtt}`,
          intervalMs: 100,
          labels: { site: 'lab' },
          // Some malformed payloads, so the rejection panels have something to show.
          faults: { rates: { malformed: 0.2 } },
          backoff: { baseMs: 50, capMs: 500 },
        }),
      );
    });
    await Promise.all(sims.map((s) => s.start()));
    // Enough history for rates: self-metrics points in several 1 s intervals, telemetry, a status and
    // rejections of both devices.
    await waitFor(
      'the bridge to fill InfluxDB',
      async () => {
        const [health] = await influx!.rows(
          `SELECT count("messages") AS n, spread("uptime_s") AS s FROM "bridge_health"`,
          DB,
        );
        const [rejections] = await influx!.rows(`SELECT count("total") AS n FROM "bridge_rejections"`, DB);
        const devices = await influx!.query(`SHOW TAG VALUES FROM "telemetry" WITH KEY = "device_id"`, DB);
        const status = await influx!.rows(`SELECT count("online") AS n FROM "device_status"`, DB);
        return (
          Number(health?.['s'] ?? 0) >= 3 &&
          Number(rejections?.['n'] ?? 0) >= 3 &&
          (devices.results[0]?.series?.[0]?.values.length ?? 0) === DEVICES.length &&
          Number(status[0]?.['n'] ?? 0) >= DEVICES.length
        );
      },
      { timeoutMs: 30_000, intervalMs: 250 },
    );
  });

  after(async () => {
    await Promise.all(sims.map((s) => s.stop()));
    await bridge?.close();
    await influx?.stop();
  });

  test('template variables return values, and every panel query returns data', async (t) => {
    if (skip) return t.skip(skip);
    for (const { file, dashboard } of dashboards) {
      const vars: Record<string, string> = {};
      const multi: Record<string, string[]> = {};
      for (const v of dashboard.templating.list) {
        assert.equal(v.type, 'query', `${file}: variable ${v.name}`);
        const series = await grafanaQuery(expand(v.query, vars));
        // Grafana takes the first non-time column (SHOW TAG VALUES: key,value → value; SHOW FIELD KEYS: fieldKey).
        const values = series.flatMap((s) => {
          const col = s.columns.includes('value') ? s.columns.indexOf('value') : 0;
          return s.values.map((row) => String(row[col]));
        });
        assert.ok(values.length > 0, `${file}: variable $${v.name} has no values`);
        multi[v.name] = values;
        vars[v.name] = v.name === 'instance' ? regexValue(hostname()) : values[0]!;
      }
      if (multi['device']) {
        assert.deepEqual([...multi['device']].sort(), [...DEVICES].sort(), `${file}: $device values`);
        vars['device'] = DEVICES[0]!;
      }
      if (multi['instance']) assert.ok(multi['instance'].includes(hostname()), `${file}: $instance values`);
      for (const panel of allPanels(dashboard.panels)) {
        // A repeated panel is one copy per value of its variable: each copy must show data.
        const copies = panel.repeat ? multi[panel.repeat]! : [undefined];
        for (const value of copies) {
          const scope = panel.repeat && value !== undefined ? { ...vars, [panel.repeat]: value } : vars;
          for (const target of panel.targets ?? []) {
            const q = expand(target.query!, scope);
            const series = await grafanaQuery(q);
            assert.ok(
              hasData(series),
              `${file} "${panel.title}"${value ? ` [${value}]` : ''} ${target.refId}: no data from ${q}`,
            );
          }
        }
      }
    }
  });
});
