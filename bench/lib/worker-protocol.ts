/**
 * What the load generator's parent (generator.ts) and its worker threads (gen-worker.ts) say to each
 * other: the task a worker runs, and what it reports back.
 */
import type { Target, Transport } from './conn.js';
import type { LatencyRecorder } from './stats.js';

export type WorkerTask =
  | {
      task: 'ingest';
      transport: Transport;
      target: Target;
      devices: { id: string; password?: string }[];
      window: number;
      baseTimeMs: number;
      spreadAddresses?: boolean;
    }
  | {
      task: 'rate';
      transport: Transport;
      target: Target;
      devices: string[];
      rate: number;
      qos?: 0 | 1;
      /** Stop after this many messages (round-robin, so each device sends total / devices). */
      total?: number;
    }
  | { task: 'subscribe'; transport: Transport; target: Target; clients: string[]; topic: string }
  | {
      task: 'hold';
      transport: Transport;
      target: Target;
      clients: string[];
      reconnect: boolean;
      concurrency: number;
    }
  | { task: 'live'; target: Target; count: number; token: string; feeds: string[]; deflate?: boolean }
  | { task: 'sio'; target: Target; count: number }
  | {
      /** /live browsers that were away: at `start` each subscribes to its feed with `since`. */
      task: 'resume';
      target: Target;
      token: string;
      /** One feed a browser. */
      feeds: string[];
      since: string;
      /** Readings each browser missed (its count must match). */
      expectedEach: number;
    }
  | { task: 'sio-rate'; target: Target; devices: string[]; rate: number };

export interface WorkerResult {
  latency?: ReturnType<LatencyRecorder['snapshot']>;
  sent?: number;
  acked?: number;
  received?: number;
  connected?: number;
  /** subscribe: connections the server closed after `start`. */
  dropped?: number;
  /** subscribe: epoch ms of the last delivery recorded (0: none). */
  lastAt?: number;
  /** hold+reconnect: epoch ms of the first and last reconnection after `arm`. */
  firstConnectAt?: number;
  lastConnectAt?: number;
  attempts?: number;
  errors?: string[];
  /** resume: browsers whose `replayed` arrived, those that got `gap`, and those whose count was exact. */
  done?: number;
  gaps?: number;
  exact?: number;
}
