/**
 * Room: broker. `$` topics (MQTT 3.1.1 §4.7.2). Clients may publish and subscribe to them like any other topic,
 * except that a filter starting with a wildcard never matches them [MQTT-4.7.2-1] (Aedes and
 * src/topics.ts see to that). Two first levels belong to the broker:
 * - `$SYS`: Aedes's heartbeats and client notices, which Aedes in cluster mode acts on (a client
 *   connected to another instance is closed on `$SYS/<id>/new/clients`). Clients may read it; a
 *   client's PUBLISH there is acknowledged and dropped, as Mosquitto does.
 * - `$telebridge`: where rejected messages go after their PUBACK (`DISCARD_TOPIC`). A PUBLISH there
 *   is acknowledged and dropped too, and a SUBSCRIBE gets 0x80.
 */

/** Where rejected messages go after their PUBACK: a topic no client can receive. */
export const DISCARD_TOPIC = '$telebridge/discarded';

function firstLevel(topic: string): string {
  const slash = topic.indexOf('/');
  return slash < 0 ? topic : topic.slice(0, slash);
}

/** True for a topic only the broker publishes to: a client's PUBLISH there is acknowledged and dropped. */
export function isBrokerTopic(topic: string): boolean {
  if (topic.charCodeAt(0) !== 36) return false; // '$'
  const level = firstLevel(topic);
  return level === '$SYS' || level === '$telebridge';
}

/** True for a filter no client may subscribe to (SUBACK 0x80). */
export function isHiddenFilter(filter: string): boolean {
  return firstLevel(filter) === '$telebridge';
}
