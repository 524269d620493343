import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { loginOptions } from '../../actors/bus/index.ts';
import { Role, type Credentials, type Principal } from '../../protocol/index.ts';
import { authUsers, issuePrincipal, writeCredentials } from '../../sites/auth/index.ts';
import { startCluster, type ClusterHandle } from '../../sites/cluster.ts';

export interface TestCluster extends ClusterHandle {
  dir: string;
  site: string;
  /** A credential of `role` on the site: issued on first use, every member reloaded, ready once each lets it in. */
  creds(role: Role, name?: string): Promise<Credentials>;
  /** The same, written to a file (for processes). */
  credsFile(role: Role, name?: string): Promise<string>;
  /** A connection with every member's URL that rides out the loss of one, like the actors'. */
  connectAs(role: Role, name?: string): Promise<NatsConnection>;
}

/** A real three-member NATS cluster in a fresh temporary directory (sites/cluster.ts), for one site. */
export async function startTestCluster(site: string): Promise<TestCluster> {
  const dir = await mkdtemp(join(tmpdir(), 'rb-cluster-'));
  // the probe's credential is in auth.conf from the start
  const probe = await issuePrincipal(dir, site, { role: Role.Scheduler, name: 'probe' });
  const cluster = await startCluster({ dir: join(dir, 'nats'), size: 3, auth: { users: await authUsers(dir) }, probe }).catch(async (err: unknown) => {
    await rm(dir, { recursive: true, force: true });
    throw err;
  });
  const issued = new Map<string, Promise<Credentials>>();
  const files = new Map<string, Promise<string>>();
  let queue: Promise<unknown> = Promise.resolve();
  const creds = (role: Role, name: string = role): Promise<Credentials> => {
    const key = `${role}/${name}`;
    let c = issued.get(key);
    if (!c) {
      c = queue.then(async () => {
        const p: Principal = { role, name };
        const made = await issuePrincipal(dir, site, p, { url: cluster.servers.join(',') });
        await cluster.reloadAuth(await authUsers(dir));
        // each member reloads on its own: ready once every one lets the new key in
        for (const url of cluster.servers) {
          for (let i = 0; ; i++) {
            const nc = await connect({ servers: url, ...loginOptions(made), maxReconnectAttempts: 0, timeout: 1_000 }).catch(() => null);
            if (nc) {
              await nc.close();
              break;
            }
            if (i > 200) throw new Error(`${url} did not take the credential of ${role} ${name}`);
            await sleep(20);
          }
        }
        return made;
      });
      queue = c.catch(() => {});
      issued.set(key, c);
    }
    return c;
  };
  const credsFile = (role: Role, name: string = role): Promise<string> => {
    const key = `${role}/${name}`;
    let f = files.get(key);
    if (!f) {
      f = creds(role, name).then(async (c) => {
        const path = join(dir, 'creds', `${role}-${name}.creds`);
        await writeCredentials(path, c);
        return path;
      });
      files.set(key, f);
    }
    return f;
  };
  return {
    ...cluster,
    dir,
    site,
    creds,
    credsFile,
    connectAs: async (role, name) => connect({ servers: cluster.servers, ...loginOptions(await creds(role, name)), maxReconnectAttempts: -1, reconnectTimeWait: 250 }),
    stop: async () => {
      await cluster.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
