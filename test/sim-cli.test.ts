/**
 * `telebridge sim` end to end: --help names the flags; a small provisioned fleet over TCP, TLS and
 * secure WebSocket runs against the real bridge and ends with a JSON summary line.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, test } from 'node:test';
import { Command } from 'commander';
import { fleetIds, provisionFleet, readFleetFile } from '../firmware-sim/provision.js';
import { registerSimCommand, runSim, type SimOptions } from '../src/cli/sim.js';
import { startTestBridge, type TestBridge } from './support/bridge.js';
import { tempDir } from './support/services.js';

let tb: TestBridge | undefined;
const dataDir = tempDir('sim-cli');
after(async () => {
  await tb?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

test('sim --help lists the fleet, provisioning and fault flags', () => {
  let help = '';
  const program = new Command('telebridge')
    .exitOverride()
    .configureOutput({ writeOut: (s) => (help += s), writeErr: (s) => (help += s) });
  registerSimCommand(program); // sub-commands inherit the output settings when created
  assert.throws(() => program.parse(['node', 'telebridge', 'sim', '--help']), {
    code: 'commander.helpDisplayed',
  });
  for (const flag of [
    '--devices',
    '--url',
    '--interval',
    '--duration',
    '--provision',
    '--data-dir',
    '--prefix',
  ]) {
    assert.match(help, new RegExp(flag));
  }
  for (const f of ['malformed', 'oversize', 'wrong-device', 'clock-skew', 'nan', 'burst']) {
    assert.match(help, new RegExp(`--fault-${f}`));
  }
});

function options(url: string, over: Partial<SimOptions> = {}): SimOptions {
  return {
    devices: 3,
    url,
    interval: 100,
    duration: 2,
    provision: false,
    dataDir,
    prefix: 'cli-',
    fleetFile: join(dataDir, 'sim-fleet.json'),
    batchSize: 100,
    buffer: 1000,
    backoffBase: 200,
    backoffCap: 1000,
    insecure: true,
    devicesPerThread: 1000,
    logLevel: 'warn',
    progress: 'plain',
    faultMalformed: 0,
    faultOversize: 0,
    faultWrongDevice: 0,
    faultClockSkew: 0,
    faultNan: 0,
    faultBurst: 0,
    burstSize: 10,
    oversizeBytes: 20_480,
    ...over,
  };
}

test('a provisioned fleet runs over every transport and ends with a JSON summary', async () => {
  // Provisioned before the bridge starts (a running bridge re-reads its registry once a second);
  // a second provisioning run reuses the fleet file instead of creating new secrets.
  const fleetFile = join(dataDir, 'sim-fleet.json');
  const first = await provisionFleet({ dataDir, ids: fleetIds('cli-', 3), fleetFile });
  const again = await provisionFleet({ dataDir, ids: fleetIds('cli-', 3), fleetFile });
  assert.deepEqual(again, first);
  assert.equal((await readFleetFile(fleetFile)).size, 3);
  tb = await startTestBridge({}, { tls: true, dataDir });

  // With TLS configured, /mqtt is wss only; plain ws is covered by sim-replay.
  for (const transport of ['tcp', 'tls', 'wss'] as const) {
    const out = new PassThrough();
    let text = '';
    out.on('data', (c: Buffer) => (text += c.toString()));
    const summary = await runSim(options(tb.mqttUrl(transport)), out as unknown as NodeJS.WriteStream);
    const last = text.trim().split('\n').at(-1)!;
    assert.deepEqual(JSON.parse(last), summary, `${transport}: the last line is the JSON summary`);
    assert.equal(summary.devices, 3);
    assert.equal(summary.connects, 3, `${transport}: every device connected (${last})`);
    assert.equal(summary.authFailures, 0);
    assert.ok(summary.acked >= 3 * 5, `${transport}: telemetry acknowledged`);
    assert.equal(summary.samplesAcked, summary.samples, `${transport}: drained at the end`);
    assert.ok(summary.latencyMs.p50 !== null && summary.latencyMs.p99 !== null);
  }
});
