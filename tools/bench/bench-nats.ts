import type { NatsConnection } from '@nats-io/transport-node';
import { connectBus } from '../../actors/bus/index.ts';
import { Role, type Credentials, type Principal } from '../../protocol/index.ts';
import { keyOf, localCredsPath, natsDir, prepareSiteAuth } from '../../sites/auth/index.ts';
import { startNatsServer, type NatsServerHandle } from '../../sites/nats-server.ts';
import { startCluster, type ClusterHandle } from '../../sites/cluster.ts';

/**
 * A benchmark's nats-server, authenticated like a farm's (sites/site.ts): it lets in only the
 * principals it was started with, each with a credential kept in `<dir>/auth/local/`, so the
 * benchmark pays for the permission checks a real farm pays for.
 */
export interface BenchNats extends Pick<NatsServerHandle, 'url' | 'pid' | 'stop' | 'monitorUrl'> {
  /** Every server's URL: one, or each member of the cluster. */
  servers: string[];
  /** The cluster's members (null: one server). */
  cluster: ClusterHandle | null;
  /** The credential of one of its principals (`name` defaults to the role). */
  creds(role: Role, name?: string): Credentials;
  /** Its file, for `renderbus <actor> --creds`. */
  credsFile(role: Role, name?: string): string;
  /** A connection as one of its principals. */
  connectAs(role: Role, name?: string, connName?: string): Promise<NatsConnection>;
}

/**
 * Issues a credential for each principal under `dir` (the data directory), then starts the server
 * in `dir/nats`, or with `cluster: 3` a cluster of three there (a scheduler principal is needed: it asks for the meta leader).
 */
export async function startBenchNats(dir: string, site: string, principals: Principal[], o: { cluster?: number; monitor?: boolean } = {}): Promise<BenchNats> {
  const auth = await prepareSiteAuth(dir, site, principals);
  const cluster = (o.cluster ?? 1) > 1
    ? await startCluster({ dir: natsDir(dir), size: o.cluster!, auth: { users: auth.users }, probe: auth.creds.get(keyOf({ role: Role.Scheduler, name: Role.Scheduler }))! })
    : null;
  const nats = cluster ? { url: cluster.servers[0]!, pid: cluster.nodes()[0]!.pid, stop: cluster.stop } : await startNatsServer({ dir: natsDir(dir), port: -1, auth: { users: auth.users }, ...(o.monitor ? { monitor: true } : {}) });
  const servers = cluster?.servers ?? [nats.url];
  const creds = (role: Role, name: string = role): Credentials => {
    const c = auth.creds.get(keyOf({ role, name }));
    if (!c) throw new Error(`the benchmark's nats-server was not started with a credential for ${role} ${name}`);
    return c;
  };
  return {
    url: nats.url,
    pid: nats.pid,
    stop: nats.stop,
    ...('monitorUrl' in nats && nats.monitorUrl ? { monitorUrl: nats.monitorUrl } : {}),
    servers,
    cluster,
    creds,
    credsFile: (role, name = role) => {
      creds(role, name); // one it was started with
      return localCredsPath(dir, { role, name });
    },
    connectAs: (role, name = role, connName = `bench-${role}`) => connectBus({ servers, name: connName, creds: creds(role, name) }),
  };
}
