/**
 * Fault injection: payloads that good firmware never sends, each producing one rejection reason of
 * contract §3. Every flag is a probability per produced sample (0..1).
 *
 * Decision (seq): a faulty message is sent IN ADDITION to the normal stream, never instead of a real
 * sample, and carries a seq from a separate space starting at FAULT_SEQ_BASE (2^52). The normal stream
 * stays 1, 2, 3, … with no gap, so storage checks see every real sample, and a Rejection whose seq is
 * below FAULT_SEQ_BASE is a real problem (counted as `unexpectedRejections`). Burst messages are valid;
 * their samples carry the label `fault=burst` and no `counter`, so, if stored, they land in their own
 * series and never disturb the counter/seq checks of the real stream.
 */
import type { WireSample } from './codec.js';

/** Seqs of injected faulty messages start here (2^52, still an exact double). */
export const FAULT_SEQ_BASE = 2 ** 52;

export type FaultKind = 'malformed' | 'oversize' | 'wrongDevice' | 'clockSkew' | 'nan' | 'burst';

export const FAULT_KINDS: readonly FaultKind[] = [
  'malformed',
  'oversize',
  'wrongDevice',
  'clockSkew',
  'nan',
  'burst',
];

/** The rejection reason (contract §3) each fault must produce. */
export const EXPECTED_REASON: Readonly<Record<FaultKind, string>> = {
  malformed: 'decode_error',
  oversize: 'too_large',
  wrongDevice: 'device_mismatch',
  clockSkew: 'bad_time',
  nan: 'bad_value',
  burst: 'rate_limited', // sent at QoS 0, and only when the burst exceeds the device's rate limit
};

export interface FaultOptions {
  /** Probability per sample of each fault, 0..1. Missing = 0. */
  readonly rates?: Partial<Record<FaultKind, number>>;
  /** Bytes of an oversize payload; must exceed BRIDGE_MAX_PAYLOAD_BYTES and stay under
   *  BRIDGE_MAX_PACKET_BYTES (or the bridge closes the connection instead). Default 20 480. */
  readonly oversizeBytes?: number;
  /** Clock skew of a skewed sample, ms; the contract accepts up to +5 min. Default +1 h. */
  readonly skewMs?: number;
  /** Messages in one burst. Default 50. */
  readonly burstSize?: number;
}

/** A message to publish on the device's own telemetry topic, outside the normal seq stream. */
export interface FaultMessage {
  readonly kind: FaultKind;
  readonly seq: number;
  readonly payload: Buffer;
}

type Encode = (deviceId: string, seq: number, samples: readonly WireSample[]) => Buffer;

/**
 * Builds the faulty message(s) of `kind` from a real sample (copied, never mutated).
 * `nextSeq` hands out seqs of the fault space.
 */
export function buildFault(
  kind: FaultKind,
  deviceId: string,
  sample: WireSample,
  nextSeq: () => number,
  encode: Encode,
  options: FaultOptions = {},
): FaultMessage[] {
  const { counter: _counter, ...values } = sample.values;
  const base: WireSample = {
    time_unix_ms: sample.time_unix_ms,
    values,
    labels: { ...sample.labels, fault: kind },
  };
  switch (kind) {
    case 'malformed': {
      // Field 1 (device_id, length-delimited) announcing 100 bytes and carrying 3: protobuf decoders
      // must fail ("index out of range") — unlike random bytes, which sometimes decode.
      const seq = nextSeq();
      return [{ kind, seq, payload: Buffer.from([0x0a, 100, 0x61, 0x62, 0x63]) }];
    }
    case 'oversize': {
      const target = options.oversizeBytes ?? 20_480;
      const pad = 'x'.repeat(200);
      const samples: WireSample[] = [];
      const seq = nextSeq();
      let payload = encode(deviceId, seq, samples);
      // A valid message apart from its size, so only the size check can refuse it.
      while (payload.length <= target) {
        for (let i = 0; i < 16; i++) {
          samples.push({
            ...base,
            time_unix_ms: base.time_unix_ms + samples.length,
            labels: { fault: kind, pad },
          });
        }
        payload = encode(deviceId, seq, samples);
      }
      return [{ kind, seq, payload }];
    }
    case 'wrongDevice': {
      const seq = nextSeq();
      return [{ kind, seq, payload: encode(`${deviceId}-impostor`, seq, [base]) }];
    }
    case 'clockSkew': {
      const seq = nextSeq();
      const skewed = { ...base, time_unix_ms: Date.now() + (options.skewMs ?? 3_600_000) };
      return [{ kind, seq, payload: encode(deviceId, seq, [skewed]) }];
    }
    case 'nan': {
      const seq = nextSeq();
      return [
        {
          kind,
          seq,
          payload: encode(deviceId, seq, [{ ...base, values: { ...values, temperature_c: Number.NaN } }]),
        },
      ];
    }
    case 'burst': {
      const n = options.burstSize ?? 50;
      const out: FaultMessage[] = [];
      for (let i = 0; i < n; i++) {
        const seq = nextSeq();
        out.push({
          kind,
          seq,
          payload: encode(deviceId, seq, [{ ...base, time_unix_ms: base.time_unix_ms + i }]),
        });
      }
      return out;
    }
  }
}
