import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, type ConnectionOptions, type NatsConnection } from '@nats-io/transport-node';
import { loginOptions } from '../../actors/bus/index.ts';
import type { Credentials, Principal, Role } from '../../protocol/index.ts';
import { authUsers, issuePrincipal, writeCredentials } from '../../sites/auth/index.ts';
import { reloadNatsServer, startNatsServer as launch, writeAuthConfig, type NatsServerHandle } from '../../sites/nats-server.ts';

export interface TestNats extends NatsServerHandle {
  dir: string;
  port: number;
  /**
   * A credential of `role` (named `name`, default the role) on `site`: issued on first use, the
   * server reloaded, and ready once a connection with it gets in. The same one after that.
   */
  creds(site: string, role: Role, name?: string): Promise<Credentials>;
  /** The same, written to a file (for actors and CLI commands started as processes). */
  credsFile(site: string, role: Role, name?: string): Promise<string>;
  /** A test connection as that principal, riding out server restarts like the actors'. */
  connectAs(site: string, role: Role, name?: string, o?: Partial<ConnectionOptions>): Promise<NatsConnection>;
}

export { loginOptions };

/**
 * A real nats-server with JetStream on 127.0.0.1, a random port and a fresh temporary directory;
 * or, to restart one, the port and directory it had (the directory is then left in place, with
 * the credentials issued so far). Like a farm's, it lets in only the credentials it issued.
 */
export async function startNatsServer(o: { dir?: string; port?: number } = {}): Promise<TestNats> {
  const dir = o.dir ?? (await mkdtemp(join(tmpdir(), 'rb-nats-')));
  const h = await launch({ dir, host: '127.0.0.1', port: o.port ?? -1, auth: { users: await authUsers(dir) } });
  const issued = new Map<string, Promise<Credentials>>();
  // one issue (and server reload) at a time: fifty at once made the server reload fifty times over
  let queue: Promise<unknown> = Promise.resolve();
  const files = new Map<string, Promise<string>>();
  const url = h.url;
  const creds = (site: string, role: Role, name: string = role): Promise<Credentials> => {
    const key = `${site}/${role}/${name}`;
    let c = issued.get(key);
    if (!c) {
      c = queue.then(async () => {
        const p: Principal = { role, name };
        const made = await issuePrincipal(dir, site, p, { url });
        await writeAuthConfig(dir, await authUsers(dir));
        reloadNatsServer(h.pid);
        // the reload is asynchronous: ready once the new key gets in
        for (let i = 0; ; i++) {
          const nc = await connect({ servers: url, ...loginOptions(made), maxReconnectAttempts: 0, timeout: 1_000 }).catch(() => null);
          if (nc) {
            await nc.close();
            return made;
          }
          if (i > 200) throw new Error(`nats-server did not take the credential of ${role} ${name}`);
          await sleep(20);
        }
      });
      queue = c.catch(() => {});
      issued.set(key, c);
    }
    return c;
  };
  const credsFile = (site: string, role: Role, name: string = role): Promise<string> => {
    const key = `${site}/${role}/${name}`;
    let f = files.get(key);
    if (!f) {
      f = creds(site, role, name).then(async (c) => {
        const path = join(dir, 'creds', `${site}-${role}-${name === '*' ? 'any' : name}.creds`);
        await writeCredentials(path, c);
        return path;
      });
      files.set(key, f);
    }
    return f;
  };
  return {
    ...h,
    dir,
    port: Number(new URL(url).port),
    creds,
    credsFile,
    connectAs: async (site, role, name, co = {}) =>
      connect({ servers: url, ...loginOptions(await creds(site, role, name)), maxReconnectAttempts: -1, reconnectTimeWait: 250, ...co }),
    stop: async () => {
      await h.stop();
      if (!o.dir) await rm(dir, { recursive: true, force: true });
    },
  };
}
