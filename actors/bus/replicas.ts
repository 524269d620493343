import type { NatsConnection } from '@nats-io/transport-node';
import { MAX_REPLICAS, replicasFor } from '../../protocol/index.ts';

/**
 * How many copies of a stream or KV bucket to ask of the server this connection is on (see
 * replicasFor): a server outside a cluster keeps one (it refuses more); a cluster member says
 * its cluster's name in INFO and lists every member's client URL in `connect_urls`. A cluster
 * whose members do not advertise (`no_advertise`) lists none: it is taken to have three.
 */
export function replicasOf(nc: NatsConnection): number {
  const info = nc.info;
  if (!info?.cluster) return 1;
  const members = new Set(info.connect_urls ?? []).size;
  return members > 0 ? replicasFor(members) : MAX_REPLICAS;
}
