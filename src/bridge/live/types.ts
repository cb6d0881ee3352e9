/**
 * Room: bridge/live. What the composition root needs from the live channel's endpoints (contract §5).
 * The HTTP listener routes `/live` upgrades and `/live/sse` here; the dashboard's files are served
 * next to the listener. Accepted messages reach the channel through its hub (hub.ts), a pipeline sink.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';

export interface DeviceCommand {
  readonly id: string;
  readonly name: string;
  readonly args: Readonly<Record<string, string>>;
}

export interface LiveChannel {
  /** An upgrade request on `/live`. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** `GET /live/sse` (and `/live` without an upgrade); false when the path is not the channel's. */
  handleRequest(req: IncomingMessage, res: ServerResponse): boolean;
  /** Open browser connections (WebSocket and SSE). */
  clientCount(): number;
  /** Close every browser connection (1001 going away) and stop timers; the hub is closed after. */
  close(): Promise<void>;
}
