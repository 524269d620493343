import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import pino from 'pino';
import { BUNDLE_VERSION, BlobHeader, LinkState, PROTOCOL_MAJOR, Role, encodeManifest, linkCodecs, streams, subjects } from '../../protocol/index.ts';
import { bundleKey, CHUNK } from '../../sites/links/transfer-plan.ts';
import { prepareOutgoing } from '../../sites/links/bundle-send.ts';
import { headers } from '@nats-io/transport-node';
import { deflateRawSync } from 'node:zlib';
import { newBundleId, writeBundle } from '../../sites/bundles/index.ts';
import { hotFolderDirs } from '../../sites/hotfolders/index.ts';
import { loadSiteKey, serveLinkRelease, startSiteLinks, type SiteLinksHandle } from '../../sites/links/index.ts';
import { holdReason, startIntake } from '../../sites/intake/index.ts';
import { waitingIn } from '../../tools/cli/sites.ts';
import { startFedSites, waitLinkUp, type FedSite, type FedSites } from '../helpers/fed-sites.ts';
import { waitUntil } from '../helpers/farm.ts';

// Issue 14, "The site link", the watchdog (docs/federation.md): a hostile v2 whose server takes
// 8 MB messages puts a 3 MB one in its outbox. The studio's inbox for v2 cannot take it (notes
// §3.2: it wedges for good); the studio's link quarantines v2, v1 is unaffected, and clearing the
// quarantine resets the inbox past the poison.

let f: FedSites;
let src: string;
const conns: NatsConnection[] = [];
const services = new Map<string, SiteLinksHandle>();
const logs: { msg: string; site?: string; peer?: string; err?: { message?: string } }[] = [];

async function startLinks(s: FedSite): Promise<SiteLinksHandle> {
  const farm = await s.connectAs(Role.SiteLink);
  conns.push(farm);
  const peers = [];
  for (const p of s.links.peers) {
    const dmz = await s.connectDmz(p.name);
    conns.push(dmz);
    peers.push({ name: p.name, dmz });
  }
  const h = await startSiteLinks({ site: s.name, dataDir: s.dir, farm, peers, log: pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line) as { msg: string }) }), scanEveryMs: 200, stallAfterMs: 10_000 });
  services.set(s.name, h);
  return h;
}

async function send(from: FedSite, to: string, size: number): Promise<string> {
  const dir = join(src, randomBytes(4).toString('hex'));
  await mkdir(dir);
  await writeFile(join(dir, 'a.bin'), randomBytes(size));
  const bundleId = newBundleId();
  const name = `${bundleId}.rbb`;
  await writeBundle({ head: { kind: 'status', bundleId, from: from.name, to, route: [] }, files: [join(dir, 'a.bin')], out: join(src, name), dataDir: from.dir });
  await rename(join(src, name), join(hotFolderDirs(from.dir, to).outgoing, name));
  return name;
}

const arrived = (at: FedSite, from: string, name: string) =>
  waitUntil(`${name} at ${at.name}`, () => readdir(hotFolderDirs(at.dir, from).incoming).then((n) => n.includes(name)), 60_000, 50);

before(async () => {
  src = await mkdtemp('/var/tmp/rb-fed-poison-');
  f = await startFedSites({ maxPayload: { v2: 8 << 20 } });
  for (const v of f.vendors) await waitLinkUp(f.hub, v);
  for (const s of [f.hub, ...f.vendors]) await startLinks(s);
});

const stops: (() => Promise<void>)[] = [];

after(async () => {
  for (const s of stops) await s();
  for (const s of services.values()) await s.stop();
  for (const nc of conns) await nc.close().catch(() => {});
  await f?.stop();
  await rm(src, { recursive: true, force: true });
});

test('fed-link-poison - what a hostile v2 puts in its outbox is refused and logged, and the link goes on', async () => {
  const studio = services.get('studio')!;
  await waitUntil('v2 up', () => studio.status().find((l) => l.peer === 'v2')?.state === LinkState.Up, 20_000);
  const v2Dmz = await f.site('v2').connectDmz('studio');
  conns.push(v2Dmz);
  const js = jetstream(v2Dmz);
  const refusals = () => logs.filter((l) => l.site === 'studio' && l.peer === 'v2' && l.msg === 'link message refused').map((l) => l.err?.message ?? '');
  // a subject the protocol has no use for; a blob of a bundle never offered; a manifest that is not one
  await js.publish('rbq.v2.studio.x.y.z', 'hello');
  await js.publish(subjects.fedQueue('v2', 'studio', 'abcdef', 'blob'), randomBytes(1000));
  await js.publish(subjects.fedQueue('v2', 'studio', 'abcdef', 'manifest'), randomBytes(1000));
  // a bundle whose manifest says it comes from v1: refused before anything is written
  const bundleId = newBundleId();
  const manifest = encodeManifest({ version: BUNDLE_VERSION, kind: 'status', bundleId, from: 'v1', to: 'studio', route: [], createdAt: Date.now(), files: [] });
  await js.publish(
    subjects.fedQueue('v2', 'studio', bundleKey(bundleId), 'manifest'),
    linkCodecs.manifest.encode({ v: PROTOCOL_MAJOR, bundleId, name: `${bundleId}.rbb`, attempt: 'a1', manifest, layout: deflateRawSync(Buffer.alloc(512)), trailer: 1024, size: 2048 }),
  );
  await waitUntil('the lie refused', () => logs.some((l) => l.site === 'studio' && l.msg === 'bundle refused' && /says it is from 'v1'/.test(l.err?.message ?? '')), 20_000);
  assert.ok(!(await readdir(hotFolderDirs(f.hub.dir, 'v2').incoming)).includes(`${bundleId}.rbb`));
  await waitUntil('three refusals logged', () => refusals().length >= 3, 20_000);
  const r = refusals();
  assert.ok(r.some((m) => /unexpected subject/.test(m)), r.join(' | '));
  assert.ok(r.some((m) => /never offered/.test(m)), r.join(' | '));
  assert.ok(r.some((m) => /MessagePack|schema|\//i.test(m)), r.join(' | '));
  // a real bundle offered by hand, then blobs that lie: one that does not hash to its name, a chunk
  // longer than its place in the blob; both refused, the bundle never written
  const dir = join(src, 'lies');
  await mkdir(dir);
  await writeFile(join(dir, 'a.bin'), randomBytes(1000));
  await writeFile(join(dir, 'b.bin'), randomBytes(300_000));
  const lieId = newBundleId();
  const tar = join(dir, `${lieId}.rbb`);
  await writeBundle({ head: { kind: 'status', bundleId: lieId, from: 'v2', to: 'studio', route: [] }, files: [join(dir, 'a.bin'), join(dir, 'b.bin')], out: tar, dataDir: f.site('v2').dir });
  const b = await prepareOutgoing({ path: tar, name: `${lieId}.rbb`, site: 'v2', peer: 'studio', dataDir: f.site('v2').dir });
  const key = bundleKey(lieId);
  await js.publish(subjects.fedQueue('v2', 'studio', key, 'manifest'), linkCodecs.manifest.encode({ v: PROTOCOL_MAJOR, bundleId: lieId, name: b.name, attempt: 'evil', manifest: b.manifestBytes, layout: b.layout, trailer: b.trailer, size: b.size }));
  const [small, big] = [...b.blobs].sort((x, y) => x[1] - y[1]);
  const blob = async (sha256: string, size: number, offset: number, data: Uint8Array) => {
    const h = headers();
    h.set(BlobHeader.sha256, sha256);
    h.set(BlobHeader.offset, String(offset));
    h.set(BlobHeader.size, String(size));
    await js.publish(subjects.fedQueue('v2', 'studio', key, 'blob'), data, { headers: h });
  };
  await blob(small![0], small![1], 0, randomBytes(small![1]));
  await blob(big![0], big![1], 0, randomBytes(CHUNK + 1));
  await js.publish(subjects.fedQueue('v2', 'studio', key, 'end'), linkCodecs.end.encode({ v: PROTOCOL_MAJOR, bundleId: lieId, attempt: 'evil', blobs: 2, bytes: 0 }));
  await waitUntil('the lying blobs refused', () =>
    logs.some((l) => l.msg === 'blob refused' && /hash/.test(l.err?.message ?? '')) && refusals().some((m) => /should be 262144 bytes/.test(m)), 20_000);
  await waitUntil('the incomplete end answered', () => logs.some((l) => l.site === 'studio' && l.msg === 'bundle incomplete at its end: asking again'), 20_000);
  assert.ok(!(await readdir(hotFolderDirs(f.hub.dir, 'v2').incoming)).includes(b.name));

  // and the link goes on: v2's next bundle arrives
  assert.ok(await arrived(f.hub, 'v2', await send(f.site('v2'), 'studio', 30_000)));
});

test('fed-link-poison - a 3 MB message in v2\'s outbox quarantines v2 at the studio; v1 is unaffected; clearing resets past it', async () => {
  const studio = services.get('studio')!;
  const state = (peer: string) => studio.status().find((l) => l.peer === peer)?.state;
  await waitUntil('both links up', () => state('v1') === LinkState.Up && state('v2') === LinkState.Up, 20_000);
  // v2 behaves first: a bundle crosses
  assert.ok(await arrived(f.hub, 'v2', await send(f.site('v2'), 'studio', 100_000)));

  // v2 turns hostile: its own outbox takes anything, and it stores a 3 MB message there
  const v2Dmz = await f.site('v2').connectDmz('studio');
  conns.push(v2Dmz);
  const jsm = await jetstreamManager(v2Dmz);
  const cfg = (await jsm.streams.info(streams.fedOutbox)).config;
  await jsm.streams.update(streams.fedOutbox, { ...cfg, max_msg_size: -1 });
  await jetstream(v2Dmz).publish(subjects.fedQueue('v2', 'studio', 'deadbeef', 'blob'), randomBytes(3 << 20));

  const t0 = Date.now();
  // nats-server 2.9.10 reports the refusal only in its log (the source's lag stays 0): the
  // watchdog sees the inbox bring nothing while v2's hellos say its outbox grew, recreates the
  // source after stallAfterMs (10 s here; 30 s by default), and quarantines when that brings nothing either
  await waitUntil('the studio to see v2 stalled', () => state('v2') === LinkState.Stalled, 45_000, 100);
  await waitUntil('the studio to quarantine v2', () => state('v2') === LinkState.Quarantined, 45_000, 100);
  const took = Date.now() - t0;
  assert.ok(took <= 70_000, `quarantined ${took} ms after the poison`);
  assert.match(studio.status().find((l) => l.peer === 'v2')?.reason ?? '', /max_payload/);
  assert.match(f.hub.log(), /maximum payload exceeded/, 'the server log shows why');

  // the studio's intake holds what comes from v2 while it is quarantined: a signed bundle of v2's,
  // carried into incoming/v2 by hand, waits there while the intake keeps looking
  const v2Key = await loadSiteKey(f.site('v2').dir);
  const taken: string[] = [];
  const looks = { n: 0 };
  const intake = await startIntake({
    site: 'studio', dataDir: f.hub.dir, peers: ['v2'], scanEveryMs: 100,
    handlers: { ownJob: async (b) => void taken.push(b.manifest.bundleId), peerJob: async (b) => void taken.push(b.manifest.bundleId) },
    peerKey: () => v2Key.publicKey,
    held: (peer) => holdReason(peer, { quarantined: state(peer) === LinkState.Quarantined, keyKnown: true, allowUnsigned: false }),
    onScan: () => looks.n++,
  });
  stops.push(() => intake.stop());
  const heldId = newBundleId();
  const staged = join(src, `${heldId}.rbb`);
  await writeBundle({ head: { kind: 'status', bundleId: heldId, from: 'v2', to: 'studio', route: [], jobRef: { site: 'studio', job: 'j-held' }, status: { state: 'started', at: Date.now() } }, files: [], out: staged, dataDir: f.site('v2').dir, sign: v2Key });
  await rename(staged, join(hotFolderDirs(f.hub.dir, 'v2').incoming, `${heldId}.rbb`));
  const seen = looks.n;
  await waitUntil('the intake to look three more times', () => looks.n >= seen + 3, 10_000, 20);
  assert.equal(taken.length, 0, 'nothing of the quarantined peer taken');
  assert.ok((await readdir(hotFolderDirs(f.hub.dir, 'v2').incoming)).includes(`${heldId}.rbb`));
  assert.ok(await waitingIn(f.hub.dir, 'v2') >= 1, 'renderbus site v2 counts it');

  // v1 is unaffected, both ways
  assert.ok(await arrived(f.site('v1'), 'studio', await send(f.hub, 'v1', 200_000)));
  assert.ok(await arrived(f.hub, 'v1', await send(f.site('v1'), 'studio', 200_000)));
  assert.equal(state('v1'), LinkState.Up);

  // v2 behaves again: its bundle waits behind the poison until an operator clears the quarantine
  await jsm.streams.update(streams.fedOutbox, { ...cfg });
  const after = await send(f.site('v2'), 'studio', 50_000);
  // an operator releases v2 (`renderbus site release v2`: link.release, answered beside the link service)
  const linkNc = await f.hub.connectAs(Role.SiteLink);
  const op = await f.hub.connectAs(Role.Operator);
  conns.push(linkNc, op);
  const release = await serveLinkRelease({ site: 'studio', nc: linkNc, links: studio, log: pino({ level: 'silent' }) });
  stops.push(async () => release.unsubscribe());
  const ask = async (peer: string) => linkCodecs.releaseReply.decode((await op.request(subjects.linkRelease('studio'), linkCodecs.releaseRequest.encode({ v: PROTOCOL_MAJOR, peer }), { timeout: 5_000 })).data);
  const r = await ask('v2');
  assert.ok(r.ok && r.body.released && r.body.was === LinkState.Quarantined, JSON.stringify(r));
  // it crosses past the poison; the studio's intake (started above) handles it at once (a status
  // bundle of no job: to failed/), so it is looked for wherever the intake may have put it
  await waitUntil(`${after} across at the studio`, async () => {
    const d = hotFolderDirs(f.hub.dir, 'v2');
    for (const dir of [d.incoming, d.processed, d.failed]) if ((await readdir(dir).catch(() => [] as string[])).includes(after)) return true;
    return false;
  }, 60_000, 50);
  await waitUntil('v2 up again', () => state('v2') === LinkState.Up, 20_000);
  // and the intake takes what waited
  await waitUntil('the held bundle taken after the release', () => taken.includes(heldId), 10_000, 20);
  const again = await ask('v2');
  assert.ok(again.ok && !again.body.released && again.body.was === LinkState.Up, 'nothing to release any more');
  const unknown = await ask('v9');
  assert.ok(!unknown.ok && unknown.error.code === 'RB_BAD_PEER');
});
