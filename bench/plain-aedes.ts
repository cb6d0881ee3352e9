/**
 * The "plain Aedes" baseline: Aedes 1.2 with its defaults, no authentication, validation, storage,
 * packet guard or live channel; MQTT over TCP and over WebSocket with `websocket-stream`, as the
 * Aedes README serves it. Run as a child process by the benchmark:
 *
 *   node bench/plain-aedes.js <tcpPort> <wsPort>
 */
import { createServer as createHttpServer } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { Aedes } from 'aedes';
import websocketStream from 'websocket-stream';

const [tcpPort, wsPort] = process.argv.slice(2).map(Number);
const aedes = await Aedes.createBroker();
createNetServer((socket) => aedes.handle(socket)).listen(tcpPort, '127.0.0.1');
const http = createHttpServer();
websocketStream.createServer({ server: http }, (stream) => aedes.handle(stream as never));
http.listen(wsPort, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
