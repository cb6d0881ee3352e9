/**
 * Room: bridge. Decode and check one mapped MQTT payload (contract §3), in the contract's order: size, decode,
 * device id, sample count, value and label counts, names, label values, finite values, time.
 * The first failing check names the rejection reason.
 */
import type { RejectReason } from '../errors.js';
import type { ResolvedMapping } from '../schemas/registry.js';
import { wildcardLevel } from '../topics.js';
import type { DeviceState, Reading, Sample, StatusChange } from './reading.js';

export const LIMITS = {
  maxSamples: 1000,
  maxValues: 200,
  maxLabels: 32,
  maxLabelValueBytes: 256,
  /** How far in the past a sample may be, ms (30 days). */
  maxAgeMs: 30 * 24 * 3600 * 1000,
  /** How far in the future, ms (5 minutes). */
  maxAheadMs: 5 * 60 * 1000,
} as const;

export const NAME_RE = /^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/;

export type Validation =
  | { readonly ok: true; readonly kind: 'telemetry'; readonly reading: Reading }
  | { readonly ok: true; readonly kind: 'status'; readonly status: StatusChange }
  | { readonly ok: true; readonly kind: 'opaque' }
  | Rejected;

export interface Rejected {
  readonly ok: false;
  readonly reason: RejectReason;
  readonly detail: string;
  /** The message's `seq` when it could be read, else 0. */
  readonly seq: number;
  /** Samples in the message when it could be read, else 0 (for the loss ledger). */
  readonly samples: number;
}

interface LongLike {
  toNumber(): number;
}

type Int64 = number | LongLike;

interface DecodedSample {
  time_unix_ms?: Int64;
  values?: Record<string, number>;
  labels?: Record<string, string>;
}

interface DecodedTelemetry {
  device_id?: string;
  seq?: Int64;
  samples?: DecodedSample[];
}

interface DecodedStatus {
  state?: number;
  firmware?: string;
  time_unix_ms?: Int64;
}

function toNumber(value: Int64 | undefined): number {
  if (value === undefined) return 0;
  return typeof value === 'number' ? value : value.toNumber();
}

function reject(reason: RejectReason, detail: string, seq = 0, samples = 0): Rejected {
  return { ok: false, reason, detail, seq, samples };
}

/**
 * @param now receive time, Unix ms (a sample time of 0 becomes this).
 * @example validate(mapping, 'devices/d1/telemetry', payload, 16384, Date.now())
 */
export function validate(
  mapping: ResolvedMapping,
  topic: string,
  payload: Buffer,
  maxPayloadBytes: number,
  now: number,
): Validation {
  if (payload.length > maxPayloadBytes) {
    return reject('too_large', `payload is ${payload.length} bytes; the limit is ${maxPayloadBytes}`);
  }
  let decoded: unknown;
  try {
    decoded = mapping.messageType.decode(payload);
  } catch (err) {
    return reject('decode_error', `not a valid ${mapping.type}: ${(err as Error).message}`);
  }
  const deviceId = wildcardLevel(mapping.filter, topic) ?? '';
  switch (mapping.kind) {
    case 'telemetry':
      return checkTelemetry(decoded as DecodedTelemetry, deviceId, now);
    case 'status':
      return checkStatus(decoded as DecodedStatus, deviceId, now);
    default:
      return { ok: true, kind: 'opaque' };
  }
}

function checkTelemetry(message: DecodedTelemetry, deviceId: string, now: number): Validation {
  const seq = toNumber(message.seq);
  const raw = message.samples ?? [];
  const n = raw.length;
  if ((message.device_id ?? '') !== deviceId) {
    return reject(
      'device_mismatch',
      `device_id '${message.device_id ?? ''}' is not the topic's '${deviceId}'`,
      seq,
      n,
    );
  }
  if (n < 1 || n > LIMITS.maxSamples) {
    return reject('too_many_samples', `${n} samples; 1 to ${LIMITS.maxSamples} allowed`, seq, n);
  }
  const samples: Sample[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const s = raw[i]!;
    const values = s.values ?? {};
    const labels = s.labels ?? {};
    const valueNames = Object.keys(values);
    const labelNames = Object.keys(labels);
    if (valueNames.length < 1 || valueNames.length > LIMITS.maxValues) {
      return reject(
        'too_many_values',
        `sample ${i}: ${valueNames.length} values; 1 to ${LIMITS.maxValues} allowed`,
        seq,
        n,
      );
    }
    if (labelNames.length > LIMITS.maxLabels) {
      return reject(
        'too_many_labels',
        `sample ${i}: ${labelNames.length} labels; at most ${LIMITS.maxLabels}`,
        seq,
        n,
      );
    }
    for (const name of valueNames) {
      if (!NAME_RE.test(name))
        return reject('bad_name', `sample ${i}: value name ${JSON.stringify(name)}`, seq, n);
    }
    for (const name of labelNames) {
      if (!NAME_RE.test(name))
        return reject('bad_name', `sample ${i}: label name ${JSON.stringify(name)}`, seq, n);
      if (Buffer.byteLength(labels[name]!, 'utf8') > LIMITS.maxLabelValueBytes) {
        return reject(
          'bad_value',
          `sample ${i}: label ${name} is over ${LIMITS.maxLabelValueBytes} bytes`,
          seq,
          n,
        );
      }
    }
    for (const name of valueNames) {
      if (!Number.isFinite(values[name])) {
        return reject(
          'bad_value',
          `sample ${i}: value ${name} is ${values[name]}; values must be finite`,
          seq,
          n,
        );
      }
    }
    const time = toNumber(s.time_unix_ms) || now;
    if (time < now - LIMITS.maxAgeMs || time > now + LIMITS.maxAheadMs) {
      return reject(
        'bad_time',
        `sample ${i}: time ${time} is outside [now - 30 days, now + 5 minutes]`,
        seq,
        n,
      );
    }
    samples[i] = { time, values, labels };
  }
  return { ok: true, kind: 'telemetry', reading: { deviceId, seq, samples, receivedAt: now } };
}

const STATES: Record<number, DeviceState> = { 0: 'unspecified', 1: 'online', 2: 'offline' };

function checkStatus(message: DecodedStatus, deviceId: string, now: number): Validation {
  const time = toNumber(message.time_unix_ms) || now;
  if (time < now - LIMITS.maxAgeMs || time > now + LIMITS.maxAheadMs) {
    return reject('bad_time', `status time ${time} is outside [now - 30 days, now + 5 minutes]`);
  }
  const state = STATES[message.state ?? 0] ?? 'unspecified';
  return { ok: true, kind: 'status', status: { deviceId, state, firmware: message.firmware ?? '', time } };
}
