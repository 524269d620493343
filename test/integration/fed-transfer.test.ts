import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import pino from 'pino';
import { LinkState, PROTOCOL_MAJOR, Role, linkCodecs, streams, subjects } from '../../protocol/index.ts';
import { newBundleId, writeBundle } from '../../sites/bundles/index.ts';
import { hotFolderDirs } from '../../sites/hotfolders/index.ts';
import { startSiteLinks, type SiteLinksHandle } from '../../sites/links/index.ts';
import { startFedSites, waitLinkUp, type FedSite, type FedSites } from '../helpers/fed-sites.ts';
import { waitUntil } from '../helpers/farm.ts';

// Issue 14, "The site link" (docs/federation.md): bundles dropped in one site's outgoing/<peer>/
// appear in the peer's incoming/<us>/, over real nats-servers linked by leafs through TCP proxies
// that count bytes and can cut the link.

let f: FedSites;
let src: string; // the studio's and v1's "project" files (not under /tmp: bundle paths may not be)
const conns: NatsConnection[] = [];
const services = new Map<string, SiteLinksHandle>();
const logs: { msg: string; peer?: string; bundleId?: string }[] = [];
const peerKeys: { site: string; peer: string; key: string }[] = [];

const peersOf = (s: FedSite) => s.links.peers.map((p) => p.name);

async function startLinks(s: FedSite): Promise<SiteLinksHandle> {
  const farm = await s.connectAs(Role.SiteLink);
  conns.push(farm);
  const peers = [];
  for (const name of peersOf(s)) {
    const dmz = await s.connectDmz(name);
    conns.push(dmz);
    peers.push({ name, dmz });
  }
  const log = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line) as { msg: string }) });
  const h = await startSiteLinks({ site: s.name, dataDir: s.dir, farm, peers, log, scanEveryMs: 200, onPeerKey: (peer, key) => peerKeys.push({ site: s.name, peer, key }) });
  services.set(s.name, h);
  return h;
}

async function project(name: string, sizes: number[]): Promise<string[]> {
  const dir = join(src, name);
  await rm(dir, { recursive: true, force: true });
  await mkdtemp(join(src, 'x')).then((d) => rm(d, { recursive: true }));
  const { mkdir } = await import('node:fs/promises');
  await mkdir(dir, { recursive: true });
  const paths: string[] = [];
  for (const [i, size] of sizes.entries()) {
    const p = join(dir, `f${i}.bin`);
    await writeFile(p, randomBytes(size));
    paths.push(p);
  }
  return paths;
}

/** Writes a bundle of `files` from `from` to `to` straight into from's outgoing/<to>/ (as the writer does: .part, then rename). */
async function drop(from: FedSite, to: string, files: string[]): Promise<{ name: string; path: string }> {
  const bundleId = newBundleId();
  const name = `${bundleId}.rbb`;
  const dirs = hotFolderDirs(from.dir, to);
  const { mkdir } = await import('node:fs/promises');
  await mkdir(dirs.outgoing, { recursive: true });
  const staged = join(src, name);
  await writeBundle({ head: { kind: 'status', bundleId, from: from.name, to, route: [] }, files, out: staged, dataDir: from.dir });
  const { rename } = await import('node:fs/promises');
  await rename(staged, join(dirs.outgoing, name));
  return { name, path: join(dirs.outgoing, name) };
}

const sha = async (p: string) => createHash('sha256').update(await readFile(p)).digest('hex');

async function arrived(at: FedSite, from: string, name: string, timeoutMs = 20_000): Promise<string> {
  const p = join(hotFolderDirs(at.dir, from).incoming, name);
  await waitUntil(`${name} to arrive at ${at.name}`, () => readdir(hotFolderDirs(at.dir, from).incoming).then((n) => n.includes(name)), timeoutMs, 50);
  return p;
}

async function processedAt(s: FedSite, peer: string, name: string, timeoutMs = 60_000): Promise<void> {
  await waitUntil(`${name} to move to processed/ at ${s.name}`, () => readdir(hotFolderDirs(s.dir, peer).processed).then((n) => n.includes(name), () => false), timeoutMs, 50);
}

before(async () => {
  src = await mkdtemp('/var/tmp/rb-fed-transfer-');
  f = await startFedSites();
  for (const v of f.vendors) await waitLinkUp(f.hub, v);
  for (const s of [f.hub, ...f.vendors]) await startLinks(s);
});

after(async () => {
  for (const s of services.values()) await s.stop();
  for (const nc of conns) await nc.close().catch(() => {});
  await f?.stop();
  await rm(src, { recursive: true, force: true });
});

test('fed-transfer - a bundle of a few MB crosses studio → v1 byte-identical, and v1 → studio', async () => {
  const files = await project('p1', [3 << 20, 1 << 20, 200_000, 17, 0]);
  const b = await drop(f.hub, 'v1', files);
  const want = await sha(b.path);
  const got = await arrived(f.site('v1'), 'studio', b.name);
  assert.equal(await sha(got), want, 'the bundle arrived byte-identical');
  await processedAt(f.hub, 'v1', b.name);

  const back = await drop(f.site('v1'), 'studio', await project('p1back', [2 << 20, 5]));
  const wantBack = await sha(back.path);
  assert.equal(await sha(await arrived(f.hub, 'v1', back.name)), wantBack);
  await processedAt(f.site('v1'), 'studio', back.name);
  // each site learnt the other's key from its hellos
  assert.ok(peerKeys.some((k) => k.site === 'v1' && k.peer === 'studio'));
  assert.ok(peerKeys.some((k) => k.site === 'studio' && k.peer === 'v1'));
});
after(() => { if (process.env.RB_DUMP_LOGS) process.stderr.write(logs.map((l) => JSON.stringify(l)).join("\n") + "\n"); });
