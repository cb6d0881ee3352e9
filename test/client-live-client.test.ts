// Unit tests of LiveClient's state machine, resume and snapshot merge, driven through an in-memory
// socket (the client's WebSocket injection point) and injected timers: no network, no sleeps.
import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import { CommandError, type ConnectionState, LiveClient, type Timers } from '../web/client/live-client.js';
import type { SocketCloseEvent, SocketLike, SocketMessageEvent } from '../web/client/socket.js';

class FakeSocket implements SocketLike {
  static all: FakeSocket[] = [];
  readyState = 0;
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: SocketMessageEvent) => void) | null = null;
  onclose: ((event: SocketCloseEvent) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  readonly sent: Record<string, unknown>[] = [];
  constructor(
    readonly url: string,
    readonly protocols?: string | string[],
  ) {
    FakeSocket.all.push(this);
  }
  send(data: string): void {
    this.sent.push(JSON.parse(data) as Record<string, unknown>);
  }
  close(): void {
    this.drop();
  }
  // ── test side ──
  accept(): void {
    this.readyState = 1;
    this.onopen?.({});
  }
  push(message: object): void {
    this.onmessage?.({ data: JSON.stringify(message) });
  }
  drop(): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.onclose?.({ code: 1006, reason: '' });
  }
  last(): Record<string, unknown> {
    const m = this.sent.at(-1);
    assert.ok(m, 'nothing sent');
    return m;
  }
}

/** Manual clock: timers fire only when the test advances time. */
class ManualTimers implements Timers {
  now = 0;
  private seq = 0;
  private readonly timers = new Map<number, { at: number; fn: () => void }>();
  setTimeout(fn: () => void, ms: number): unknown {
    this.seq++;
    this.timers.set(this.seq, { at: this.now + ms, fn });
    return this.seq;
  }
  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }
  /** Delay of the earliest pending timer, ms from now. */
  nextDelay(): number | undefined {
    const ats = [...this.timers.values()].map((t) => t.at - this.now);
    return ats.length ? Math.min(...ats) : undefined;
  }
  advance(ms: number): void {
    const until = this.now + ms;
    for (let i = 0; i < 1000; i++) {
      const due = [...this.timers.entries()]
        .filter(([, t]) => t.at <= until)
        .sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.timers.delete(due[0]);
      this.now = due[1].at;
      due[1].fn();
    }
    this.now = until;
  }
}

function telemetry(device: string, cursor: string, seq: number, values: Record<string, number>) {
  return {
    type: 'telemetry',
    feed: `telemetry/${device}`,
    device,
    cursor,
    seq,
    time: 1000 + seq,
    values,
    labels: {},
  };
}

describe('LiveClient', () => {
  let timers: ManualTimers;
  let states: ConnectionState[];
  let client: LiveClient;
  const socket = () => {
    const s = FakeSocket.all.at(-1);
    assert.ok(s);
    return s;
  };

  beforeEach(() => {
    FakeSocket.all = [];
    timers = new ManualTimers();
    states = [];
    client = new LiveClient({
      url: 'ws://bridge/live',
      token: 'a b&c',
      feeds: ['telemetry/+', 'status/+'],
      WebSocket: FakeSocket,
      timers,
      random: () => 0.5,
      backoff: { baseMs: 100, capMs: 1000 },
      stableMs: 5000,
    });
    client.on('state', (s) => states.push(s));
  });

  it('connects with the token and the subprotocol, subscribes without since, goes live on subscribed', () => {
    assert.equal(client.state, 'connecting');
    assert.equal(socket().url, 'ws://bridge/live?token=a%20b%26c');
    assert.deepEqual(socket().protocols, ['telemetry.v1.json']);
    socket().accept();
    const sub = socket().last();
    assert.equal(sub['type'], 'subscribe');
    assert.deepEqual(sub['feeds'], ['telemetry/+', 'status/+']);
    assert.equal('since' in sub, false);
    assert.equal(client.state, 'connecting', 'not live before the server confirms');
    socket().push({ type: 'subscribed', id: sub['id'], feeds: sub['feeds'] });
    assert.equal(client.state, 'live');
    socket().push({
      type: 'snapshot',
      feed: 'telemetry/d1',
      device: 'd1',
      cursor: 'x',
      seq: 1,
      time: 5,
      values: { t: 1, h: 2 },
      labels: {},
    });
    socket().push({
      type: 'snapshot',
      feed: 'status/d1',
      device: 'd1',
      cursor: 'y',
      state: 'online',
      firmware: '1.0',
      time: 7,
    });
    assert.deepEqual(client.devices.get('d1'), {
      device: 'd1',
      state: 'online',
      firmware: '1.0',
      seq: 1,
      time: 5,
      values: { t: 1, h: 2 },
      labels: {},
      lastSeen: 7,
    });
    assert.equal(client.cursor, undefined, 'snapshot cursors are not stream positions');
    assert.deepEqual(states, ['live']);
  });

  it('merges telemetry into the latest state and remembers the last cursor', () => {
    socket().accept();
    socket().push({ type: 'subscribed', id: socket().last()['id'], feeds: [] });
    socket().push(telemetry('d1', 'c1', 1, { t: 1, h: 2 }));
    socket().push(telemetry('d1', 'c2', 2, { t: 3 }));
    socket().push({
      type: 'status',
      feed: 'status/d1',
      device: 'd1',
      cursor: 'c3',
      state: 'offline',
      firmware: '2',
      time: 9999,
    });
    const d1 = client.devices.get('d1');
    assert.deepEqual(d1?.values, { t: 3, h: 2 });
    assert.equal(d1?.seq, 2);
    assert.equal(d1?.state, 'offline');
    assert.equal(d1?.lastSeen, 9999);
    assert.equal(client.cursor, 'c3');
  });

  it('is stale from a disconnect until the resume is replayed, resuming with since = last cursor', () => {
    socket().accept();
    socket().push({ type: 'subscribed', id: socket().last()['id'], feeds: [] });
    socket().push(telemetry('d1', 'c7', 7, { t: 1 }));
    socket().drop();
    assert.equal(client.state, 'stale');
    assert.equal(client.devices.get('d1')?.seq, 7, 'the stale view is kept, flagged stale');
    // Full jitter with random 0.5 on a 100 ms window.
    assert.equal(timers.nextDelay(), 50);
    timers.advance(50);
    assert.equal(FakeSocket.all.length, 2);
    socket().accept();
    const resume = socket().last();
    assert.equal(resume['since'], 'c7');
    socket().push({ type: 'subscribed', id: resume['id'], feeds: resume['feeds'] });
    assert.equal(client.state, 'stale', 'subscribed is not enough when resuming');
    socket().push(telemetry('d1', 'c8', 8, { t: 2 }));
    socket().push({ type: 'replayed', id: resume['id'], count: 1 });
    assert.equal(client.state, 'live');
    assert.equal(client.devices.get('d1')?.seq, 8);
    assert.deepEqual(states, ['live', 'stale', 'live']);
  });

  it('on gap the snapshots replace the local view', () => {
    const resets: number[] = [];
    client.on('reset', () => resets.push(client.devices.size));
    socket().accept();
    socket().push({ type: 'subscribed', id: socket().last()['id'], feeds: [] });
    socket().push(telemetry('gone', 'c1', 1, { t: 1 }));
    socket().push(telemetry('d1', 'c2', 1, { t: 1 }));
    socket().drop();
    timers.advance(1000);
    socket().accept();
    const resume = socket().last();
    assert.equal(resume['since'], 'c2');
    socket().push({ type: 'gap', id: resume['id'] });
    assert.equal(client.state, 'live');
    assert.equal(client.devices.size, 0);
    socket().push({
      type: 'snapshot',
      feed: 'telemetry/d1',
      device: 'd1',
      cursor: 'c90',
      seq: 40,
      time: 5,
      values: { t: 9 },
      labels: {},
    });
    assert.deepEqual([...client.devices.keys()], ['d1']);
    assert.equal(client.devices.get('d1')?.values['t'], 9);
    assert.equal(client.cursor, undefined, 'a cursor too old is forgotten');
    assert.ok(resets.length >= 1);
  });

  it('grows the backoff window on repeated failures and resets it after a stable period', () => {
    const delays: (number | undefined)[] = [];
    for (let i = 0; i < 6; i++) {
      socket().drop();
      delays.push(timers.nextDelay());
      timers.advance(timers.nextDelay() ?? 0);
    }
    // Windows 100, 200, 400, 800, 1000, 1000; random 0.5.
    assert.deepEqual(delays, [50, 100, 200, 400, 500, 500]);
    assert.equal(client.state, 'connecting', 'never live: still connecting, not stale');
    socket().accept();
    socket().push({ type: 'subscribed', id: socket().last()['id'], feeds: [] });
    assert.equal(client.state, 'live');
    timers.advance(4999);
    assert.equal(client.reconnectAttempt, 6, 'not yet stable');
    timers.advance(1);
    assert.equal(client.reconnectAttempt, 0);
    socket().drop();
    assert.equal(timers.nextDelay(), 50);
  });

  it('a connection lost before the stable period keeps the backoff growing', () => {
    socket().drop();
    timers.advance(50);
    socket().accept();
    socket().push({ type: 'subscribed', id: socket().last()['id'], feeds: [] });
    timers.advance(1000);
    socket().drop();
    assert.equal(timers.nextDelay(), 100);
  });

  it('commands resolve on ack, reject on server error, on disconnect and when not connected', async () => {
    await assert.rejects(
      client.command('d1', 'x'),
      (e: unknown) => e instanceof CommandError && e.code === 'not_connected',
    );
    socket().accept();
    const ok = client.command('d1', 'set_interval', { ms: '500' });
    const cmd = socket().last();
    assert.deepEqual(
      { ...cmd, id: 0 },
      { type: 'command', id: 0, device: 'd1', name: 'set_interval', args: { ms: '500' } },
    );
    socket().push({ type: 'ack', id: cmd['id'] });
    assert.deepEqual(await ok, { type: 'ack', id: cmd['id'] });

    const refused = client.command('d2', 'reboot');
    socket().push({
      type: 'error',
      id: socket().last()['id'],
      code: 'forbidden',
      message: 'no command rights',
    });
    await assert.rejects(refused, (e: unknown) => e instanceof CommandError && e.code === 'forbidden');

    const lost = client.command('d3', 'reboot');
    socket().drop();
    await assert.rejects(lost, (e: unknown) => e instanceof CommandError && e.code === 'disconnected');
  });

  it('commands time out', async () => {
    socket().accept();
    const p = client.command('d1', 'x');
    timers.advance(10_000);
    await assert.rejects(p, (e: unknown) => e instanceof CommandError && e.code === 'timeout');
  });

  it('subscribe while live sends only the new feeds; unsubscribe removes them from the resume', () => {
    socket().accept();
    socket().push({ type: 'subscribed', id: socket().last()['id'], feeds: [] });
    client.subscribe(['telemetry/+', 'telemetry/x/#']);
    assert.deepEqual(socket().last()['feeds'], ['telemetry/x/#']);
    client.unsubscribe(['status/+']);
    assert.deepEqual(socket().last(), {
      type: 'unsubscribe',
      id: socket().last()['id'],
      feeds: ['status/+'],
    });
    socket().drop();
    timers.advance(1000);
    socket().accept();
    assert.deepEqual(socket().last()['feeds'], ['telemetry/+', 'telemetry/x/#']);
  });

  it('close() is final: closed state, no reconnect', () => {
    socket().accept();
    client.close();
    assert.equal(client.state, 'closed');
    assert.equal(timers.nextDelay(), undefined);
    timers.advance(60_000);
    assert.equal(FakeSocket.all.length, 1);
  });

  it('reports unreadable frames without changing state', () => {
    const errors: string[] = [];
    client.on('error', (e) => errors.push(e.code));
    socket().accept();
    socket().onmessage?.({ data: 'not json' });
    socket().onmessage?.({ data: '{"type":"nope"}' });
    assert.deepEqual(errors, ['bad_frame', 'bad_frame']);
    assert.equal(client.state, 'connecting');
  });
});
