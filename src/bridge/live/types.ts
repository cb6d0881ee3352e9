/**
 * What the composition root needs from the live channel (contract §5). The HTTP listener routes
 * `/live` upgrades and `/live/sse` here; the dashboard's files are served next to the listener.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Reading, StatusChange } from '../reading.js';

export interface DeviceCommand {
  readonly id: string;
  readonly name: string;
  readonly args: Readonly<Record<string, string>>;
}

export interface LiveChannel {
  /** Fan out an accepted reading: one `telemetry` message a sample. */
  publishTelemetry(reading: Reading): void;
  publishStatus(status: StatusChange): void;
  /** An upgrade request on `/live`. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** `GET /live/sse` (and `/live` without an upgrade); false when the path is not the channel's. */
  handleRequest(req: IncomingMessage, res: ServerResponse): boolean;
  /** Open browser connections (WebSocket and SSE). */
  clientCount(): number;
  /** Close every browser connection (1001 going away) and stop timers. */
  close(): Promise<void>;
}
