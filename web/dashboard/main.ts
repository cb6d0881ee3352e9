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
 * - History (issue 15): the selected device's chart opens on the bridge's history of the window
 *   chosen (1 h, 6 h or 24 h; `?range=`), read from `/api/history` downsampled to the chart's width,
 *   then moves live; after a reconnect the live client's resume fills what was missed. Once the
 *   live points appended pass the chart's width, the history is read again (so a page left open
 *   stays downsampled and bounded).
 */
import { type ConnectionState, LiveClient } from '../client/live-client.js';
import type { HistoryData } from '../client/protocol.js';
import { ChartPanel } from './charts.js';
import { DeviceList } from './device-list.js';
import { lastSeenText } from './format.js';
import { HistoryStore } from './history.js';
import { counterRate, parseRejectedTotal, RateMeter } from './rates.js';

const TOKEN_KEY = 'telebridge.token';
const REJECTIONS_POLL_MS = 5000;
/** The windows a chart can show. */
const RANGES: Readonly<Record<string, number>> = { '1h': 3_600_000, '6h': 21_600_000, '24h': 86_400_000 };
/** Points a chart asks the history for (about its width in pixels). */
const HISTORY_POINTS = 600;
/** Shortest time between two history reads of the same chart, ms. */
const HISTORY_RELOAD_MS = 10_000;

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
  let range = params.get('range') ?? '1h';
  if (RANGES[range] === undefined) range = '1h';
  historyStore.setWindow(RANGES[range]!);
  /** The chart whose history was last asked for, and when. */
  let historyFor: { device: string; range: string; at: number } | undefined;
  let historyNote = '';
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
  const rangeButtons = [...element('range').querySelectorAll<HTMLButtonElement>('button[data-range]')];
  const showRange = () => {
    for (const b of rangeButtons) b.setAttribute('aria-pressed', String(b.dataset['range'] === range));
  };
  showRange();
  for (const button of rangeButtons) {
    button.addEventListener('click', () => {
      range = button.dataset['range'] ?? '1h';
      historyStore.setWindow(RANGES[range]!);
      showRange();
      schedule();
    });
  }

  /** Reads the chart's history when its device or window changed (or its live points piled up). */
  function ensureHistory(device: string | undefined, now: number): void {
    if (device === undefined) return;
    const same = historyFor?.device === device && historyFor.range === range;
    const piledUp = (historyStore.get(device)?.liveSinceLoad ?? 0) > HISTORY_POINTS;
    if (same && !(piledUp && now - historyFor!.at > HISTORY_RELOAD_MS)) return;
    const asked = { device, range, at: now };
    historyFor = asked;
    const windowMs = RANGES[range]!;
    const url = `/api/history?device=${encodeURIComponent(device)}&from=${now - windowMs}&to=${now}&points=${HISTORY_POINTS}`;
    fetch(url, { headers: { Authorization: `Bearer ${token}` }, cache: 'no-store' })
      .then(async (res) => {
        const body = (await res.json()) as HistoryData & { error?: string; message?: string };
        if (!res.ok) throw new Error(`${body.error ?? res.status}: ${body.message ?? ''}`);
        return body;
      })
      .then(
        (data) => {
          if (historyFor !== asked) return; // another device or window was picked meanwhile
          historyStore.load(data);
          // The bridge says when its history is complete from (a store younger than the window).
          const since =
            data.completeFrom === undefined
              ? ''
              : ` (kept since ${new Date(data.completeFrom).toLocaleString()})`;
          historyNote = `last ${range}: ${data.t.length} points from the bridge's history${since}`;
          schedule();
        },
        (err: Error) => {
          if (historyFor !== asked) return;
          historyNote = `history unavailable (${err.message})`;
          schedule();
        },
      );
  }

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
    ensureHistory(selected, now);
    element('history-note').textContent = historyNote;
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
