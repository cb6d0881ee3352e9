/**
 * Room: bridge/storage. Reading / StatusChange → InfluxDB line protocol (contract §4), encoded once per accepted message.
 *
 * - `telemetry`: one point per sample; tags `device_id` + the sample's labels (tag keys sorted, as
 *   InfluxDB recommends for write performance); one float field per value; timestamp in ms (the
 *   writer sends `precision=ms`).
 * - `device_status`: tag `device_id`; fields `online` (boolean) and `firmware` (string).
 *
 * Decisions (docs/decisions.md):
 * - A label named `device_id` is dropped: the device id comes from the authenticated topic and a label
 *   must not be able to move a sample into another device's series.
 * - A label with an empty value is dropped (line protocol has no empty tag values; an absent tag
 *   reads back the same in InfluxQL and Flux).
 * - Line protocol has no escape for line breaks, so CR and LF in label values and in `firmware` become
 *   spaces: one point can never turn into two lines.
 * - Backslashes: InfluxDB 1.x and 2.x/VictoriaMetrics parse a backslash before a backslash
 *   differently, so a backslash that would be ambiguous (before `\`, `,`, `=`, space, or at the end of
 *   a tag value) is written as `/`. Any other backslash is kept literally, which both read back as is.
 */
import type { Reading, StatusChange } from '../reading.js';

/** Measurement of samples. */
export const TELEMETRY_MEASUREMENT = 'telemetry';
/** Measurement of status changes. */
export const STATUS_MEASUREMENT = 'device_status';

const LINE_BREAKS = /[\r\n]/g;
// A backslash followed by one of these (or by the end) is read differently by 1.x and 2.x parsers.
const AMBIGUOUS_BACKSLASH = /\\(?=[\\,= ]|$)/g;
const TAG_SPECIALS = /[,= ]/g;

// Fast paths: most names and values need no escaping, and testing is far cheaper than three replaces.
const TAG_NEEDS_ESCAPE = /[\r\n\\,= ]/;
const MEASUREMENT_NEEDS_ESCAPE = /[\r\n\\, ]/;
const STRING_NEEDS_ESCAPE = /[\r\n"\\]/;

/** Escapes a tag key or tag value (also used for field keys, which share the rules). */
export function escapeTag(text: string): string {
  if (!TAG_NEEDS_ESCAPE.test(text)) return text;
  return text
    .replace(LINE_BREAKS, ' ')
    .replace(AMBIGUOUS_BACKSLASH, '/')
    .replace(TAG_SPECIALS, (c) => `\\${c}`);
}

/** Escapes a measurement name: commas and spaces. */
export function escapeMeasurement(text: string): string {
  if (!MEASUREMENT_NEEDS_ESCAPE.test(text)) return text;
  return text
    .replace(LINE_BREAKS, ' ')
    .replace(AMBIGUOUS_BACKSLASH, '/')
    .replace(/[, ]/g, (c) => `\\${c}`);
}

/** A quoted string field value: `"` and `\` escaped, line breaks turned into spaces. */
export function quoteString(text: string): string {
  if (!STRING_NEEDS_ESCAPE.test(text)) return `"${text}"`;
  return `"${text.replace(LINE_BREAKS, ' ').replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

/** A float field value. Non-finite numbers cannot be stored (validation rejects them earlier). */
function formatFloat(value: number): string {
  if (!Number.isFinite(value)) throw new RangeError(`not a finite number: ${value}`);
  // String() gives the shortest round-trip form; `1e+21` is valid line protocol for a float.
  return String(value);
}

/** `,key=value` for each label but `device_id` and empty values, keys sorted. */
function labelTags(labels: Readonly<Record<string, string>>): string {
  const keys = Object.keys(labels);
  if (keys.length === 0) return '';
  if (keys.length > 1) keys.sort();
  let out = '';
  for (const key of keys) {
    const value = labels[key] as string;
    if (key === 'device_id' || value === '') continue;
    out += `,${escapeTag(key)}=${escapeTag(value)}`;
  }
  return out;
}

/**
 * One line per sample of the reading; a sample without values yields no line (validation requires at
 * least one, so this is only a guard against writing an invalid line).
 * @example readingToLines(r) // ['telemetry,device_id=d1,room=lab temperature_c=21.5 1764115200000']
 */
export function readingToLines(reading: Reading): string[] {
  const lines: string[] = [];
  // Built with plain concatenation and no intermediate arrays: this runs once per accepted sample.
  const head = `${TELEMETRY_MEASUREMENT},device_id=${escapeTag(reading.deviceId)}`;
  for (const sample of reading.samples) {
    const values = sample.values;
    const names = Object.keys(values);
    if (names.length === 0) continue;
    if (names.length > 1) names.sort();
    let fields = '';
    for (let i = 0; i < names.length; i++) {
      const name = names[i] as string;
      fields += `${i === 0 ? '' : ','}${escapeTag(name)}=${formatFloat(values[name] as number)}`;
    }
    lines.push(`${head}${labelTags(sample.labels)} ${fields} ${Math.trunc(sample.time)}`);
  }
  return lines;
}

/**
 * The status change as one `device_status` point; `online` is true only for the ONLINE state.
 * @example statusToLine(s) // 'device_status,device_id=d1 online=true,firmware="1.2.0" 1764115200000'
 */
export function statusToLine(status: StatusChange): string {
  const online = status.state === 'online' ? 'true' : 'false';
  return `${STATUS_MEASUREMENT},device_id=${escapeTag(status.deviceId)} online=${online},firmware=${quoteString(status.firmware)} ${Math.trunc(status.time)}`;
}
