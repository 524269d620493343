import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FarmError } from '../../protocol/index.ts';
import { authConfig } from '../../sites/nats-config.ts';
import {
  addPeer, decodeInvitation, dmzPublicKey, encodeInvitation, ensureSite, LinkChange, linkChange, linksConfig, linksOf, loadSiteKey, newLeafPassword, PeerRole, readSiteStore,
  removePeer, setPeerKey, siteStorePath, writeSiteStore, type Invitation, type SiteStore,
} from '../../sites/links/index.ts';
import { mergeLinks, NO_ANSWER } from '../../tools/cli/sites.ts';

const tmp = async (t: { after(fn: () => Promise<void>): void }) => {
  const dir = await mkdtemp(join(tmpdir(), 'rb-peers-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
};
const aKey = () => generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'der' }).toString('base64url');
const LISTEN = { host: '0.0.0.0', port: 7422, advertise: 'farm.studio.example:7422' };

/** Asserts `fn` throws a FarmError with `code` whose message matches `re`. */
async function refused(fn: () => unknown, code: string, re: RegExp) {
  await assert.rejects(async () => fn(), (err: unknown) => {
    assert.ok(err instanceof FarmError, String(err));
    assert.equal(err.code, code);
    assert.match(err.message, re);
    return true;
  });
}

test('fed peers - the store round-trips: site, listener, peers with their DMZ seeds, written 0600 with nothing left beside it', async (t) => {
  const data = await tmp(t);
  assert.equal(await readSiteStore(data), null, 'no store: not a linked site');
  await ensureSite(data, 'studio', LISTEN);
  const v1 = await addPeer(data, { name: 'v1', role: PeerRole.Leaf, password: newLeafPassword(), allowUnsigned: true });
  const hubKey = aKey();
  await addPeer(data, { name: 'up-hub', role: PeerRole.Hub, url: 'nats-leaf://hub.example:7422', password: newLeafPassword(), publicKey: hubKey });
  const s = await readSiteStore(data);
  assert.equal(s?.site, 'studio');
  assert.deepEqual(s?.listen, LISTEN);
  assert.deepEqual(s?.peers.map((p) => [p.name, p.role]), [['v1', 'leaf'], ['up-hub', 'hub']]);
  assert.equal(s?.peers[0]?.dmzSeed, v1.dmzSeed);
  assert.match(v1.dmzSeed, /^SU[A-Z2-7]{56}$/);
  assert.equal(s?.peers[0]?.allowUnsigned, true);
  assert.equal(s?.peers[1]?.publicKey, hubKey);
  assert.equal(((await stat(siteStorePath(data))).mode & 0o777).toString(8), '600');
  assert.deepEqual((await readdir(join(data, 'fed'))).sort(), ['site.json'], 'no temp or lock file left');

  // a site keeps its name; a peer is recorded once
  await refused(() => ensureSite(data, 'other'), 'RB_BAD_PEER', /is site 'studio', not 'other'/);
  await refused(() => addPeer(data, { name: 'v1', role: PeerRole.Leaf, password: newLeafPassword() }), 'RB_BAD_PEER', /'v1' is already a peer/);
  // a listener given again replaces the old one; none given keeps it
  await ensureSite(data, 'studio');
  assert.deepEqual((await readSiteStore(data))?.listen, LISTEN);

  assert.equal(await removePeer(data, 'v1'), true);
  assert.equal(await removePeer(data, 'v1'), false);
  assert.deepEqual((await readSiteStore(data))?.peers.map((p) => p.name), ['up-hub']);
});

test('fed peers - a damaged store is refused naming the file and the field', async (t) => {
  const data = await tmp(t);
  await ensureSite(data, 'studio', LISTEN);
  await addPeer(data, { name: 'v1', role: PeerRole.Leaf, password: newLeafPassword() });
  const good = JSON.parse(await readFile(siteStorePath(data), 'utf8')) as Record<string, unknown> & { peers: Record<string, unknown>[] };
  const cases: [string, (d: typeof good) => unknown, RegExp][] = [
    ['not JSON', () => '{ nope', /site\.json: not JSON/],
    ['kind', (d) => ({ ...d, kind: 'other' }), /"kind" must be "renderbus-site"/],
    ['version', (d) => ({ ...d, v: 2 }), /"v" must be 1/],
    ['site', (d) => ({ ...d, site: 'Studio' }), /"site" must be a site name/],
    ['listen', (d) => ({ ...d, listen: { host: '0.0.0.0', port: 7422 } }), /"listen" must be \{ host, port, advertise \}/],
    ['advertise', (d) => ({ ...d, listen: { ...LISTEN, advertise: 'nats://x:1' } }), /advertise 'nats:\/\/x:1' must be the public host:port/],
    ['peers', (d) => ({ ...d, peers: {} }), /"peers" must be a list/],
    ['role', (d) => ({ ...d, peers: [{ ...d.peers[0], role: 'boss' }] }), /peers\[0\]\.role must be "hub" or "leaf"/],
    ['seed', (d) => ({ ...d, peers: [{ ...d.peers[0], dmzSeed: 'SUNOPE' }] }), /peers\[0\]\.dmzSeed is not a user nkey seed/],
    ['password', (d) => ({ ...d, peers: [{ ...d.peers[0], password: 'short' }] }), /peer 'v1': the leaf password must be 24 to 128/],
    ['password type', (d) => ({ ...d, peers: [{ ...d.peers[0], password: 42 }] }), /peers\[0\]\.password must be a string/],
    ['key', (d) => ({ ...d, peers: [{ ...d.peers[0], publicKey: 'abc' }] }), /peers\[0\]\.publicKey is not an ed25519 public key/],
    ['unsigned', (d) => ({ ...d, peers: [{ ...d.peers[0], allowUnsigned: 'yes' }] }), /peers\[0\]\.allowUnsigned must be true or false/],
    ['hub url', (d) => ({ ...d, peers: [{ ...d.peers[0], role: 'hub', url: 'http://x' }] }), /peer 'v1' is a hub: its url 'http:\/\/x' must be nats-leaf/],
    ['own name', (d) => ({ ...d, peers: [{ ...d.peers[0], name: 'studio' }] }), /peer 'studio' is this site itself/],
    ['leaf without listener', (d) => ({ ...d, listen: undefined }), /has leaf peers but no leaf listener/],
  ];
  for (const [what, change, re] of cases) {
    const doc = change(good);
    await writeFile(siteStorePath(data), typeof doc === 'string' ? doc : JSON.stringify(doc));
    await refused(() => readSiteStore(data), 'RB_BAD_PEER', re).catch((err: Error) => assert.fail(`${what}: ${err.message}`));
    await refused(() => readSiteStore(data), 'RB_BAD_PEER', /site\.json/);
  }
  // the writer refuses what the reader would: nothing half-valid reaches the disk
  await writeFile(siteStorePath(data), JSON.stringify(good));
  const before = await readFile(siteStorePath(data), 'utf8');
  const s = (await readSiteStore(data))!;
  await refused(() => writeSiteStore(data, { ...s, peers: [{ ...s.peers[0]!, name: 'A B' }] }), 'RB_BAD_PEER', /peer name 'A B' is not a subject token/);
  assert.equal(await readFile(siteStorePath(data), 'utf8'), before);
});

test("fed peers - a peer's site key is trusted on first use; another key later is refused and not stored", async (t) => {
  const data = await tmp(t);
  await ensureSite(data, 'studio', LISTEN);
  await addPeer(data, { name: 'v1', role: PeerRole.Leaf, password: newLeafPassword() });
  const k1 = aKey();
  assert.equal(await setPeerKey(data, 'v1', k1), 'stored');
  assert.equal(await setPeerKey(data, 'v1', k1), 'unchanged');
  await refused(() => setPeerKey(data, 'v1', aKey()), 'RB_BAD_PEER', /another site key than the one on record/);
  assert.equal((await readSiteStore(data))?.peers[0]?.publicKey, k1);
  await refused(() => setPeerKey(data, 'v2', k1), 'RB_BAD_PEER', /'v2' is not a peer/);
  await refused(() => setPeerKey(data, 'v1', 'not-a-key'), 'RB_BAD_PEER', /not an ed25519 public key/);
});

test('fed peers - concurrent writers do not lose one another\'s peer', async (t) => {
  const data = await tmp(t);
  await ensureSite(data, 'studio', LISTEN);
  const names = Array.from({ length: 8 }, (_, i) => `v${i}`);
  await Promise.all(names.map((name) => addPeer(data, { name, role: PeerRole.Leaf, password: newLeafPassword() })));
  assert.deepEqual((await readSiteStore(data))?.peers.map((p) => p.name).sort(), names);
});

test('fed peers - the config is generated from the store: DMZ per peer with our link key, leaf users, remotes, listener', async (t) => {
  const data = await tmp(t);
  await ensureSite(data, 'studio', LISTEN);
  const v1 = await addPeer(data, { name: 'v1', role: PeerRole.Leaf, password: newLeafPassword() });
  const links = linksConfig(linksOf((await readSiteStore(data))!));
  const text = authConfig([], links);
  assert.match(text, /FED_V1 \{/);
  assert.ok(text.includes(`{ nkey: "${dmzPublicKey(v1.dmzSeed)}" }`), 'our own user in the DMZ is the public half of the stored seed');
  assert.ok(!text.includes(v1.dmzSeed), 'the seed never reaches the server config');
  assert.ok(text.includes(`{ user: "leaf-v1", password: "${v1.password}"`));
  assert.match(text, /listen: "0\.0\.0\.0:7422"\n {2}advertise: "farm\.studio\.example:7422"/);

  // a listener and no peer yet: the leafnodes block is already there, so a first invitation is a reload
  const bare = await tmp(t);
  await ensureSite(bare, 'studio', LISTEN);
  const none = linksConfig(linksOf((await readSiteStore(bare))!));
  assert.deepEqual(none.leafnodes, links.leafnodes, 'inviting a leaf does not change the leafnodes block');

  const vendor = await tmp(t);
  await ensureSite(vendor, 'v1');
  const hub = await addPeer(vendor, { name: 'studio', role: PeerRole.Hub, url: 'nats-leaf://farm.studio.example:7422', password: v1.password, publicKey: aKey() });
  const vtext = authConfig([], linksConfig(linksOf((await readSiteStore(vendor))!)));
  assert.ok(vtext.includes(`"nats-leaf://leaf-v1:${hub.password}@farm.studio.example:7422", account: FED_STUDIO`));
});

const invitation = (o: Partial<Invitation> = {}): Invitation => ({ hub: 'studio', url: 'nats-leaf://farm.studio.example:7422', peer: 'v1', password: newLeafPassword(), hubKey: aKey(), ...o });
const rawToken = (body: unknown, prefix = 'rbinv1.') => `${prefix}${Buffer.from(JSON.stringify(body)).toString('base64url')}`;

test('fed peers - an invitation token round-trips, and is one shell-safe line', () => {
  const inv = invitation();
  const token = encodeInvitation(inv);
  assert.match(token, /^rbinv1\.[A-Za-z0-9_-]+$/);
  assert.deepEqual(decodeInvitation(token), inv);
  assert.deepEqual(decodeInvitation(`  ${token}\n`, { site: 'v1' }), inv, 'pasted with spaces and a newline');
});

test('fed peers - every bad token is refused saying what is wrong', async () => {
  const good = invitation();
  const cases: [string, string, RegExp, { site?: string }?][] = [
    ['empty', '', /'' is not an invitation token/],
    ['a credential', '{"kind":"renderbus-credentials"}', /is not an invitation token \(they start with rbinv1\./],
    ['version', rawToken({ ...good, v: 2 }, 'rbinv2.'), /version 2 is not one this renderbus reads/],
    ['cut', `${encodeInvitation(good).slice(0, 40)}`, /the token is damaged \(not JSON/],
    ['wrapped', `${encodeInvitation(good).slice(0, 40)} ${encodeInvitation(good).slice(40)}`, /characters outside base64url/],
    ['inner version', rawToken({ ...good, v: 3 }), /does not say version 1/],
    ['bad url', rawToken({ ...good, v: 1, url: 'http://farm.studio.example:7422' }), /url 'http:\/\/farm\.studio\.example:7422' is not nats-leaf:\/\/host:port/],
    ['user in url', rawToken({ ...good, v: 1, url: 'nats-leaf://u:p@farm:7422' }), /is not nats-leaf:\/\/host:port/],
    ['no password', rawToken({ ...good, v: 1, password: undefined }), /leaf password is missing/],
    ['bad key', rawToken({ ...good, v: 1, hubKey: 'AAAA' }), /site key is missing or not an ed25519/],
    ['bad hub', rawToken({ ...good, v: 1, hub: 'Studio!' }), /hub 'Studio!' is not a site name/],
    ['hub is peer', rawToken({ ...good, v: 1, peer: 'studio' }), /hub and peer are both 'studio'/],
    ['for another site', encodeInvitation(good), /it is for site 'v1', and this site is 'v2'/, { site: 'v2' }],
    ['name clash', encodeInvitation(invitation({ peer: 'v9' })), /the inviting site is named 'studio', like this one/, { site: 'studio' }],
  ];
  for (const [what, token, re, o] of cases) {
    await refused(() => decodeInvitation(token, o), 'RB_BAD_ARGUMENT', re).catch((err: Error) => assert.fail(`${what}: ${err.message}`));
  }
});

test("fed peers - the hub's site key in an invitation is the one loadSiteKey keeps", async (t) => {
  const data = await tmp(t);
  const key = await loadSiteKey(data);
  assert.equal(decodeInvitation(encodeInvitation(invitation({ hubKey: key.publicKey }))).hubKey, (await loadSiteKey(data)).publicKey);
});

test('fed peers - sites lists the stored peers with their link status, unknown when the link service did not answer', () => {
  const store: SiteStore = {
    site: 'studio',
    listen: LISTEN,
    peers: [
      { name: 'v1', role: PeerRole.Leaf, password: newLeafPassword(), dmzSeed: 'S'.repeat(58), addedAt: 1 },
      { name: 'v2', role: PeerRole.Leaf, password: newLeafPassword(), dmzSeed: 'S'.repeat(58), addedAt: 2 },
    ],
  };
  const none = mergeLinks(store, null);
  assert.deepEqual(none.map((r) => [r.name, r.state]), [['v1', NO_ANSWER], ['v2', NO_ANSWER]]);
  const up = { peer: 'v1', state: 'up' as const, since: 5, rttMs: 12, outgoing: { bundles: 1, bytes: 10 }, incoming: { bundles: 0, bytes: 0 }, bytesOut: 3, bytesIn: 4 };
  const rows = mergeLinks(store, [up]);
  assert.equal(rows[0]?.state, 'up');
  assert.equal(rows[0]?.link?.rttMs, 12);
  assert.match(rows[1]!.state, /unknown \(the link service does not know this peer yet\)/);
  assert.ok(!JSON.stringify(rows).includes(store.peers[0]!.password), 'no password in what sites shows');
  assert.ok(!JSON.stringify(rows).includes('dmzSeed'), 'no seed in what sites shows');
});

test('fed peers - how a running site applies a store change: a leaf peer is a reload, a hub or the listener a restart, a key nothing', async (t) => {
  const hub = await tmp(t);
  const bare = await ensureSite(hub, 'studio', LISTEN);
  await addPeer(hub, { name: 'v1', role: PeerRole.Leaf, password: newLeafPassword() });
  const withV1 = (await readSiteStore(hub))!;
  assert.equal(linkChange(bare, withV1), LinkChange.Reload, 'invite at a hub');
  assert.equal(linkChange(withV1, bare), LinkChange.Reload, 'remove a leaf at a hub');
  await setPeerKey(hub, 'v1', aKey());
  assert.equal(linkChange(withV1, (await readSiteStore(hub))!), LinkChange.Nothing, 'a key recorded');
  assert.equal(linkChange(bare, { ...bare, listen: { ...LISTEN, advertise: 'other.example:7422' } }), LinkChange.Restart, 'the listener');

  const vendor = await tmp(t);
  const v = await ensureSite(vendor, 'v1');
  await addPeer(vendor, { name: 'studio', role: PeerRole.Hub, url: 'nats-leaf://farm.studio.example:7422', password: newLeafPassword() });
  const joined = (await readSiteStore(vendor))!;
  assert.equal(linkChange(v, joined), LinkChange.Restart, 'join: a remote to dial');
  assert.equal(linkChange(joined, v), LinkChange.Restart, 'remove the hub');
  assert.equal(linkChange(null, v), LinkChange.Restart, 'a farm that was no site');
});
