/**
 * Topic rights (contract §3). Device `D` may publish `devices/D/telemetry` and `devices/D/status`
 * and subscribe to `devices/D/commands` and `devices/D/errors`; a service user is confined to the
 * filters it was created with; with authentication off (`identity` undefined) everything is allowed.
 */
import { filterCovers, topicMatches } from '../topics.js';
import type { Identity } from './registry.js';

export function canPublish(identity: Identity | undefined, topic: string): boolean {
  if (!identity) return true;
  if (identity.kind === 'device') {
    return topic === `devices/${identity.id}/telemetry` || topic === `devices/${identity.id}/status`;
  }
  return identity.publish.some((filter) => topicMatches(filter, topic));
}

export function canSubscribe(identity: Identity | undefined, filter: string): boolean {
  if (!identity) return true;
  if (identity.kind === 'device') {
    return filter === `devices/${identity.id}/commands` || filter === `devices/${identity.id}/errors`;
  }
  return identity.subscribe.some((allowed) => filterCovers(allowed, filter));
}
