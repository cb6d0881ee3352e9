/**
 * The live dashboard (issue 3 point 8), served at `/` by src/broker/listeners/static.ts.
 *
 * - Token: `/?token=…` on first visit; kept in sessionStorage (this tab only) and removed from the
 *   address bar so it does not linger in history, bookmarks or screenshots.
 * - Feeds: `telemetry/+` and `status/+`, or `?feeds=a,b` for a token limited to fewer.
 * - Everything the stream changes only marks the page dirty; the DOM is updated at most once an
 *   animation frame, and the device list is virtualised (device-list.ts): 1,000 devices sending
 *   every second cost one small redraw a frame.
 * - The live/stale badge and banner come straight from the client's state: a stale view is always
 *   labelled as such.
 */
import { type ConnectionState, LiveClient } from '../client/live-client.js';
import { ChartPanel } from './charts.js';
import { DeviceList } from './device-list.js';
import { lastSeenText } from './format.js';
import { HistoryStore } from './history.js';
import { counterRate, parseRejectedTotal, RateMeter } from './rates.js';

const TOKEN_KEY = 'telebridge.token';
const REJECTIONS_POLL_MS = 5000;

function element<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`dashboard: #${id} missing from index.html`);
  return el as T;
}

function takeToken(params: URLSearchParams): string | null {
  const fromUrl = params.get('token');
  if (fromUrl) {
    sessionStorage.setItem(TOKEN_KEY, fromUrl);
    params.delete('token');
    const query = params.toString();
    history.replaceState(null, '', `${location.pathname}${query ? `?${query}` : ''}${location.hash}`);
    return fromUrl;
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

function start(): void {
  const params = new URLSearchParams(location.search);
  const feeds = (params.get('feeds') ?? 'telemetry/+,status/+')
    .split(',')
    .map((f) => f.trim())
    .filter(Boolean);
  let selected = params.get('device') ?? undefined;
  const token = takeToken(params);
  const badge = element('state');
  const banner = element('banner');
  if (!token) {
    badge.textContent = 'no token';
    banner.textContent = 'Open this page as /?token=… (create one with: npx telebridge token create).';
    banner.hidden = false;
    return;
  }

  const client = new LiveClient({
    url: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/live`,
    token,
    feeds,
  });
  const historyStore = new HistoryStore();
  const messages = new RateMeter(10);
  const charts = new ChartPanel(element('charts'));
  let sortedIds: string[] = [];
  let idsChanged = false;
  let lostAt = Date.now();
  let rejectionText = '…';
  let lastError = '';

  const list = new DeviceList({
    container: element('devices'),
    onSelect: (device) => {
      selected = device;
      schedule();
    },
    onScroll: () => schedule(),
  });
  element<HTMLInputElement>('filter').addEventListener('input', (event) => {
    list.setFilter((event.target as HTMLInputElement).value);
    schedule();
  });

  const known = new Set<string>();
  const noteDevice = (device: string) => {
    if (!known.has(device)) {
      known.add(device);
      idsChanged = true;
    }
    schedule();
  };
  client.on('telemetry', (m) => {
    messages.add(1, Date.now());
    historyStore.add(m.device, m.time, m.values);
    noteDevice(m.device);
  });
  client.on('snapshot', (m) => {
    if (m.values && m.time !== undefined) historyStore.add(m.device, m.time, m.values);
    noteDevice(m.device);
  });
  client.on('status', (m) => noteDevice(m.device));
  client.on('reset', () => {
    known.clear();
    idsChanged = true;
    schedule();
  });
  client.on('state', (state) => {
    if (state === 'stale') lostAt = Date.now();
    schedule();
  });
  client.on('error', (e) => {
    lastError = `${e.code}: ${e.message}`;
    schedule();
  });

  // ── rendering, at most once a frame ──────────────────────────────────────────────────────────
  let scheduled = false;
  function schedule(): void {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(render);
  }

  function render(): void {
    scheduled = false;
    const now = Date.now();
    if (idsChanged) {
      // Devices the client dropped (after a reset) leave the list too.
      sortedIds = [...client.devices.keys()].sort();
      for (const id of known) if (!client.devices.has(id)) known.delete(id);
      idsChanged = false;
    }
    if (
      selected === undefined ||
      (!client.devices.has(selected) && sortedIds.length > 0 && !params.get('device'))
    ) {
      // The first device with something to chart, else the first device.
      selected = sortedIds.find((id) => historyStore.get(id) !== undefined) ?? sortedIds[0];
    }
    renderState(client.state);
    let online = 0;
    for (const view of client.devices.values()) if (view.state === 'online') online++;
    element('device-count').textContent = String(client.devices.size);
    element('online-count').textContent = String(online);
    element('msg-rate').textContent = messages.rate(now).toFixed(1);
    element('rej-rate').textContent = rejectionText;
    list.setSelected(selected);
    list.render(sortedIds, client.devices, now);
    renderDetail(now);
    charts.render(selected, selected === undefined ? undefined : historyStore.get(selected));
  }

  function renderState(state: ConnectionState): void {
    badge.textContent = state;
    badge.dataset['state'] = state;
    document.body.dataset['state'] = state;
    if (state === 'stale') {
      const since = new Date(lostAt).toLocaleTimeString();
      banner.textContent = `Connection lost at ${since}: the data shown may be out of date. Reconnecting…`;
      banner.hidden = false;
    } else if (state === 'connecting') {
      banner.textContent = lastError ? `Connecting… (${lastError})` : 'Connecting…';
      banner.hidden = false;
    } else if (lastError && state === 'live' && lastError.startsWith('forbidden')) {
      banner.textContent = `The token does not allow every feed asked for (${lastError}).`;
      banner.hidden = false;
    } else {
      banner.hidden = true;
    }
  }

  function renderDetail(now: number): void {
    const title = element('device-title');
    const meta = element('device-meta');
    const view = selected === undefined ? undefined : client.devices.get(selected);
    title.textContent = selected ?? 'No device';
    if (!view) {
      meta.textContent = '';
      return;
    }
    const labels = Object.entries(view.labels)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
    meta.textContent = [
      view.state ?? 'state unknown',
      view.firmware ? `firmware ${view.firmware}` : '',
      view.seq === undefined ? '' : `seq ${view.seq}`,
      `last seen ${lastSeenText(view.lastSeen, now)}`,
      labels,
    ]
      .filter(Boolean)
      .join(' · ');
  }

  // "last seen" and the rates move with time even when no message arrives.
  setInterval(schedule, 1000);

  // ── rejections from the bridge's own counter ─────────────────────────────────────────────────
  let previous: { value: number; atMs: number } | undefined;
  async function pollRejections(): Promise<void> {
    try {
      const res = await fetch('/metrics', { cache: 'no-store' });
      const total = res.ok ? parseRejectedTotal(await res.text()) : undefined;
      const at = Date.now();
      if (total === undefined) {
        rejectionText = 'n/a';
      } else {
        rejectionText = previous ? counterRate(previous, total, at).toFixed(1) : '…';
        previous = { value: total, atMs: at };
      }
    } catch {
      rejectionText = 'n/a';
    }
    schedule();
  }
  void pollRejections();
  setInterval(() => void pollRejections(), REJECTIONS_POLL_MS);

  schedule();
}

start();
