/**
 * Room: broker. What the broker asks of whoever ingests messages (the bridge's pipeline), handed to
 * `createBroker` at construction. The broker knows sockets, sessions and topic rights; it never
 * looks inside a payload, and it learns from the verdict where an acknowledged message goes.
 */

/** A message the broker publishes on the ingest's behalf (QoS 1), e.g. a `Rejection` on `devices/D/errors`. */
export interface Reply {
  readonly topic: string;
  readonly payload: Buffer;
}

/**
 * What becomes of an acknowledged PUBLISH: `relay` routes it to subscribers as a plain broker would;
 * `discard` routes it nowhere and publishes `reply` when there is one. Refusing it (no
 * acknowledgement, the connection closed so that the client keeps its data) is a rejected promise.
 */
export type IngestVerdict =
  | { readonly route: 'relay' }
  | { readonly route: 'discard'; readonly reply?: Reply | undefined };

export const RELAY: IngestVerdict = Object.freeze({ route: 'relay' });
export const DISCARD: IngestVerdict = Object.freeze({ route: 'discard' });

export interface IngestPort {
  /** True for topics whose messages are the ingest's (they count against a client's publish rate). */
  ingests(topic: string): boolean;
  /**
   * A PUBLISH the client's rights allowed. The verdict, or a promise of it when the message must first
   * be made durable: the PUBACK waits for it. A rejected promise refuses the message.
   * @param clientId the publishing client ('' for a will published after its client left)
   */
  handle(clientId: string, topic: string, payload: Buffer): IngestVerdict | Promise<IngestVerdict>;
  /**
   * A QoS 0 message the broker dropped over the client's publish rate (contract §3). Returns what to
   * tell the client, if anything.
   */
  dropped(clientId: string, topic: string, detail: string): Reply | undefined;
}
