import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { encodeAny, Role, subjects } from '../../protocol/index.ts';
import { localCredsPath, readCredentials } from '../../sites/auth/index.ts';
import { loadSiteKey, readSiteStore } from '../../sites/links/index.ts';
import { CLI, freePort, waitUntil } from '../helpers/farm.ts';
import { rbIn as rb, startUp, stopUp, type UpProcess as Up } from '../helpers/site-process.ts';
import { waitDelivered } from '../helpers/fed-sites.ts';
import { loginOptions } from '../helpers/nats-server.ts';


/** A connection into a site's FARM account as one of the principals `up --site` made for itself. */
async function connectLocal(data: string, url: string, role: Role, name: string): Promise<NatsConnection> {
  const creds = await readCredentials(localCredsPath(data, { role, name }));
  return connect({ servers: url, ...loginOptions(creds), maxReconnectAttempts: -1, reconnectTimeWait: 250 });
}

test('fed linking - up --site at a studio and a vendor, invite and join: the leaf link comes up; sites, credentials and tail on a linked site', { timeout: 300_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'rb-fed-link-'));
  const conns: NatsConnection[] = [];
  const ups: Up[] = [];
  t.after(async () => {
    for (const c of conns) await c.close().catch(() => {});
    for (const u of ups.reverse()) await stopUp(u);
    await rm(dir, { recursive: true, force: true });
  });
  const studioData = join(dir, 'studio');
  const v1Data = join(dir, 'v1');
  const leafPort = await freePort();

  // a hub needs --advertise with its listener: refused before anything starts
  const noAdvertise = rb(dir, '--data', studioData, '--site', 'studio', 'up', '--leaf-listen', `127.0.0.1:${leafPort}`);
  assert.equal(noAdvertise.code, 2, noAdvertise.stderr);
  assert.match(noAdvertise.stderr, /--leaf-listen needs --advertise HOST:PORT, the address the peers dial/);

  const noSite = rb(dir, '--data', studioData, 'up', '--leaf-listen', `127.0.0.1:${leafPort}`, '--advertise', `127.0.0.1:${leafPort}`);
  assert.equal(noSite.code, 2, noSite.stderr);
  assert.match(noSite.stderr, /--leaf-listen, --advertise and --keep-inputs are for a linked site: give --site NAME too/);

  const studio = await startUp(dir, studioData, ['--site', 'studio', '--leaf-listen', `127.0.0.1:${leafPort}`, '--advertise', `127.0.0.1:${leafPort}`]);
  ups.push(studio);
  const v1 = await startUp(dir, v1Data, ['--site', 'v1']);
  ups.push(v1);
  assert.match(studio.out(), /links +leaf listener 127\.0\.0\.1:\d+, advertised as 127\.0\.0\.1:\d+; peers: none yet/);
  assert.equal((await readSiteStore(studioData))?.site, 'studio');

  // invite at the studio: a reload (the listener is there already); the token alone on stdout
  const invited = rb(dir, '--data', studioData, 'site', 'invite', 'v1');
  assert.equal(invited.code, 0, invited.stderr);
  const token = invited.stdout.trim();
  assert.match(token, /^rbinv1\.[A-Za-z0-9_-]+$/);
  assert.match(invited.stderr, /reloads its NATS server now \(v1's account added\)/);
  assert.match(invited.stderr, /site join rbinv1\./);

  // a bad token is refused, saying why, and nothing is recorded
  const bad = rb(dir, '--data', v1Data, 'site', 'join', `${token.slice(0, 30)}`);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /invitation: the token is damaged/);
  const wrongSite = rb(dir, '--data', studioData, 'site', 'join', token);
  assert.equal(wrongSite.code, 2);
  assert.match(wrongSite.stderr, /invitation: the inviting site is named 'studio', like this one/);
  assert.deepEqual((await readSiteStore(v1Data))?.peers, []);

  // join at the running vendor: its nats-server is restarted to dial the studio
  const joinStarted = Date.now();
  const joined = rb(dir, '--data', v1Data, 'site', 'join', token);
  t.diagnostic(`join took ${Date.now() - joinStarted} ms, restart of v1's nats-server included`);
  assert.equal(joined.code, 0, joined.stderr);
  assert.match(joined.stderr, /restarted its NATS server \(to dial 'studio'\)/);
  const v1Store = await readSiteStore(v1Data);
  assert.equal(v1Store?.peers[0]?.name, 'studio');
  assert.equal(v1Store?.peers[0]?.publicKey, (await loadSiteKey(studioData)).publicKey, "the studio's site key, from the invitation");

  // the link is up: what the studio's link sends to v1 arrives at v1's link, and back
  const studioLink = await connectLocal(studioData, studio.farm.url, Role.SiteLink, 'link');
  const v1Link = await connectLocal(v1Data, v1.farm.url, Role.SiteLink, 'link');
  conns.push(studioLink, v1Link);
  const tookMs = await waitDelivered(studioLink, v1Link, subjects.fed('v1', 'studio', 'x'), undefined, 30_000);
  await waitDelivered(v1Link, studioLink, subjects.fed('studio', 'v1', 'x'), undefined, 30_000);
  t.diagnostic(`link up ${tookMs} ms after the join returned`);
  const studioNow = JSON.parse(await readFile(join(studioData, 'farm.json'), 'utf8')) as { natsPid: number };
  assert.equal(studioNow.natsPid, studio.farm.natsPid, 'the invitation was a reload at the studio, not a restart');

  // sites: the stored peer merged with what the site's own link service says of it
  const sitesJson = () => JSON.parse(rb(dir, '--data', studioData, 'sites', '--json').stdout) as { answered: boolean; peers: { name: string; role: string; state: string; link?: { rttMs?: number } }[] };
  const up = await waitUntil('the studio\'s link service to see v1 up', () => {
    const j = sitesJson();
    return j.answered && j.peers[0]?.state === 'up' && j.peers[0].link?.rttMs !== undefined ? j : undefined;
  }, 30_000, 300);
  assert.deepEqual(up.peers.map((p) => [p.name, p.role, p.state]), [['v1', 'leaf', 'up']]);
  const listed = rb(dir, '--data', studioData, 'sites');
  assert.ok(!listed.stdout.includes((await readSiteStore(studioData))!.peers[0]!.password), 'sites never shows the leaf password');
  assert.match(listed.stdout, /v1 +leaf \(dials us\) +up /);
  // v1's site key came over the link (its first hello) and is on record at the studio
  const v1Key = (await loadSiteKey(v1Data)).publicKey;
  await waitUntil('v1\'s key recorded at the studio', async () => (await readSiteStore(studioData))?.peers[0]?.publicKey === v1Key, 30_000, 200);
  const one = rb(dir, '--data', studioData, 'site', 'v1');
  assert.equal(one.code, 0, one.stderr);
  assert.match(one.stdout, /state +up since/);
  assert.match(one.stdout, new RegExp(`site key +${v1Key.slice(0, 16)}`));
  const atV1 = rb(dir, '--data', v1Data, 'site', 'studio');
  assert.match(atV1.stdout, new RegExp(`role +hub: this site dials nats-leaf://127\\.0\\.0\\.1:${leafPort}`));

  // an operator tails what crosses: rb.fed.> in FARM is this site's links' traffic
  const tail = spawn(process.execPath, [CLI, '--data', studioData, 'tail', 'rb.fed.>'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let tailOut = '';
  tail.stdout.on('data', (d: Buffer) => (tailOut += d.toString()));
  tail.stderr.on('data', (d: Buffer) => (tailOut += d.toString()));
  t.after(() => void tail.kill('SIGKILL'));
  await waitUntil('the tail to subscribe', () => tailOut.includes('tailing rb.fed.>') || tail.exitCode !== null, 20_000);
  await waitUntil('the tail to show what v1 sends', () => {
    v1Link.publish(subjects.fed('studio', 'v1', 'hello'), encodeAny({ from: 'v1' }));
    return tailOut.includes('rb.fed.studio.v1.hello') || tail.exitCode !== null;
  }, 20_000, 200);
  assert.doesNotMatch(tailOut, /Permissions Violation|refused/i, tailOut);
  assert.match(tailOut, /rb\.fed\.studio\.v1\.hello/);

  // a credential added on a linked site: the rewrite keeps the links, so the reload is taken
  // (nats-server 2.9.10 refuses a whole reload that would drop the leafnodes block)
  const added = rb(dir, '--data', studioData, 'credentials', 'add', 'artist', 'ann', '--out', join(dir, 'ann.creds'));
  assert.equal(added.code, 0, added.stderr);
  const ann = await readCredentials(join(dir, 'ann.creds'));
  const annNc = await waitUntil('the new credential to get in', () => connect({ servers: studio.farm.url, ...loginOptions(ann), maxReconnectAttempts: 0 }).catch(() => undefined), 10_000, 200);
  conns.push(annNc);
  await waitDelivered(studioLink, v1Link, subjects.fed('v1', 'studio', 'after-credentials'), undefined, 20_000);

  // a vendor that joins before its farm ever ran: the store takes the invitation's name, and a
  // plain `up` (no --site) in that data directory runs it linked
  const v2Data = join(dir, 'v2');
  const v2Token = rb(dir, '--data', studioData, 'site', 'invite', 'v2').stdout.trim();
  const v2Joined = rb(dir, '--data', v2Data, 'site', 'join', v2Token);
  assert.equal(v2Joined.code, 0, v2Joined.stderr);
  assert.match(v2Joined.stderr, /Start the site to open the link: .*--site v2 up/);
  assert.equal((await readSiteStore(v2Data))?.site, 'v2');
  const v2 = await startUp(dir, v2Data, []);
  ups.push(v2);
  assert.match(v2.out(), /renderbus farm 'v2' is up/);
  assert.match(v2.out(), /links +peers: studio/);
  const v2Link = await connectLocal(v2Data, v2.farm.url, Role.SiteLink, 'link');
  conns.push(v2Link);
  await waitDelivered(studioLink, v2Link, subjects.fed('v2', 'studio', 'x'), undefined, 30_000);
  await stopUp(v2);

  // unlinking: at v1, the remote goes (a restart); at the studio, v1's account goes (a reload)
  const v1Removed = rb(dir, '--data', v1Data, 'site', 'remove', 'studio');
  assert.equal(v1Removed.code, 0, v1Removed.stderr);
  assert.match(v1Removed.stderr, /restarted its NATS server \(no link to 'studio' any more\)/);
  assert.doesNotMatch(await readFile(join(v1Data, 'nats', 'auth.conf'), 'utf8'), /remotes|FED_STUDIO/);
  const studioRemoved = rb(dir, '--data', studioData, 'site', 'remove', 'v1');
  assert.equal(studioRemoved.code, 0, studioRemoved.stderr);
  assert.match(studioRemoved.stderr, /reloads its NATS server now \(no link to 'v1' any more\)/);
  await waitUntil("the studio's config to lose v1's account", async () => !(await readFile(join(studioData, 'nats', 'auth.conf'), 'utf8')).includes('FED_V1'), 10_000);
  assert.equal(rb(dir, '--data', studioData, 'site', 'remove', 'v2').code, 0);
  const none = rb(dir, '--data', studioData, 'sites');
  assert.match(none.stdout, /site 'studio' has no peers yet/);
  const unknownPeer = rb(dir, '--data', studioData, 'site', 'remove', 'v1');
  assert.equal(unknownPeer.code, 2);
  assert.match(unknownPeer.stderr, /'v1' is not a peer of site 'studio'/);
});
