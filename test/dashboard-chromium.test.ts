// The dashboard in real headless Chromium (issue 3 point 9): a full bridge, one simulated device
// publishing over MQTT, the page shows the device and its chart moving; then the bridge restarts on
// the same ports and the page recovers by itself (stale, then live again, chart moving) with no
// reload. History (issue 15 point 4): the device sent an hour of readings before the page opened,
// and the chart opens on that hour at once (1 h / 6 h / 24 h selectable), then moves live; a page
// opened after the restart shows the hour again. Screenshots go to test-artifacts/ (gitignored).
import assert from 'node:assert/strict';
import { existsSync, rmSync, statSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { SimDevice } from '../firmware-sim/device.js';
import { type BridgeHandle, startBridge } from '../src/app.js';
import { FileRegistry } from '../src/auth/registry-file.js';
import { openTokenService } from '../src/auth/tokens.js';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { connectMqtt, encodeTelemetry, publishAcked } from './support/bridge.js';
import { artifactPath, chromiumBinary, launchChromium } from './support/chromium.js';
import { tempDir } from './support/services.js';
import { waitFor } from './support/wait.js';

const binary = chromiumBinary();
const compiled = new URL('../dist/web/dashboard/main.js', import.meta.url);
// Relative to this file both as test/… (tsx) and dist/test/… (npm test).
const builtPage = existsSync(compiled) || existsSync(new URL('../web/dashboard/main.js', import.meta.url));

describe('dashboard in Chromium', { skip: binary.skip }, () => {
  let dir: string;
  let bridge: BridgeHandle | undefined;
  let device: SimDevice | undefined;
  let browser: Browser | undefined;
  let page: Page;
  const pageErrors: string[] = [];
  const log = createLogger('warn');

  const env = (ports?: BridgeHandle['ports']) => ({
    BRIDGE_MQTT_PORT: String(ports?.mqtt ?? 0),
    BRIDGE_HTTP_PORT: String(ports?.http ?? 0),
    BRIDGE_MQTTS_PORT: '0',
    BRIDGE_DATA_DIR: dir,
    LOG_LEVEL: 'warn',
  });

  /** The chart's oldest and newest x (Unix s) and its point count, from the data attributes the page keeps. */
  async function chart(on = page): Promise<{ points: number; firstTime: number; lastTime: number }> {
    const box = on.locator('.chart[data-metric]').first();
    if ((await box.count()) === 0) return { points: 0, firstTime: 0, lastTime: 0 };
    return {
      points: Number((await box.getAttribute('data-points')) ?? 0),
      firstTime: Number((await box.getAttribute('data-first-time')) ?? 0),
      lastTime: Number((await box.getAttribute('data-last-time')) ?? 0),
    };
  }
  let token = '';
  /** When the page was first opened, Unix s: the hour of history before it. */
  let openedAt = 0;
  const badge = () => page.locator('#state').getAttribute('data-state');

  before(async () => {
    assert.ok(builtPage, 'dist/web is missing: run `npm run build` (tsc -p web/tsconfig.json) first');
    dir = tempDir('dash-chromium');
    const registry = await FileRegistry.open(dir);
    const secret = await registry.addDevice('sim-1');
    token = (await (await openTokenService(dir)).create({ feeds: ['telemetry/+', 'status/+'] })).token;
    bridge = await startBridge(loadConfig(env()), { log });
    // The bridge ran before the page opened: an hour of readings, one every 10 s.
    const now = Date.now();
    const past = await connectMqtt(`mqtt://127.0.0.1:${bridge.ports.mqtt}`, {
      clientId: 'sim-1',
      username: 'sim-1',
      password: secret,
    });
    const samples = Array.from({ length: 360 }, (_, i) => ({
      time_unix_ms: now - 3_600_000 + 5000 + i * 10_000,
      values: { temperature_c: 20 + (i % 60) / 10 },
    }));
    await publishAcked(past, 'devices/sim-1/telemetry', encodeTelemetry('sim-1', 1, samples));
    past.end(true);
    device = new SimDevice({
      id: 'sim-1',
      secret,
      url: `mqtt://127.0.0.1:${bridge.ports.mqtt}`,
      intervalMs: 200,
      backoff: { baseMs: 100, capMs: 1000 },
    });
    await device.start();
    browser = await launchChromium(binary.path!);
    page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
    page.on('pageerror', (err) => pageErrors.push(err.message));
    openedAt = Date.now() / 1000;
    await page.goto(`http://127.0.0.1:${bridge.ports.http}/?token=${encodeURIComponent(token)}`);
  });

  after(async () => {
    await browser?.close();
    await device?.stop();
    await bridge?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("opens on the last hour at once, from the bridge's history; 1 h / 6 h / 24 h selectable", async () => {
    const opened = await waitFor(
      'the chart to show the hour before the page opened',
      async () => {
        const c = await chart();
        return c.points >= 300 && c.firstTime <= openedAt - 50 * 60 ? c : undefined;
      },
      { timeoutMs: 15_000 },
    );
    assert.ok(opened.lastTime >= openedAt - 60, 'up to now');
    assert.match(String(await page.locator('#history-note').textContent()), /^last 1h: \d+ points/);
    assert.equal(await page.locator('#range button[data-range="1h"]').getAttribute('aria-pressed'), 'true');
    await page.screenshot({ path: artifactPath('dashboard-chromium-history.png') });
    await page.locator('#range button[data-range="6h"]').click();
    await waitFor('the 6 h window', async () =>
      /^last 6h: /.test(String(await page.locator('#history-note').textContent())),
    );
    assert.ok((await chart()).firstTime <= openedAt - 50 * 60, 'the hour is still there');
    await page.locator('#range button[data-range="1h"]').click();
    await waitFor('back to 1 h', async () =>
      /^last 1h: /.test(String(await page.locator('#history-note').textContent())),
    );
  });

  it('shows the device online and its chart moving', async () => {
    await page.locator('#state[data-state="live"]').waitFor({ timeout: 15_000 });
    await page.locator('.device-row[data-device="sim-1"][data-state="online"]').waitFor({ timeout: 15_000 });
    assert.equal(await page.locator('#device-title').textContent(), 'sim-1');
    const first = await waitFor(
      'the chart to have points',
      async () => ((await chart()).points >= 3 ? chart() : undefined),
      {
        timeoutMs: 15_000,
      },
    );
    const later = await waitFor('the chart to move', async () => {
      const c = await chart();
      return c.lastTime > first.lastTime && c.points > first.points ? c : undefined;
    });
    assert.ok(later.lastTime > first.lastTime);
    // The token left the address bar (kept in sessionStorage).
    assert.doesNotMatch(page.url(), /token=/);
    assert.ok(Number(await page.locator('#msg-rate').textContent()) >= 0);
    await page.screenshot({ path: artifactPath('dashboard-chromium-live.png') });
  });

  it('goes stale when the bridge stops and recovers by itself after it restarts on the same ports', async () => {
    assert.ok(bridge);
    await page.evaluate('window.__sameDocument = true');
    const ports = bridge.ports;
    const before = await chart();
    await bridge.close();
    bridge = undefined;
    await waitFor('the page to say stale', async () => (await badge()) === 'stale', { timeoutMs: 15_000 });
    assert.equal(await page.locator('#banner').isVisible(), true, 'the stale view is announced');
    await page.screenshot({ path: artifactPath('dashboard-chromium-stale.png') });

    bridge = await startBridge(loadConfig(env(ports)), { log });
    assert.deepEqual(
      { mqtt: bridge.ports.mqtt, http: bridge.ports.http },
      { mqtt: ports.mqtt, http: ports.http },
    );
    await waitFor('the page to be live again', async () => (await badge()) === 'live', { timeoutMs: 30_000 });
    await waitFor(
      'the chart to move past the restart',
      async () => (await chart()).lastTime > before.lastTime + 0.5,
      {
        timeoutMs: 20_000,
      },
    );
    await page.locator('.device-row[data-device="sim-1"][data-state="online"]').waitFor({ timeout: 15_000 });
    assert.equal(await page.evaluate('window.__sameDocument === true'), true, 'no reload happened');
    assert.equal(await page.locator('#banner').isVisible(), false);
    const shot = artifactPath('dashboard-chromium.png');
    await page.screenshot({ path: shot });
    assert.ok(statSync(shot).size > 10_000, 'a real screenshot');
    assert.deepEqual(pageErrors, []);
  });

  it('after the restart, a page opened anew shows the hour again (the history survived)', async () => {
    assert.ok(bridge && browser);
    const fresh = await browser.newPage({ viewport: { width: 1280, height: 720 } });
    fresh.on('pageerror', (err) => pageErrors.push(err.message));
    try {
      await fresh.goto(`http://127.0.0.1:${bridge.ports.http}/?token=${encodeURIComponent(token)}`);
      // The history answer is bucketed (a bucket is drawn at its start), so the readings since the
      // first page opened may show only once the next live ones arrive: wait for both.
      await waitFor(
        'the hour in the fresh page, and the readings since the first page opened',
        async () => {
          const now = await chart(fresh);
          return now.points >= 300 && now.firstTime <= openedAt - 50 * 60 && now.lastTime > openedAt;
        },
        { timeoutMs: 15_000 },
      );
      assert.deepEqual(pageErrors, []);
    } finally {
      await fresh.close();
    }
  });
});
