import { createPublicKey } from 'node:crypto';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { FarmError, isToken } from '../../protocol/index.ts';
import { createUser, fromSeed } from '@nats-io/nkeys';
import { withFileLock } from '../file-lock.ts';
import { checkSiteLinks, PeerRole, type Peer, type SiteLinks } from './peer.ts';

/** A peer as the site keeps it: the link's settings, what we know of the peer, and our own key in its DMZ. */
export interface StoredPeer extends Peer {
  /** The peer's site key (Ed25519, base64url SPKI): from the invitation (a hub) or the link's first hello (a leaf). */
  publicKey?: string;
  /** Take bundles from this peer that carry no signature (dropped by hand by an operator without a link). */
  allowUnsigned?: boolean;
  /** Bytes this peer may store here (its content store and job trees); DEFAULT_PEER_QUOTA_BYTES when unset. */
  quotaBytes?: number;
  /** The seed of this site's own nkey user in the peer's DMZ account: what the link service connects with (a secret). */
  dmzSeed: string;
  /** When the peer was recorded (ms since the epoch). */
  addedAt: number;
}

/** A site's federation settings, `<data>/fed/site.json` (0600: it holds leaf passwords and seeds). */
export interface SiteStore {
  site: string;
  /** The leaf listener peers dial (hubs only); `advertise` is the host:port they are told. */
  listen?: { host: string; port: number; advertise: string };
  peers: StoredPeer[];
}

const KIND = 'renderbus-site';
const SEED = /^SU[A-Z2-7]{56}$/;

export const siteStorePath = (dataDir: string) => join(dataDir, 'fed', 'site.json');

const bad = (where: string, message: string) => new FarmError('RB_BAD_PEER', `${where}: ${message}`);

/** The site's links as the config generator takes them: each peer with the public half of our DMZ key. */
export function linksOf(s: SiteStore): SiteLinks {
  return {
    site: s.site,
    ...(s.listen ? { listen: s.listen } : {}),
    peers: s.peers.map((p) => ({
      name: p.name,
      role: p.role,
      ...(p.url !== undefined ? { url: p.url } : {}),
      password: p.password,
      ...(p.quota ? { quota: p.quota } : {}),
      linkKeys: [dmzPublicKey(p.dmzSeed)],
    })),
  };
}

/** The public nkey of our user in a peer's DMZ, from its seed. */
export const dmzPublicKey = (seed: string) => fromSeed(new TextEncoder().encode(seed)).getPublicKey();

/** Whether a string is an Ed25519 public key in base64url SPKI (what loadSiteKey's publicKey is). */
export function isSiteKey(key: string): boolean {
  if (!/^[A-Za-z0-9_-]{40,100}$/.test(key)) return false;
  try {
    return createPublicKey({ key: Buffer.from(key, 'base64url'), format: 'der', type: 'spki' }).asymmetricKeyType === 'ed25519';
  } catch {
    return false;
  }
}

/**
 * Checks a store document field by field; every mistake is an RB_BAD_PEER naming the file and the
 * field (`peers[1].dmzSeed`). Then the links as a whole (names, passwords, listener: checkSiteLinks).
 */
export function checkSiteStore(doc: unknown, where: string): SiteStore {
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw bad(where, 'not a JSON object');
  const d = doc as Record<string, unknown>;
  if (d.kind !== KIND) throw bad(where, `"kind" must be "${KIND}"`);
  if (d.v !== 1) throw bad(where, `"v" must be 1 (got ${JSON.stringify(d.v)}): written by another renderbus version?`);
  if (typeof d.site !== 'string' || !isToken(d.site)) throw bad(where, `"site" must be a site name (a-z, 0-9, '-', '_', at most 64)`);
  let listen: SiteStore['listen'];
  if (d.listen !== undefined) {
    const l = d.listen as Record<string, unknown>;
    if (l === null || typeof l !== 'object' || typeof l.host !== 'string' || typeof l.advertise !== 'string' || !Number.isInteger(l.port)) {
      throw bad(where, '"listen" must be { host, port, advertise }');
    }
    listen = { host: l.host, port: l.port as number, advertise: l.advertise };
  }
  if (!Array.isArray(d.peers)) throw bad(where, '"peers" must be a list');
  const peers = d.peers.map((raw: unknown, i): StoredPeer => {
    const at = `peers[${i}]`;
    if (raw === null || typeof raw !== 'object') throw bad(where, `${at} is not an object`);
    const p = raw as Record<string, unknown>;
    const str = (k: string) => {
      if (typeof p[k] !== 'string') throw bad(where, `${at}.${k} must be a string`);
      return p[k];
    };
    const name = str('name');
    if (p.role !== PeerRole.Hub && p.role !== PeerRole.Leaf) throw bad(where, `${at}.role must be "hub" or "leaf"`);
    const dmzSeed = str('dmzSeed');
    if (!SEED.test(dmzSeed)) throw bad(where, `${at}.dmzSeed is not a user nkey seed (SU…)`);
    if (p.publicKey !== undefined && (typeof p.publicKey !== 'string' || !isSiteKey(p.publicKey))) throw bad(where, `${at}.publicKey is not an ed25519 public key (base64url SPKI)`);
    if (p.allowUnsigned !== undefined && typeof p.allowUnsigned !== 'boolean') throw bad(where, `${at}.allowUnsigned must be true or false`);
    if (p.quotaBytes !== undefined && !(Number.isSafeInteger(p.quotaBytes) && (p.quotaBytes as number) >= 0)) throw bad(where, `${at}.quotaBytes must be a whole number of bytes (0 or more)`);
    if (p.url !== undefined && typeof p.url !== 'string') throw bad(where, `${at}.url must be a string`);
    if (!Number.isInteger(p.addedAt)) throw bad(where, `${at}.addedAt must be a time in ms`);
    const q = p.quota as Record<string, unknown> | undefined;
    if (q !== undefined && (q === null || typeof q !== 'object')) throw bad(where, `${at}.quota must be an object`);
    return {
      name,
      role: p.role,
      ...(typeof p.url === 'string' ? { url: p.url } : {}),
      password: str('password'),
      ...(q ? { quota: { maxMemory: q.maxMemory as number, maxFile: q.maxFile as number, maxStreams: q.maxStreams as number, maxConsumers: q.maxConsumers as number } } : {}),
      ...(typeof p.publicKey === 'string' ? { publicKey: p.publicKey } : {}),
      ...(p.allowUnsigned === true ? { allowUnsigned: true } : {}),
      ...(typeof p.quotaBytes === 'number' ? { quotaBytes: p.quotaBytes } : {}),
      dmzSeed,
      addedAt: p.addedAt as number,
    };
  });
  const store: SiteStore = { site: d.site, ...(listen ? { listen } : {}), peers };
  try {
    checkSiteLinks(linksOf(store));
  } catch (err) {
    throw bad(where, (err as Error).message);
  }
  // a listener without leaf peers is checked too: `up --leaf-listen` records one before any invitation
  if (listen) checkListen(listen, where);
  return store;
}

/** A leaf listener: host and port to bind, and the public host:port the peers are told (docs/federation.md, `advertise`). */
export function checkListen(l: { host: string; port: number; advertise: string }, where: string): void {
  if (!/^[^\s"/@:]+$/.test(l.host) || !Number.isInteger(l.port) || l.port < 0 || l.port > 65535) throw bad(where, `listen: ${l.host}:${l.port} is not host:port`);
  if (!/^[^\s"/@]+:\d{1,5}$/.test(l.advertise)) throw bad(where, `listen: advertise '${l.advertise}' must be the public host:port the peers dial`);
}

/** The site's store, or null when the site has none (a farm that was never linked). */
export async function readSiteStore(dataDir: string): Promise<SiteStore | null> {
  const path = siteStorePath(dataDir);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (cause) {
    throw new FarmError('RB_BAD_PEER', `${path}: not JSON (${(cause as Error).message})`, { cause });
  }
  return checkSiteStore(doc, path);
}

/** Writes the store atomically (temp file, then rename), 0600, after checking it as a reader would. */
export async function writeSiteStore(dataDir: string, s: SiteStore): Promise<void> {
  const path = siteStorePath(dataDir);
  const doc = { kind: KIND, v: 1, site: s.site, ...(s.listen ? { listen: s.listen } : {}), peers: s.peers };
  checkSiteStore(JSON.parse(JSON.stringify(doc)), path); // nothing half-valid reaches the disk
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(doc, null, 2)}\n`, { mode: 0o600 });
  await chmod(tmp, 0o600); // whatever the umask
  await rename(tmp, path);
}

/**
 * Read-modify-write of the store under a lock file (the CLI and the running link service both
 * write it: an invitation and a peer's key arriving at once must not lose either). `change`
 * receives null when there is no store yet; a lock left by a dead process is taken over.
 */
export async function updateSiteStore<T>(dataDir: string, change: (s: SiteStore | null) => { store: SiteStore; result: T } | null): Promise<T | null> {
  const path = siteStorePath(dataDir);
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  return withFileLock(`${path}.lock`, { code: 'RB_BAD_PEER', what: "another 'renderbus site'" }, async () => {
    const next = change(await readSiteStore(dataDir));
    if (next === null) return null;
    await writeSiteStore(dataDir, next.store);
    return next.result;
  });
}

/**
 * Makes sure the data directory is the site `site` (a store is made on first use) and records its
 * leaf listener when one is given. A store of another name is refused: a site's name is its
 * JetStream domain and every peer knows it by that name.
 */
export async function ensureSite(dataDir: string, site: string, listen?: SiteStore['listen']): Promise<SiteStore> {
  const r = await updateSiteStore(dataDir, (s) => {
    if (s && s.site !== site) throw new FarmError('RB_BAD_PEER', `${siteStorePath(dataDir)} is site '${s.site}', not '${site}': a site keeps its name (its peers know it by it)`);
    const store: SiteStore = { site, peers: s?.peers ?? [], ...(listen ? { listen } : s?.listen ? { listen: s.listen } : {}) };
    return { store, result: store };
  });
  return r!;
}

/** What a new peer needs besides our DMZ key, which is made here. */
export type NewPeer = Omit<StoredPeer, 'dmzSeed' | 'addedAt'>;

/** Records a new peer with a fresh DMZ key of our own; a peer of that name already there is refused. */
export async function addPeer(dataDir: string, peer: NewPeer): Promise<StoredPeer> {
  const r = await updateSiteStore(dataDir, (s) => {
    if (!s) throw new FarmError('RB_BAD_PEER', `${dataDir} is not a site yet: run 'renderbus up --site NAME' there first`);
    if (s.peers.some((p) => p.name === peer.name)) {
      throw new FarmError('RB_BAD_PEER', `'${peer.name}' is already a peer of site '${s.site}': 'renderbus site remove ${peer.name}' first to link it anew`);
    }
    const stored: StoredPeer = { ...peer, dmzSeed: new TextDecoder().decode(createUser().getSeed()), addedAt: Date.now() };
    return { store: { ...s, peers: [...s.peers, stored] }, result: stored };
  });
  return r!;
}

/** Forgets a peer; whether there was one. */
export async function removePeer(dataDir: string, name: string): Promise<boolean> {
  const r = await updateSiteStore(dataDir, (s) => {
    if (!s || !s.peers.some((p) => p.name === name)) return null;
    return { store: { ...s, peers: s.peers.filter((p) => p.name !== name) }, result: true };
  });
  return r === true;
}

/** Sets the bytes a peer may store here (`renderbus site <peer> --quota`); the running intake reads it at the next bundle. */
export async function setPeerQuota(dataDir: string, peer: string, bytes: number): Promise<void> {
  if (!Number.isSafeInteger(bytes) || bytes < 0) throw new FarmError('RB_BAD_ARGUMENT', `a quota must be a whole number of bytes, 0 or more (got ${bytes})`);
  await updateSiteStore(dataDir, (s) => {
    if (!s || !s.peers.some((x) => x.name === peer)) throw new FarmError('RB_BAD_PEER', `'${peer}' is not a peer of this site`);
    return { store: { ...s, peers: s.peers.map((x) => (x.name === peer ? { ...x, quotaBytes: bytes } : x)) }, result: true };
  });
}

/**
 * Records a peer's site key the first time it is seen (trust on first use: the link's hello
 * carries it). The same key again changes nothing; another key is refused (RB_BAD_PEER) and kept
 * out: a peer whose key changes may be someone else, so an operator decides (`site remove`, then
 * link anew). Resolves to 'stored' or 'unchanged'.
 */
export async function setPeerKey(dataDir: string, peer: string, key: string): Promise<'stored' | 'unchanged'> {
  if (!isSiteKey(key)) throw new FarmError('RB_BAD_PEER', `the key offered for peer '${peer}' is not an ed25519 public key (base64url SPKI)`);
  const r = await updateSiteStore<'stored' | 'unchanged'>(dataDir, (s) => {
    const p = s?.peers.find((x) => x.name === peer);
    if (!s || !p) throw new FarmError('RB_BAD_PEER', `'${peer}' is not a peer of this site`);
    if (p.publicKey === key) return null;
    if (p.publicKey !== undefined) {
      throw new FarmError('RB_BAD_PEER', `peer '${peer}' presented another site key than the one on record: refused (if the peer really has a new key, 'renderbus site remove ${peer}' and link it anew)`);
    }
    return { store: { ...s, peers: s.peers.map((x) => (x.name === peer ? { ...x, publicKey: key } : x)) }, result: 'stored' };
  });
  return r ?? 'unchanged';
}
