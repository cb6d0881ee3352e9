/**
 * The Socket.IO baseline for the /live fan-out: devices emit `reading` and the server broadcasts it
 * to every browser as `telemetry` (one room, WebSocket transport only, no compression). Run as a
 * child process by the benchmark:
 *
 *   node bench/socketio-server.js <port>
 */
import { createServer } from 'node:http';
import { Server } from 'socket.io';

const port = Number(process.argv[2]);
const http = createServer();
const io = new Server(http, { transports: ['websocket'], perMessageDeflate: false, serveClient: false });
io.on('connection', (socket) => {
  if (socket.handshake.query['role'] === 'device') {
    socket.on('reading', (reading: unknown) => {
      io.to('browsers').emit('telemetry', reading);
    });
  } else {
    void socket.join('browsers');
  }
});
http.listen(port, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
