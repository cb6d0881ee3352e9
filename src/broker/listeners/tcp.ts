/**
 * Room: broker. MQTT over TCP and over TLS: each accepted socket is counted against the connection caps and
 * handed to the broker. With BRIDGE_TLS_CA, client certificates are requested and verified; a
 * verified certificate whose CN names a device authenticates it without a password.
 */
import { readFileSync } from 'node:fs';
import { createServer as createNetServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import type { Config } from '../../config.js';
import type { Broker, ListenerName } from '../broker.js';
import type { ConnectionLimiter } from './connection-limiter.js';
import { listen } from './listen.js';

/**
 * Idle time before the kernel starts TCP keepalive probes on a device socket, ms. A client with MQTT
 * keepalive 0 sends nothing while idle, so a peer that vanished (power cut, NAT mapping dropped)
 * is only found by these probes: Linux then sends one every `net.ipv4.tcp_keepalive_intvl` (75 s)
 * and gives up after `tcp_keepalive_probes` (9), i.e. ~12 minutes after the peer went silent.
 */
export const TCP_KEEPALIVE_DELAY_MS = 60_000;

export async function startMqttListener(
  kind: Extract<ListenerName, 'tcp' | 'tls'>,
  config: Config,
  broker: Broker,
  limiter: ConnectionLimiter,
): Promise<Server> {
  const onSocket = (socket: Socket) => {
    if (!limiter.admit(socket, socket.remoteAddress)) {
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    socket.setKeepAlive(true, TCP_KEEPALIVE_DELAY_MS);
    broker.handleSocket(socket, kind);
  };
  let server: Server;
  if (kind === 'tls') {
    const tls = config.tls!;
    server = createTlsServer(
      {
        cert: readFileSync(tls.certFile),
        key: readFileSync(tls.keyFile),
        ...(tls.caFile ? { ca: readFileSync(tls.caFile), requestCert: true, rejectUnauthorized: false } : {}),
        handshakeTimeout: config.limits.connectTimeoutMs,
      },
      onSocket,
    );
    // A failed handshake is the client's problem; it must not reach the process.
    server.on('tlsClientError', () => {});
  } else {
    server = createNetServer(onSocket);
  }
  await listen(server, kind === 'tls' ? config.mqttsPort : config.mqttPort, config.host);
  return server;
}
