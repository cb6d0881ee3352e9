/**
 * Room: broker. MQTT 3.1.1 rules that Aedes 1.2 does not enforce, kept apart from policy.
 *
 * 1. UTF-8 strings (§1.5.3). mqtt-packet decodes strings with `Buffer#toString('utf8')`, which turns
 *    ill-formed bytes into U+FFFD, so after decoding nobody can tell a broken topic from a real
 *    U+FFFD. `Utf8FieldInspector` therefore looks at the raw bytes: the packet guard feeds it every
 *    body byte of CONNECT, PUBLISH, SUBSCRIBE and UNSUBSCRIBE, and it fails the connection on a
 *    string that is not well-formed UTF-8 or contains U+0000. It keeps at most one string's bytes
 *    (≤ 65,535, and never more than the packet's announced length) and lets bodies pass untouched.
 * 2. Overlapping subscriptions (§3.3.5). Aedes delivers a message once per client (its `dedupe`),
 *    through whichever matching subscription its router calls first, and caps the QoS at that of a
 *    subscription whose filter equals the topic. `deliveryQos` gives the one copy it delivers the
 *    highest QoS of all the client's matching subscriptions (never above the PUBLISH's); fanout.ts
 *    delivers at it.
 * 3. `$` topics (§4.7.2). Aedes's router keeps `$` topics from filters that start with a wildcard,
 *    but its retained store does not: `deliveryQos` refuses a retained `$` message that none of
 *    the client's filters matches under [MQTT-4.7.2-1].
 */
import { isUtf8 } from 'node:buffer';
import type { Client } from 'aedes';
import { ERROR_CODES, TelebridgeError } from '../errors.js';
import { topicMatches } from '../topics.js';
import { type DeliveredPacket, subscriptionsOf } from './aedes-internals.js';

export class MalformedStringError extends TelebridgeError {
  constructor(message: string) {
    super(ERROR_CODES.malformedUtf8, message);
  }
}

/** What the inspector does next with body bytes. */
type Step =
  | { readonly kind: 'string' } // 2-byte length, then that many bytes of UTF-8
  | { readonly kind: 'binary' } // 2-byte length, then that many bytes, not inspected
  | { readonly kind: 'skip'; readonly n: number }
  | { readonly kind: 'byte' }; // one byte, handed back to the program

const STRING: Step = { kind: 'string' };
const BINARY: Step = { kind: 'binary' };
const BYTE: Step = { kind: 'byte' };
const SKIP_1: Step = { kind: 'skip', n: 1 };
const SKIP_2: Step = { kind: 'skip', n: 2 };

type Program = Generator<Step, void, number>;

function* connectFields(): Program {
  yield STRING; // protocol name
  const level = yield BYTE;
  // Only 3.1 and 3.1.1 are parsed further; Aedes refuses other protocol levels itself.
  if (level !== 3 && level !== 4) return;
  const flags = yield BYTE;
  yield SKIP_2; // keep alive
  yield STRING; // [MQTT-3.1.3-4] client id
  if (flags & 0x04) {
    yield STRING; // will topic
    yield BINARY; // will message
  }
  if (flags & 0x80) yield STRING; // user name (the password is binary)
}

function* publishFields(): Program {
  yield STRING; // [MQTT-3.3.2-1] topic name
}

function* subscribeFields(): Program {
  yield SKIP_2; // packet identifier
  for (;;) {
    yield STRING; // topic filter
    yield SKIP_1; // requested QoS
  }
}

function* unsubscribeFields(): Program {
  yield SKIP_2;
  for (;;) yield STRING;
}

/** Packet type (high nibble of the first byte) → the fields to inspect. */
const PROGRAMS: Partial<Record<number, () => Program>> = {
  1: connectFields,
  3: publishFields,
  8: subscribeFields,
  10: unsubscribeFields,
};

/**
 * Incremental inspector of the UTF-8 strings of one connection's packets. `start` at each fixed
 * header, `body` for each piece of the body (any split), `end` when the body is complete. Each
 * returns an error once the connection must be closed.
 */
export class Utf8FieldInspector {
  private program: Program | undefined;
  private step: Step | undefined;
  /** Bytes of the current length prefix read so far (0..2), and its value. */
  private lengthBytes = 0;
  private length = 0;
  /** Bytes left in the current field (after its length prefix). */
  private left = 0;
  private parts: Uint8Array[] = [];

  start(firstByte: number): void {
    const make = PROGRAMS[firstByte >> 4];
    this.program = make?.();
    this.parts = [];
    this.advance(0);
  }

  body(chunk: Uint8Array): Error | undefined {
    let i = 0;
    while (i < chunk.length && this.step) {
      const step = this.step;
      if (step.kind === 'byte') {
        this.advance(chunk[i++]!);
        continue;
      }
      if (step.kind === 'skip' || this.lengthBytes === 2) {
        const take = Math.min(this.left, chunk.length - i);
        if (step.kind === 'string') this.parts.push(chunk.subarray(i, i + take));
        this.left -= take;
        i += take;
        if (this.left === 0) {
          const err = step.kind === 'string' ? this.check() : undefined;
          if (err) return err;
          this.advance(0);
        }
        continue;
      }
      // Reading the 2-byte big-endian length of a string or binary field.
      this.length = this.length * 256 + chunk[i++]!;
      if (++this.lengthBytes === 2) {
        this.left = this.length;
        if (this.left === 0) this.advance(0); // an empty string is valid UTF-8
      }
    }
    return undefined;
  }

  /** The body is complete: a field cut short is the MQTT parser's to refuse, not ours. */
  end(): void {
    this.program = undefined;
    this.step = undefined;
    this.parts = [];
  }

  private advance(input: number): void {
    const next = this.program?.next(input);
    this.step = next && !next.done ? next.value : undefined;
    if (!this.step) this.program = undefined;
    this.lengthBytes = 0;
    this.length = 0;
    this.left = this.step?.kind === 'skip' ? this.step.n : 0;
  }

  private check(): Error | undefined {
    const bytes = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts);
    this.parts = [];
    // [MQTT-1.5.3-1] ill-formed UTF-8, including encoded surrogates U+D800..U+DFFF, closes the connection.
    if (!isUtf8(bytes)) return new MalformedStringError('a string in the packet is not well-formed UTF-8');
    // [MQTT-1.5.3-2] a string must not contain U+0000.
    if (bytes.includes(0)) return new MalformedStringError('a string in the packet contains U+0000');
    return undefined;
  }
}

/** QoS granted at SUBSCRIBE, by subscription record: the `qos` field of an exact filter is raised below. */
const grantedQos = new WeakMap<{ qos: number }, number>();

function granted(sub: { qos: number }): number {
  let qos = grantedQos.get(sub);
  if (qos === undefined) {
    qos = sub.qos;
    grantedQos.set(sub, qos);
  }
  return qos;
}

/**
 * The QoS at which a client's one copy of `packet` goes out, or -1 when it must not go out.
 * [MQTT-3.3.5-1] the highest QoS of the client's matching subscriptions, never above the PUBLISH's;
 * [MQTT-4.7.2-1] none for a retained `$` message that Aedes's retained store matched against a
 * filter starting with a wildcard (its router already keeps live ones from such filters).
 *
 * A QoS 0 message goes out at QoS 0 whatever the subscriptions, so only a `$` one is matched against
 * them: the fan-out of QoS 0 telemetry costs no scan.
 */
export function deliveryQos(client: Client, packet: DeliveredPacket): number {
  const dollar = packet.topic.charCodeAt(0) === 36; // '$'
  if (packet.qos === 0 && !dollar) return 0;
  const subscriptions = subscriptionsOf(client);
  let max = -1;
  for (const filter in subscriptions) {
    const sub = subscriptions[filter]!;
    if (topicMatches(filter, packet.topic)) max = Math.max(max, granted(sub));
  }
  if (max < 0) {
    if (dollar) return -1;
    // Not through a subscription (Aedes's `client.publish`): as Aedes would.
    return packet.qos;
  }
  // Aedes caps the QoS at the subscription whose filter equals the topic: that cap must be the
  // maximum too. Its granted QoS is remembered in `grantedQos`.
  const exact = subscriptions[packet.topic];
  if (exact) exact.qos = max;
  return Math.min(packet.qos, max);
}
