/**
 * The part of the WHATWG WebSocket that the client uses, typed here so the client compiles without
 * the DOM lib (it runs in Node 20 with `ws`, whose WebSocket has the same shape) and without Node's
 * types (it runs in browsers).
 */

export interface SocketMessageEvent {
  readonly data: unknown;
}
export interface SocketCloseEvent {
  readonly code: number;
  readonly reason: string;
}

export interface SocketLike {
  readonly readyState: number;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: SocketMessageEvent) => void) | null;
  onclose: ((event: SocketCloseEvent) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

/** `new WebSocket(url, protocols)`: the browser's, Node 22's global, or `ws`'s in Node 20. */
export type SocketConstructor = new (url: string, protocols?: string | string[]) => SocketLike;

/** WebSocket.OPEN. */
export const OPEN = 1;

/** The global WebSocket constructor when there is one (browsers, Node ≥ 22). */
export function globalWebSocket(): SocketConstructor | undefined {
  return (globalThis as { WebSocket?: SocketConstructor }).WebSocket;
}

/** Text of a message event: browsers and `ws` give a string for text frames; anything else is coerced. */
export function eventText(event: SocketMessageEvent): string {
  return typeof event.data === 'string' ? event.data : String(event.data);
}
