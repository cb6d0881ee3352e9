// websocket-stream ships no types; the one call the bridge makes: wrap a server-side ws socket.
declare module 'websocket-stream' {
  import type { Duplex } from 'node:stream';
  import type WebSocket from 'ws';

  function websocketStream(socket: WebSocket, options?: { binary?: boolean; objectMode?: boolean }): Duplex;
  export default websocketStream;
}
