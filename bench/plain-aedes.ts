/**
 * The "plain Aedes" baseline: Aedes 1.2 with its defaults, no authentication, validation, storage,
 * packet guard or live channel; MQTT over TCP and over WebSocket with `websocket-stream`, as the
 * Aedes README serves it. Run as a child process by the benchmark:
 *
 *   node bench/plain-aedes.js <tcpPort> <wsPort>
 */
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import type { Duplex } from 'node:stream';
import { Aedes } from 'aedes';
import websocketStream from 'websocket-stream';

const [tcpPort, wsPort] = process.argv.slice(2).map(Number);
const aedes = await Aedes.createBroker();
createNetServer((socket) => aedes.handle(socket)).listen(tcpPort, '127.0.0.1');
const http = createHttpServer();
// The shared typing (src/types) covers only the wrapper the bridge uses; createServer is the
// websocket-stream API the Aedes README serves WebSocket with.
const wss = websocketStream as unknown as {
  createServer(options: { server: Server }, onStream: (stream: Duplex) => void): void;
};
wss.createServer({ server: http }, (stream) => aedes.handle(stream as never));
http.listen(wsPort, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
