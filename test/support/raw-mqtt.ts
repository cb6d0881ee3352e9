/**
 * A raw MQTT 3.1.1 client over TCP or WebSocket (`/mqtt`), for tests that look at the bytes a broker
 * writes or need a subscriber that stops reading: every byte received is kept in order (over
 * WebSocket, the binary frames' payloads), every packet parsed (a malformed stream fails the test).
 */
import assert from 'node:assert/strict';
import { type Socket, connect as tcpConnect } from 'node:net';
import mqttPacket from 'mqtt-packet';
import { WebSocket } from 'ws';
import { waitEvent, waitFor } from './wait.js';

export type RawTarget = { readonly tcp: number } | { readonly ws: string };

export interface RawMqtt {
  readonly packets: mqttPacket.Packet[];
  /** The byte stream received, in order. */
  readonly bytes: Buffer[];
  publishes(): mqttPacket.IPublishPacket[];
  send(packet: mqttPacket.Packet): void;
  /** Stops reading: the kernel's buffers fill, then the server's. */
  freeze(): void;
  close(): void;
}

export interface RawMqttOptions {
  /** Subscribed before resolving (at SUBACK). */
  readonly subscriptions?: Array<{ topic: string; qos: 0 | 1 }>;
  /** Answers QoS 1 deliveries with PUBACK, as a client does (default true). */
  readonly ack?: boolean;
}

/** Connects (clean session, keepalive 0), resolves at CONNACK 0, or at SUBACK with `subscriptions`. */
export async function rawMqtt(
  target: RawTarget,
  clientId: string,
  options: RawMqttOptions = {},
): Promise<RawMqtt> {
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  const packets: mqttPacket.Packet[] = [];
  const bytes: Buffer[] = [];
  const received = (data: Buffer) => {
    bytes.push(data);
    parser.parse(data);
  };
  let write: (data: Buffer) => void;
  let freeze: () => void;
  let close: () => void;
  if ('tcp' in target) {
    const socket: Socket = tcpConnect(target.tcp, '127.0.0.1');
    socket.on('error', () => {});
    await waitEvent(socket, 'connect');
    socket.on('data', received);
    write = (data) => socket.write(data);
    freeze = () => socket.pause();
    close = () => socket.destroy();
  } else {
    const ws = new WebSocket(target.ws, 'mqtt');
    ws.on('error', () => {});
    await waitEvent(ws, 'open');
    ws.on('message', (data, isBinary) => {
      assert.ok(isBinary, 'MQTT over WebSocket is carried in binary frames');
      received(data as Buffer);
    });
    write = (data) => ws.send(data);
    freeze = () => ws.pause();
    close = () => ws.terminate();
  }
  const send = (packet: mqttPacket.Packet) => write(mqttPacket.generate(packet));
  parser.on('packet', (p) => {
    packets.push(p);
    if (options.ack !== false && p.cmd === 'publish' && p.qos === 1)
      send({ cmd: 'puback', messageId: p.messageId! });
  });
  parser.on('error', (err) => assert.fail(`malformed MQTT stream: ${err.message}`));
  send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId, clean: true, keepalive: 0 });
  const connack = await waitFor('CONNACK', () => packets.find((p) => p.cmd === 'connack'));
  assert.equal((connack as mqttPacket.IConnackPacket).returnCode, 0);
  if (options.subscriptions) {
    send({ cmd: 'subscribe', messageId: 1, subscriptions: options.subscriptions });
    await waitFor('SUBACK', () => packets.some((p) => p.cmd === 'suback'));
  }
  return {
    packets,
    bytes,
    publishes: () => packets.filter((p): p is mqttPacket.IPublishPacket => p.cmd === 'publish'),
    send,
    freeze,
    close,
  };
}
