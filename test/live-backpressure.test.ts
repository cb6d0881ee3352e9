/**
 * Backpressure (contract §5, issue 3 point 5): a reader that stops reading is conflated past the soft
 * limit and closed with 1013 past the hard limit, and never delays another reader.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LiveTestClient, reading, startLiveServer } from './support/live-client.js';
import { waitFor } from './support/wait.js';

/** ~1 KiB of JSON per message. */
const VALUES = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`metric_${i}`, i + 0.123456]));
const BATCH = 50;
/** ~16 KiB of JSON per message, for the stalled-reader test. */
const BIG_VALUES = Object.fromEntries(Array.from({ length: 640 }, (_, i) => [`metric_${i}`, i + 0.123456]));
const BIG_BATCH = 32;
/**
 * Bound on the loop: 128 MiB of messages. The kernel absorbs a lot before the server's own buffer
 * grows: loopback receive buffers autotune up to tcp_rmem's max (32 MiB here) plus the send buffer.
 */
const MAX_BATCHES = 256;

async function subscribedClient(url: string, token: string): Promise<LiveTestClient> {
  // Uncompressed, so the bytes on the wire are the JSON's (deflate would shrink these repetitive
  // messages ~80×, and the limits count what is actually buffered).
  const c = await LiveTestClient.connect(url, token, { perMessageDeflate: false });
  c.send({ type: 'subscribe', id: 's', feeds: ['telemetry/+'] });
  assert.equal((await c.next()).type, 'subscribed');
  return c;
}

test('a reader that stops reading is closed with 1013 past the hard limit and does not delay another reader', async () => {
  const server = await startLiveServer({
    BRIDGE_LIVE_SOFT_LIMIT: String(1024 * 1024),
    BRIDGE_LIVE_HARD_LIMIT: String(4 * 1024 * 1024),
    BRIDGE_DRAIN_TIMEOUT_MS: '30000',
  });
  try {
    const token = await server.token();
    const stalled = await subscribedClient(server.wsUrl, token);
    const fast = await subscribedClient(server.wsUrl, token);
    stalled.ws.pause(); // stops reading its socket: the kernel buffers fill, then the server's
    let published = 0;
    let worstLagMs = 0;
    let batches = 0;
    while (server.live.clientCount() === 2 && batches < MAX_BATCHES) {
      const start = Date.now();
      for (let i = 0; i < BIG_BATCH; i++) {
        published++;
        // Many devices, so conflation (newest per device) cannot keep the stalled reader under the limit.
        server.hub.publishTelemetry(reading(`dev${published % 1000}`, published, BIG_VALUES));
      }
      await waitFor(`fast reader to get message ${published}`, () => fast.received.length >= published + 1, {
        timeoutMs: 2000,
        intervalMs: 1,
      });
      worstLagMs = Math.max(worstLagMs, Date.now() - start);
      batches++;
    }
    assert.equal(
      server.live.clientCount(),
      1,
      `the stalled reader was not dropped after ${published} messages`,
    );
    console.log(
      `# stalled reader dropped after ${published} messages (${(published / 64).toFixed(1)} MiB); fast reader worst batch lag ${worstLagMs} ms`,
    );

    // The fast reader got every message, in order, none conflated.
    const got = fast.drain().map((m) => m.seq);
    assert.equal(got.length, published);
    assert.ok(
      got.every((seq, i) => seq === i + 1),
      'fast reader: every message exactly once, in order',
    );

    // The stalled reader, reading again, finds what was buffered and then the 1013 close frame.
    stalled.ws.resume();
    const { code } = await stalled.closed;
    assert.equal(code, 1013);
    assert.ok(stalled.received.length - 1 < published, 'the stalled reader did not get everything');

    // And the fast reader keeps getting messages afterwards.
    server.hub.publishTelemetry(reading('after', published + 1, { v: 1 }));
    assert.equal((await fast.next()).seq, published + 1);
    fast.close();
  } finally {
    await server.close();
  }
});

test('a slow reader past the soft limit gets conflated updates: the newest per device, in order', async () => {
  const server = await startLiveServer({
    BRIDGE_LIVE_SOFT_LIMIT: String(64 * 1024),
    BRIDGE_LIVE_HARD_LIMIT: String(64 * 1024 * 1024),
  });
  try {
    const token = await server.token();
    const slow = await subscribedClient(server.wsUrl, token);
    slow.ws.pause();
    const devices = ['c0', 'c1', 'c2', 'c3', 'c4'];
    const newest = new Map<string, number>();
    let published = 0;
    // Enough to fill loopback socket buffers several times over; yielding between batches lets the
    // server write what the kernel takes.
    for (let b = 0; b < 600; b++) {
      for (let i = 0; i < BATCH; i++) {
        published++;
        const device = devices[published % devices.length]!;
        newest.set(device, published);
        server.hub.publishTelemetry(reading(device, published, VALUES));
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
    slow.ws.resume();
    await waitFor('the newest of every device', () =>
      devices.every((d) => slow.received.some((m) => m.device === d && m.seq === newest.get(d))),
    );
    const seqs = slow.drain().map((m) => m.seq as number);
    assert.ok(seqs.length < published, `conflated: ${seqs.length} of ${published} delivered`);
    assert.ok(
      seqs.every((s, i) => i === 0 || s > seqs[i - 1]!),
      'cursor order kept',
    );
    console.log(`# slow reader: ${seqs.length} of ${published} messages delivered after conflation`);
    assert.equal(slow.ws.readyState, slow.ws.OPEN, 'under the hard limit it stays connected');
    slow.close();
  } finally {
    await server.close();
  }
});
