/**
 * Room: schemas. The schema registry: every `.proto` file of `src/schemas/` (and of BRIDGE_SCHEMA_DIR) loaded with
 * protobufjs, and the topic filter → message type mappings of the configuration. A user adds a schema
 * by dropping a `.proto` file there and a mapping line in config; no code.
 *
 * What the bridge does with a mapped message depends on the type's shape, not its name:
 * - `telemetry`: a `string device_id` and `repeated <message with map<string,double> values> samples`
 *   (like telemetry.v1.Telemetry): every check of contract §3, then storage and the live channel;
 * - `status`: an enum `state` with ONLINE/OFFLINE, `string firmware`, `int64 time_unix_ms`: stored as
 *   `device_status` and streamed;
 * - `opaque`: any other type: size and decode checks, then relayed as a plain broker would.
 * The device id of a topic is the level under the filter's first `+` (`devices/+/telemetry`).
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import protobuf from 'protobufjs';
import type { SchemaMapping } from '../config.js';
import { ERROR_CODES, TelebridgeError } from '../errors.js';
import { builtinSchemaDir } from '../paths.js';
import { topicMatches } from '../topics.js';

export type SchemaKind = 'telemetry' | 'status' | 'opaque';

export interface ResolvedMapping extends SchemaMapping {
  readonly messageType: protobuf.Type;
  readonly kind: SchemaKind;
}

export interface SchemaRegistry {
  /** A loaded message type by its full name, e.g. `telemetry.v1.Rejection`. */
  type(name: string): protobuf.Type;
  /** The first mapping whose filter matches the topic, in configuration order. */
  match(topic: string): ResolvedMapping | undefined;
  readonly mappings: readonly ResolvedMapping[];
}

/**
 * Loads the `.proto` files and resolves the mappings.
 * @throws TelebridgeError(E_SCHEMA) naming the file or the mapping that does not resolve.
 */
export function loadSchemas(mappings: readonly SchemaMapping[], extraDir?: string): SchemaRegistry {
  const root = new protobuf.Root();
  for (const dir of [builtinSchemaDir(), ...(extraDir ? [extraDir] : [])]) {
    let files: string[];
    try {
      files = readdirSync(dir).filter((f) => f.endsWith('.proto'));
    } catch (err) {
      throw new TelebridgeError(ERROR_CODES.schema, `schema directory ${dir}: ${(err as Error).message}`);
    }
    for (const file of files.sort()) {
      try {
        root.loadSync(join(dir, file), { keepCase: true });
      } catch (err) {
        throw new TelebridgeError(ERROR_CODES.schema, `${join(dir, file)}: ${(err as Error).message}`);
      }
    }
  }
  root.resolveAll();
  const type = (name: string): protobuf.Type => {
    const found = root.lookup(name);
    if (!(found instanceof protobuf.Type)) {
      throw new TelebridgeError(
        ERROR_CODES.schema,
        `message type '${name}' is not defined in any .proto file`,
      );
    }
    return found;
  };
  const resolved = mappings.map((m) => {
    const messageType = type(m.type);
    return Object.freeze({ ...m, messageType, kind: kindOf(messageType) });
  });
  return {
    type,
    mappings: resolved,
    match: (topic) => resolved.find((m) => topicMatches(m.filter, topic)),
  };
}

function kindOf(type: protobuf.Type): SchemaKind {
  const deviceId = type.fields['device_id'];
  const samples = type.fields['samples'];
  if (deviceId?.type === 'string' && samples?.repeated && samples.resolvedType instanceof protobuf.Type) {
    const values = samples.resolvedType.fields['values'];
    if (values instanceof protobuf.MapField && values.keyType === 'string' && values.type === 'double') {
      return 'telemetry';
    }
  }
  const state = type.fields['state'];
  if (
    state?.resolvedType instanceof protobuf.Enum &&
    'ONLINE' in state.resolvedType.values &&
    'OFFLINE' in state.resolvedType.values &&
    type.fields['firmware']?.type === 'string' &&
    type.fields['time_unix_ms']
  ) {
    return 'status';
  }
  return 'opaque';
}
