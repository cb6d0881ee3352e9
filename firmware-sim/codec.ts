/**
 * The device side of contract §3: encoders and decoders of telemetry.v1, from the bridge's own schema
 * registry (src/schemas/*.proto), loaded once per thread.
 */
import type protobuf from 'protobufjs';
import { BUILTIN_SCHEMAS } from '../src/config.js';
import { loadSchemas } from '../src/schemas/registry.js';

/** One sample as it goes on the wire (field names as in the .proto). */
export interface WireSample {
  time_unix_ms: number;
  values: Record<string, number>;
  labels?: Record<string, string>;
}

export interface WireRejection {
  seq: number;
  reason: string;
  detail: string;
}

export interface WireCommand {
  id: string;
  name: string;
  args: Record<string, string>;
}

export const STATE_ONLINE = 1;
export const STATE_OFFLINE = 2;

export interface Codec {
  telemetry(deviceId: string, seq: number, samples: readonly WireSample[]): Buffer;
  status(state: typeof STATE_ONLINE | typeof STATE_OFFLINE, firmware: string, timeMs: number): Buffer;
  rejection(payload: Uint8Array): WireRejection;
  command(payload: Uint8Array): WireCommand;
}

let shared: Codec | undefined;

/** The thread's codec (the .proto files are parsed on first use). */
export function codec(): Codec {
  if (shared) return shared;
  const schemas = loadSchemas(BUILTIN_SCHEMAS);
  const Telemetry = schemas.type('telemetry.v1.Telemetry');
  const DeviceStatus = schemas.type('telemetry.v1.DeviceStatus');
  const Rejection = schemas.type('telemetry.v1.Rejection');
  const Command = schemas.type('telemetry.v1.Command');
  const toObject = (type: protobuf.Type, payload: Uint8Array) =>
    type.toObject(type.decode(payload), { longs: Number, defaults: true }) as Record<string, unknown>;
  shared = {
    telemetry: (deviceId, seq, samples) =>
      Buffer.from(Telemetry.encode({ device_id: deviceId, seq, samples }).finish()),
    status: (state, firmware, timeMs) =>
      Buffer.from(DeviceStatus.encode({ state, firmware, time_unix_ms: timeMs }).finish()),
    rejection(payload) {
      const o = toObject(Rejection, payload);
      return {
        seq: Number(o['seq'] ?? 0),
        reason: String(o['reason'] ?? ''),
        detail: String(o['detail'] ?? ''),
      };
    },
    command(payload) {
      const o = toObject(Command, payload);
      return {
        id: String(o['id'] ?? ''),
        name: String(o['name'] ?? ''),
        args: (o['args'] ?? {}) as Record<string, string>,
      };
    },
  };
  return shared;
}
