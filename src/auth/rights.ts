/**
 * Room: auth. Topic rights (contract §3). Device `D` may publish `devices/D/telemetry` and `devices/D/status`
 * and subscribe to `devices/D/commands` and `devices/D/errors`; a service user is confined to the
 * filters it was created with; with authentication off (`identity` undefined) the anonymous ACL
 * decides (BRIDGE_ACL_FILE, acl-file.ts), and without one everything is allowed.
 */
import { filterCovers, topicMatches } from '../topics.js';
import type { Acl } from './acl-file.js';
import type { Identity } from './registry.js';

export function canPublish(identity: Identity | undefined, topic: string, anonymous?: Acl): boolean {
  if (!identity) return anonymous?.canPublish(topic) ?? true;
  if (identity.kind === 'device') {
    return topic === `devices/${identity.id}/telemetry` || topic === `devices/${identity.id}/status`;
  }
  return identity.publish.some((filter) => topicMatches(filter, topic));
}

export function canSubscribe(identity: Identity | undefined, filter: string, anonymous?: Acl): boolean {
  if (!identity) return anonymous?.canSubscribe(filter) ?? true;
  if (identity.kind === 'device') {
    return filter === `devices/${identity.id}/commands` || filter === `devices/${identity.id}/errors`;
  }
  return identity.subscribe.some((allowed) => filterCovers(allowed, filter));
}
