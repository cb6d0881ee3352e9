/**
 * Room: auth. Rights of anonymous clients (BRIDGE_AUTH=off) from a file in Mosquitto's `acl_file` syntax
 * (BRIDGE_ACL_FILE), so that a bridge without credentials is not necessarily open to everything.
 *
 *     # comment
 *     topic [read|write|readwrite|deny] <filter>
 *
 * The access word is optional (readwrite); a filter may contain spaces, and then the access word is
 * required, as in Mosquitto. `user` and `pattern` lines are refused: with BRIDGE_AUTH=off every
 * client is anonymous (named clients get rights with `telebridge users add`).
 *
 * Semantics (docs/security.md): once a file is set, what it does not grant is refused; a `deny` rule
 * wins over any grant; a filter starting with a wildcard never matches a `$` topic [MQTT-4.7.2-1].
 * - PUBLISH to topic T: allowed if a write/readwrite rule matches T and no deny rule does.
 * - SUBSCRIBE to filter F: granted if a read/readwrite rule covers F (every topic F can match) and
 *   no deny rule does; else SUBACK 0x80.
 * - Delivery of topic T to a subscriber: only if reading T is allowed, so a deny rule inside a
 *   granted wildcard (`deny a/secret` under `read a/#`) still holds. Mosquitto 2.0 grants every
 *   SUBSCRIBE and applies only this delivery check; refusing up front is what lets a client know.
 */
import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors.js';
import { filterCovers, isValidFilter, topicMatches } from '../topics.js';

export type AclAccess = 'read' | 'write' | 'readwrite' | 'deny';

export interface AclRule {
  readonly access: AclAccess;
  readonly filter: string;
  /** 1-based line in the file, for messages. */
  readonly line: number;
}

const ACCESS = new Set<string>(['read', 'write', 'readwrite', 'deny']);

/**
 * Parses the text of an ACL file.
 * @throws ConfigError naming the file and the line of the first bad line.
 */
export function parseAclFile(text: string, path: string): AclRule[] {
  const rules: AclRule[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    const fail = (why: string): never => {
      throw new ConfigError(
        `invalid configuration: BRIDGE_ACL_FILE=${JSON.stringify(path)}: line ${i + 1}: ${why}`,
      );
    };
    const [keyword = '', ...rest] = line.split(/\s+/);
    if (keyword === 'user' || keyword === 'pattern') {
      fail(
        `'${keyword}' lines are not supported: with BRIDGE_AUTH=off every client is anonymous and only 'topic' lines apply`,
      );
    }
    if (keyword !== 'topic')
      fail(`expected "topic [read|write|readwrite|deny] <filter>", got ${JSON.stringify(line)}`);
    if (rest.length === 0) fail('a topic line needs a filter');
    let access: AclAccess = 'readwrite';
    let filter: string;
    if (rest.length === 1) {
      filter = rest[0]!;
    } else {
      if (!ACCESS.has(rest[0]!)) {
        fail(`unknown access ${JSON.stringify(rest[0])}: expected read, write, readwrite or deny`);
      }
      access = rest[0] as AclAccess;
      // The filter is the rest of the line as written (it may hold spaces, as in Mosquitto).
      filter = line.slice(line.indexOf(rest[0]!, keyword.length) + rest[0]!.length).trim();
    }
    if (!isValidFilter(filter)) fail(`${JSON.stringify(filter)} is not a valid MQTT topic filter`);
    rules.push({ access, filter, line: i + 1 });
  }
  return rules;
}

/**
 * Reads and parses an ACL file.
 * @throws ConfigError when the file cannot be read or a line is bad.
 */
export function readAclFile(path: string): AclRule[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(
      `invalid configuration: BRIDGE_ACL_FILE=${JSON.stringify(path)}: ${(err as Error).message}`,
    );
  }
  return parseAclFile(text, path);
}

/** The decisions of one rule set (see the module comment). */
export class Acl {
  private readonly deny: readonly string[];
  private readonly read: readonly string[];
  private readonly write: readonly string[];

  constructor(rules: readonly AclRule[]) {
    const of = (...kinds: AclAccess[]) => rules.filter((r) => kinds.includes(r.access)).map((r) => r.filter);
    this.deny = of('deny');
    this.read = of('read', 'readwrite');
    this.write = of('write', 'readwrite');
  }

  canPublish(topic: string): boolean {
    return !this.deny.some((f) => topicMatches(f, topic)) && this.write.some((f) => topicMatches(f, topic));
  }

  canSubscribe(filter: string): boolean {
    return !this.deny.some((f) => filterCovers(f, filter)) && this.read.some((f) => filterCovers(f, filter));
  }

  canRead(topic: string): boolean {
    return !this.deny.some((f) => topicMatches(f, topic)) && this.read.some((f) => topicMatches(f, topic));
  }
}
