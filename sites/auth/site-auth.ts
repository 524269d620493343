import { chmod, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Role, type Credentials, type Principal } from '../../protocol/index.ts';
import { pidAlive, readFarmFile } from '../farm-file.ts';
import type { AuthUser } from '../nats-config.ts';
import { reloadNatsServer, writeAuthConfig } from '../nats-server.ts';
import { linksConfig, linksOf, readSiteStore } from '../links/index.ts';
import { readCredentials, writeCredentials } from './credentials-file.ts';
import { issuePrincipal, listPrincipals, localCredsPath, publicKeyOf } from './principals.ts';

/** Where `renderbus up` keeps nats-server's config and store. */
export const natsDir = (dataDir: string) => join(dataDir, 'nats');

/** The actors `renderbus up` runs itself, each with a credential of its own. */
export function localPrincipals(o: { host: string | null; operator: string; linked?: boolean }): Principal[] {
  const list: Principal[] = [
    { role: Role.Scheduler, name: 'scheduler' },
    { role: Role.Registry, name: 'registry' },
    { role: Role.Notifier, name: 'notifier' },
    { role: Role.Monitor, name: 'monitor' },
    // the person who ran `up`: the CLI finds this one through farm.json
    { role: Role.Operator, name: o.operator },
  ];
  if (o.host) list.push({ role: Role.RenderServer, name: o.host });
  // a linked site's link service and intake (docs/federation.md, "Linking sites")
  if (o.linked) list.push({ role: Role.SiteLink, name: 'link' }, { role: Role.Intake, name: 'intake' });
  return list;
}

/**
 * Makes sure each local actor has a credential whose public key the store lists (issuing the ones
 * missing) and returns them with every user the server must let in. The data directory is made
 * private (0700): it holds the local seeds.
 */
export async function prepareSiteAuth(dataDir: string, site: string, wanted: Principal[]): Promise<{ users: AuthUser[]; creds: Map<string, Credentials> }> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  await chmod(dataDir, 0o700);
  const creds = new Map<string, Credentials>();
  let known = new Set((await listPrincipals(dataDir)).map((p) => p.publicKey));
  for (const p of wanted) {
    const path = localCredsPath(dataDir, p);
    const kept = await readCredentials(path).catch(() => null);
    if (kept && kept.site === site && known.has(publicKeyOf(kept.seed))) {
      creds.set(keyOf(p), kept);
      continue;
    }
    const c = await issuePrincipal(dataDir, site, p, { local: true });
    await writeCredentials(path, c);
    creds.set(keyOf(p), c);
    known = new Set((await listPrincipals(dataDir)).map((x) => x.publicKey));
  }
  return { users: await authUsers(dataDir), creds };
}

export const keyOf = (p: Principal) => `${p.role}/${p.name}`;

export async function authUsers(dataDir: string): Promise<AuthUser[]> {
  return (await listPrincipals(dataDir)).map((p) => ({ site: p.site, role: p.role, name: p.name, publicKey: p.publicKey }));
}

/**
 * After the store changed: rewrite the server's user list and, when the farm of this data directory
 * runs, have its nats-server read it (new credentials work at once, revoked ones are cut off).
 * Says whether a running server was told.
 */
export async function applySiteAuth(dataDir: string): Promise<boolean> {
  // a linked site's links go into every rewrite: without them the leafnodes block would vanish,
  // nats-server 2.9.10 would refuse the whole reload, and the new credential would not get in
  const store = await readSiteStore(dataDir);
  await writeAuthConfig(natsDir(dataDir), await authUsers(dataDir), store ? linksConfig(linksOf(store)) : undefined);
  const farm = await readFarmFile(dataDir).catch(() => null);
  if (!farm?.natsPid || !pidAlive(farm.pid)) return false;
  // a cluster's members share this auth.conf (sites/cluster.ts): each reads it again
  const pids = farm.natsPids ?? [farm.natsPid];
  return pids.map((pid) => reloadNatsServer(pid)).some(Boolean);
}
