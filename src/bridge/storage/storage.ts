/**
 * Room: bridge/storage. The boundary between acceptance and the database: the pipeline's durable
 * sink. An accepted message is encoded once into InfluxDB line protocol (`line-protocol.ts`);
 * implementations decide how the lines become durable and how they reach InfluxDB.
 */
import type { Sink } from '../sink.js';

export interface StorageReadiness {
  readonly ok: boolean;
  /** Why not ready, for /readyz's JSON body. */
  readonly reason?: string;
}

export interface Storage extends Sink {
  readonly durable: true;
  /**
   * Takes ownership of the lines (an accepted message's, or the bridge's own health figures) and
   * counts them as received in the loss ledger. Resolves once they are safe: a QoS 1 PUBACK may follow.
   * Rejects with a TelebridgeError coded E_SPOOL_FULL when the disk limit is reached: the caller
   * then withholds the acknowledgement, so the device keeps its data.
   */
  append(lines: readonly string[]): Promise<void>;
  /** For /readyz. */
  readiness(): StorageReadiness;
  /** Points accepted and not yet confirmed by the database. */
  backlogPoints(): number;
  /** Stop accepting, try to drain within `graceMs`, release files. What is left stays on disk. */
  close(graceMs: number): Promise<void>;
}
