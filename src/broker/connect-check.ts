/**
 * Room: broker. CONNECT fields the bridge refuses with CONNACK 2 before authentication. Aedes 1.2 would accept
 * some of them (it invents a client id, it limits client ids only for MQTT 3.1) and answers a
 * keepalive over its `keepaliveLimit` — and keepalive 0 — with return code 6, which MQTT 3.1.1
 * reserves (mqtt.js reports "Connection refused: undefined"). So Aedes gets no keepalive limit and
 * the limit is applied here, with the code Mosquitto gives 3.1.1 clients.
 */
import type { ConnectPacket } from 'aedes';

/** Longest client id, characters (Aedes's `maxClientsIdLength` only applies to MQTT 3.1). */
export const MAX_CLIENT_ID_LENGTH = 128;

export interface ConnectRefusal {
  /** CONNACK return code; only 0–5 exist in MQTT 3.1.1 [MQTT-3.2.2-6]. */
  readonly returnCode: 2;
  readonly message: string;
  /** True when the operator should hear of it (a device asks for more than the configured limit). */
  readonly log: boolean;
}

/**
 * Why a CONNECT is refused, or undefined. Keepalive 0 (the client never sends PINGREQ) is accepted:
 * the listeners find dead peers with TCP keepalive probes and WebSocket pings instead.
 * @param keepaliveLimitS BRIDGE_KEEPALIVE_LIMIT_S; 0 = no limit.
 */
export function connectRefusal(
  packet: Pick<ConnectPacket, 'clientId' | 'clean' | 'keepalive'>,
  keepaliveLimitS: number,
): ConnectRefusal | undefined {
  // [MQTT-3.1.3-8] a zero-byte client id with CleanSession 0 gets CONNACK 2; Aedes would invent one.
  if (!packet.clientId && !packet.clean) {
    return { returnCode: 2, message: 'client id refused: empty with clean session 0', log: false };
  }
  // [MQTT-3.1.3-5] servers may refuse long client ids: CONNACK 2 like Aedes does for 3.1.
  if (packet.clientId && packet.clientId.length > MAX_CLIENT_ID_LENGTH) {
    return {
      returnCode: 2,
      message: `client id refused: longer than ${MAX_CLIENT_ID_LENGTH} characters`,
      log: false,
    };
  }
  if (keepaliveLimitS > 0 && (packet.keepalive ?? 0) > keepaliveLimitS) {
    return {
      returnCode: 2,
      message: `keepalive ${packet.keepalive} s refused: above the limit BRIDGE_KEEPALIVE_LIMIT_S=${keepaliveLimitS}`,
      log: true,
    };
  }
  return undefined;
}
