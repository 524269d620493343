import type { NatsConnection } from '@nats-io/transport-node';
import { replicasFor } from '../../protocol/index.ts';

/**
 * How many copies of a stream or KV bucket to ask of the server this connection is on (see
 * replicasFor): a server outside a cluster keeps one (it refuses more); a cluster member says
 * its cluster's name in INFO and lists every member's client URL in `connect_urls`. A server
 * that names a cluster but lists no URLs keeps one: a linked site's leaf server names its hub's
 * cluster (R3 there was refused, "replicas > 1 not supported in non-clustered mode", and the
 * vendor's scheduler never started); a cluster of our own advertises (server-config.ts).
 */
export function replicasOf(nc: NatsConnection): number {
  const info = nc.info;
  if (!info?.cluster) return 1;
  const members = new Set(info.connect_urls ?? []).size;
  return members > 0 ? replicasFor(members) : 1;
}
