import type { NatsConnection } from '@nats-io/transport-node';
import { connectBus } from '../../actors/bus/index.ts';
import type { Credentials, Principal, Role } from '../../protocol/index.ts';
import { keyOf, localCredsPath, natsDir, prepareSiteAuth } from '../../sites/auth/index.ts';
import { startNatsServer, type NatsServerHandle } from '../../sites/nats-server.ts';

/**
 * A benchmark's nats-server, authenticated like a farm's (sites/site.ts): it lets in only the
 * principals it was started with, each with a credential kept in `<dir>/auth/local/`, so the
 * benchmark pays for the permission checks a real farm pays for.
 */
export interface BenchNats extends NatsServerHandle {
  /** The credential of one of its principals (`name` defaults to the role). */
  creds(role: Role, name?: string): Credentials;
  /** Its file, for `renderbus <actor> --creds`. */
  credsFile(role: Role, name?: string): string;
  /** A connection as one of its principals. */
  connectAs(role: Role, name?: string, connName?: string): Promise<NatsConnection>;
}

/** Issues a credential for each principal under `dir` (the data directory), then starts the server in `dir/nats`. */
export async function startBenchNats(dir: string, site: string, principals: Principal[], o: { monitor?: boolean } = {}): Promise<BenchNats> {
  const auth = await prepareSiteAuth(dir, site, principals);
  const nats = await startNatsServer({ dir: natsDir(dir), port: -1, auth: { users: auth.users }, ...(o.monitor ? { monitor: true } : {}) });
  const creds = (role: Role, name: string = role): Credentials => {
    const c = auth.creds.get(keyOf({ role, name }));
    if (!c) throw new Error(`the benchmark's nats-server was not started with a credential for ${role} ${name}`);
    return c;
  };
  return {
    ...nats,
    creds,
    credsFile: (role, name = role) => {
      creds(role, name); // one it was started with
      return localCredsPath(dir, { role, name });
    },
    connectAs: (role, name = role, connName = `bench-${role}`) => connectBus({ servers: nats.url, name: connName, creds: creds(role, name) }),
  };
}
