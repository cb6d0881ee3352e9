// LiveClient (web/client) in Node against the real bridge, through a TCP proxy the test can cut:
// the client goes stale, 50+ samples are published while it is away, and after the network comes
// back it resumes by itself from its last cursor with no gap and no duplicate.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { WebSocket } from 'ws';
import type { WireSample } from '../firmware-sim/codec.js';
import { SimDevice } from '../firmware-sim/device.js';
import { type BridgeHandle, startBridge } from '../src/app.js';
import { FileRegistry } from '../src/auth/registry-file.js';
import { openTokenService } from '../src/auth/tokens.js';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { type ConnectionState, LiveClient } from '../web/client/live-client.js';
import type { TelemetryMessage } from '../web/client/protocol.js';
import type { SocketConstructor } from '../web/client/socket.js';
import { tempDir } from './support/services.js';
import { waitFor } from './support/wait.js';

/** A loopback TCP proxy whose connections can be cut and new ones refused, to simulate a network loss. */
async function startProxy(targetPort: number) {
  const sockets = new Set<Socket>();
  let blocked = false;
  const server: Server = createServer((inbound) => {
    if (blocked) {
      inbound.destroy();
      return;
    }
    const outbound = connect(targetPort, '127.0.0.1');
    for (const s of [inbound, outbound]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
    }
    inbound.pipe(outbound).pipe(inbound);
    inbound.on('close', () => outbound.destroy());
    outbound.on('close', () => inbound.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as { port: number }).port,
    /** Drops every open connection and refuses new ones until `restore()`. */
    cut() {
      blocked = true;
      for (const s of sockets) s.destroy();
    },
    restore() {
      blocked = false;
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

describe('LiveClient against the bridge', () => {
  let dir: string;
  let bridge: BridgeHandle;
  let device: SimDevice;
  let proxy: Awaited<ReturnType<typeof startProxy>>;
  let client: LiveClient;
  const received: TelemetryMessage[] = [];
  const acked: WireSample[] = [];
  const states: ConnectionState[] = [];

  before(async () => {
    dir = tempDir('client-bridge');
    const secret = await (await FileRegistry.open(dir)).addDevice('sim-2');
    const { token } = await (await openTokenService(dir)).create({ feeds: ['telemetry/+'] });
    bridge = await startBridge(
      loadConfig({
        BRIDGE_MQTT_PORT: '0',
        BRIDGE_HTTP_PORT: '0',
        BRIDGE_MQTTS_PORT: '0',
        BRIDGE_DATA_DIR: dir,
      }),
      { log: createLogger('warn') },
    );
    proxy = await startProxy(bridge.ports.http);
    client = new LiveClient({
      url: `ws://127.0.0.1:${proxy.port}/live`,
      token,
      feeds: ['telemetry/sim-2'],
      WebSocket: WebSocket as unknown as SocketConstructor,
      backoff: { baseMs: 50, capMs: 200 },
    });
    client.on('telemetry', (m) => received.push(m));
    client.on('state', (s) => states.push(s));
    device = new SimDevice({
      id: 'sim-2',
      secret,
      url: `mqtt://127.0.0.1:${bridge.ports.mqtt}`,
      intervalMs: 20,
    });
    device.on('acked', (_seq: number, samples: WireSample[]) => acked.push(...samples));
  });

  after(async () => {
    client?.close();
    await device?.stop();
    await proxy?.close();
    await bridge?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('resumes after a network loss with no gap and no duplicate', async () => {
    await waitFor('the client to be live', () => client.state === 'live');
    await device.start();
    await waitFor('some telemetry', () => received.length >= 5);

    proxy.cut();
    await waitFor('the client to be stale', () => client.state === 'stale');
    const ackedAtCut = acked.length;
    await waitFor('50 samples published while away', () => acked.length >= ackedAtCut + 50, {
      timeoutMs: 20_000,
    });
    const replayed = new Promise<number>((resolve) => client.on('replayed', (m) => resolve(m.count)));
    proxy.restore();
    assert.ok((await replayed) >= 50, 'the missed samples were replayed');
    await waitFor('live again', () => client.state === 'live');

    await device.stop();
    const firstTime = received[0]!.time;
    const expected = acked.filter((s) => s.time_unix_ms >= firstTime).map((s) => s.time_unix_ms);
    await waitFor('every acknowledged sample to reach the client', () => received.length >= expected.length, {
      timeoutMs: 10_000,
    });
    const times = received.map((m) => m.time);
    assert.equal(new Set(times).size, times.length, 'no duplicate');
    assert.deepEqual(times, expected, 'no gap, in order');
    assert.deepEqual(states, ['live', 'stale', 'live']);
  });
});
