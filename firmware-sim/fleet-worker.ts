/**
 * Worker-thread entry of a fleet: runs one DeviceGroup, posts a snapshot every `reportMs` and a last
 * one after 'stop'. Protocol (plain objects):
 *   main → worker: { type: 'stop' }
 *   worker → main: { type: 'snapshot', snapshot } | { type: 'stopped', snapshot }
 */
import { parentPort, workerData } from 'node:worker_threads';
import { pino } from 'pino';
import { createLogger } from '../src/log.js';
import { DeviceGroup, type DeviceSpec, type SharedDeviceOptions } from './group.js';

export interface WorkerInput {
  readonly specs: DeviceSpec[];
  readonly shared: SharedDeviceOptions;
  readonly logLevel: string;
  readonly reportMs: number;
  readonly drainMs: number;
}

const port = parentPort;
if (!port) throw new Error('fleet-worker must run in a worker thread');
const input = workerData as WorkerInput;
// Logs go to stderr: stdout belongs to the progress lines and the JSON summary.
const log = createLogger(
  input.logLevel,
  pino.destination({ dest: 2, sync: false }) as unknown as NodeJS.WritableStream,
).child({
  module: 'sim',
  worker: true,
});
const group = new DeviceGroup(input.specs, input.shared, log);
group.start();
const timer = setInterval(
  () => port.postMessage({ type: 'snapshot', snapshot: group.snapshot() }),
  input.reportMs,
);
port.on('message', (msg: { type: string }) => {
  if (msg.type !== 'stop') return;
  clearInterval(timer);
  void group.stop(input.drainMs).then(() => {
    port.postMessage({ type: 'stopped', snapshot: group.snapshot() });
    port.close();
  });
});
