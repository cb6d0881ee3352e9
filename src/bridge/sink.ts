/**
 * Room: bridge. Where accepted messages go: every destination of the pipeline (storage, the live
 * channel) is a `Sink` handed to it at construction, and each encodes the message once in its own
 * format. The contract every implementation keeps is tested in test/sink-contract.test.ts.
 */
import type { Reading, StatusChange } from './reading.js';

/** A message that passed validation (contract §3), in plain numbers and strings. */
export type Accepted =
  | { readonly kind: 'telemetry'; readonly reading: Reading }
  | { readonly kind: 'status'; readonly status: StatusChange };

export interface Sink {
  /**
   * True when the acknowledgement waits for this sink: `accept` then returns a promise that resolves
   * once the message is safe, and rejects (with a TelebridgeError) when it cannot be taken. Messages
   * made safe by one write may get the same promise (the spool's group commit): the pipeline then
   * waits on it once for all of them.
   */
  readonly durable: boolean;
  /** Takes an accepted message. Non-durable sinks never throw for one message and never wait. */
  accept(message: Accepted): Promise<void> | void;
  /** Samples of a decoded message that failed a check (the loss ledger counts them as received). */
  rejected?(samples: number): void;
}
