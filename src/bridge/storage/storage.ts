/**
 * The boundary between acceptance and the database. The pipeline hands over InfluxDB line-protocol
 * lines (encoded once, from `line-protocol.ts`); implementations decide how they become durable and
 * how they reach InfluxDB.
 */

export interface StorageReadiness {
  readonly ok: boolean;
  /** Why not ready, for /readyz's JSON body. */
  readonly reason?: string;
}

export interface Storage {
  /**
   * Takes ownership of the lines. Resolves once they are safe: a QoS 1 PUBACK may follow.
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
