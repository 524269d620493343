import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, nkeyAuthenticator, type ConnectionOptions, type NatsConnection } from '@nats-io/transport-node';
import { loginOptions } from '../../actors/bus/index.ts';
import { ANY_HOST, Role, subjects, type Credentials } from '../../protocol/index.ts';
import { authUsers, issuePrincipal } from '../../sites/auth/index.ts';
import { newUserKey } from '../../sites/auth/principals.ts';
import { newLeafPassword, PeerRole, type DmzQuota, type Peer, type SiteLinks } from '../../sites/links/index.ts';
import { startNatsServer, type NatsServerHandle } from '../../sites/nats-server.ts';
import { waitUntil } from '../../tools/lib/wait-until.ts';
import { freePort } from './farm.ts';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.ts';

/**
 * The FARM principals each test site issues: its link, its scheduler (JetStream), an operator
 * (tails everything), an artist (a credential the federation subjects refuse), and a registry and
 * a render server for any host (a simulated farm, for tests that need slots at each site), and the
 * intake (a test plays a vendor's news on `sched.remote.<peer>`).
 */
const PRINCIPALS = [
  { role: Role.SiteLink, name: 'link' },
  { role: Role.Scheduler, name: 'scheduler' },
  { role: Role.Operator, name: 'op' },
  { role: Role.Artist, name: 'ann' },
  { role: Role.Registry, name: 'registry' },
  { role: Role.RenderServer, name: ANY_HOST },
  { role: Role.Intake, name: 'intake' },
] as const;
type FarmRole = (typeof PRINCIPALS)[number]['role'];

export interface FedSite {
  name: string;
  dir: string;
  url: string;
  links: SiteLinks;
  nats: NatsServerHandle;
  /** nats-server's log so far (stderr). */
  log(): string;
  /** A connection into this site's FARM account as one of its principals. */
  connectAs(role: FarmRole, o?: Partial<ConnectionOptions>): Promise<NatsConnection>;
  /** A connection into this site's DMZ account of `peer` (the site's own link user there). */
  connectDmz(peer: string, o?: Partial<ConnectionOptions>): Promise<NatsConnection>;
}

export interface FedSites {
  hub: FedSite;
  vendors: FedSite[];
  site(name: string): FedSite;
  /** The TCP proxy each vendor's leaf goes through. */
  proxy(vendor: string): TcpProxy;
  /** The hub's leaf listener port (the proxies' target). */
  leafPort: number;
  stop(): Promise<void>;
}

export interface FedSitesOptions {
  hub?: string;
  vendors?: string[];
  quota?: DmzQuota;
  /** A vendor whose server takes larger messages than the others (a hostile peer: notes §3.2, poison). */
  maxPayload?: Record<string, number>;
}

/**
 * Three real nats-servers on 127.0.0.1 (a hub, `studio`, and leafs `v1`, `v2` by default), each in a
 * temp dir with its config from sites/links, each leaf dialling the hub through a TCP proxy that
 * can cut the link. The hub advertises a dead local port: nats-server 2.9.10 tells its leafs its
 * own leaf URL, and a leaf that reconnects there would go around the proxy (docs/federation.md).
 */
export async function startFedSites(o: FedSitesOptions = {}): Promise<FedSites> {
  const hubName = o.hub ?? 'studio';
  const vendorNames = o.vendors ?? ['v1', 'v2'];
  const root = await mkdtemp(join(tmpdir(), 'rb-fed-'));
  const started: FedSite[] = [];
  const proxies = new Map<string, TcpProxy>();
  const stop = async () => {
    for (const s of started.reverse()) await s.nats.stop();
    for (const p of proxies.values()) await p.close();
    await rm(root, { recursive: true, force: true });
  };
  try {
    const leafPort = await freePort();
    const deadPort = await freePort(); // nothing listens there
    const passwords = new Map(vendorNames.map((v) => [v, newLeafPassword()]));
    for (const v of vendorNames) proxies.set(v, await startTcpProxy(leafPort));
    const quota = o.quota ? { quota: o.quota } : {};
    const hubPeers: Peer[] = vendorNames.map((v) => ({ name: v, role: PeerRole.Leaf, password: passwords.get(v)!, ...quota }));
    const hub = await startSite(root, { site: hubName, peers: hubPeers, listen: { host: '127.0.0.1', port: leafPort, advertise: `127.0.0.1:${deadPort}` } });
    started.push(hub);
    const vendors: FedSite[] = [];
    for (const v of vendorNames) {
      const url = `nats-leaf://127.0.0.1:${proxies.get(v)!.port}`;
      const s = await startSite(root, { site: v, peers: [{ name: hubName, role: PeerRole.Hub, url, password: passwords.get(v)!, ...quota }] }, o.maxPayload?.[v]);
      started.push(s);
      vendors.push(s);
    }
    const all = [hub, ...vendors];
    return {
      hub,
      vendors,
      leafPort,
      site: (name) => all.find((s) => s.name === name) ?? assertNever(name),
      proxy: (v) => proxies.get(v) ?? assertNever(v),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

const assertNever = (what: string): never => {
  throw new Error(`no site or proxy '${what}' in this federation`);
};

async function startSite(root: string, links: SiteLinks, maxPayload?: number): Promise<FedSite> {
  const dir = join(root, links.site);
  await mkdir(dir, { recursive: true });
  const creds = new Map<string, Credentials>();
  for (const p of PRINCIPALS) creds.set(p.role, await issuePrincipal(dir, links.site, p, { local: true }));
  // the site's own user in each DMZ: a plain nkey (no role: the DMZ holds only this link's streams)
  const dmzSeeds = new Map<string, string>();
  const peers = links.peers.map((p) => {
    const k = newUserKey();
    dmzSeeds.set(p.name, k.seed);
    return { ...p, linkKeys: [k.publicKey] };
  });
  const withKeys = { ...links, peers };
  const nats = await startNatsServer({ dir, host: '127.0.0.1', port: -1, serverName: links.site, auth: { users: await authUsers(dir) }, links: withKeys, ...(maxPayload ? { maxPayload } : {}) });
  let log = '';
  nats.proc.stderr?.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-50_000)));
  const base: Partial<ConnectionOptions> = { servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 250 };
  return {
    name: links.site,
    dir,
    url: nats.url,
    links: withKeys,
    nats,
    log: () => log,
    connectAs: (role, co = {}) => connect({ ...base, ...loginOptions(creds.get(role)!), ...co }),
    connectDmz: (peer, co = {}) => {
      const seed = dmzSeeds.get(peer);
      if (!seed) throw new Error(`site ${links.site} has no peer ${peer}`);
      return connect({ ...base, authenticator: nkeyAuthenticator(new TextEncoder().encode(seed)), ...co });
    },
  };
}

/**
 * Waits until the link between two sites carries traffic both ways (their site-link principals,
 * live subjects): the leaf is connected and interest has crossed it. Returns the ms taken.
 */
export async function waitLinkUp(a: FedSite, b: FedSite, timeoutMs = 20_000): Promise<number> {
  const t0 = Date.now();
  const [ca, cb] = [await a.connectAs(Role.SiteLink), await b.connectAs(Role.SiteLink)];
  try {
    await waitDelivered(ca, cb, subjects.fed(b.name, a.name, 'link.probe'), undefined, timeoutMs);
    await waitDelivered(cb, ca, subjects.fed(a.name, b.name, 'link.probe'), undefined, timeoutMs);
    return Date.now() - t0;
  } finally {
    await ca.close();
    await cb.close();
  }
}

/**
 * Publishes on `pubSubject` from `from` every 100 ms until `to`, subscribed to `subSubject`, gets
 * one: proof that the path is up (leaf connected and interest propagated). Returns the ms taken.
 */
export async function waitDelivered(from: NatsConnection, to: NatsConnection, pubSubject: string, subSubject = pubSubject, timeoutMs = 20_000): Promise<number> {
  const t0 = Date.now();
  let got = false;
  const sub = to.subscribe(subSubject, { callback: () => void (got = true) });
  try {
    await to.flush();
    await waitUntil(
      `a message on ${pubSubject} to arrive`,
      async () => {
        if (!got && !from.isClosed()) {
          from.publish(pubSubject, 'probe');
          await from.flush().catch(() => {});
        }
        return got;
      },
      timeoutMs,
      100,
    );
    return Date.now() - t0;
  } finally {
    sub.unsubscribe();
  }
}
