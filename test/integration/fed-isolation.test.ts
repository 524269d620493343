import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Role, streams, subjects } from '../../protocol/index.ts';
import { natsServerBin } from '../../sites/nats-server.ts';
import { startFedSites, waitDelivered, waitLinkUp, type FedSites } from '../helpers/fed-sites.ts';
import { freePort, waitUntil } from '../helpers/farm.ts';

// Issue 14, "Linking sites" (docs/federation.md, Topology and accounts): what a vendor behind a
// leaf link can and cannot see or do. Every refusal here is nats-server's, from the generated
// accounts (sites/links/nats-config.ts); no renderbus code runs between the sites.

let f: FedSites;
const conns: NatsConnection[] = [];
const c = async (p: Promise<NatsConnection>) => {
  const nc = await p;
  conns.push(nc);
  return nc;
};
/** Connections: each site's link (FARM), the studio's operator (tails rb.studio.>), each site's own user in each DMZ. */
let studio: NatsConnection, studioOp: NatsConnection, studioSched: NatsConnection, v1: NatsConnection, v2: NatsConnection;
let studioDmzV1: NatsConnection, studioDmzV2: NatsConnection, v1Dmz: NatsConnection, v2Dmz: NatsConnection;

/** Subjects a connection received, in order. */
function record(nc: NatsConnection, subject: string): string[] {
  const seen: string[] = [];
  nc.subscribe(subject, { callback: (_e, m) => void seen.push(m.subject) });
  return seen;
}

/**
 * A new subscription's interest crosses the leaf (and the accounts' shadow subscriptions) a little
 * later: a probe on the same path that arrives, sent after it, proves the earlier one is in place.
 */
const primed = (from: NatsConnection, to: NatsConnection, subject: string) => waitDelivered(from, to, subject);

before(async () => {
  f = await startFedSites();
  studio = await c(f.hub.connectAs(Role.SiteLink));
  studioOp = await c(f.hub.connectAs(Role.Operator));
  studioSched = await c(f.hub.connectAs(Role.Scheduler));
  v1 = await c(f.site('v1').connectAs(Role.SiteLink));
  v2 = await c(f.site('v2').connectAs(Role.SiteLink));
  studioDmzV1 = await c(f.hub.connectDmz('v1'));
  studioDmzV2 = await c(f.hub.connectDmz('v2'));
  v1Dmz = await c(f.site('v1').connectDmz('studio'));
  v2Dmz = await c(f.site('v2').connectDmz('studio'));
  for (const v of f.vendors) await waitLinkUp(f.hub, v);
});

after(async () => {
  for (const nc of conns) await nc.close().catch(() => {});
  await f?.stop();
});

test('fed-isolation - v1 receives its own traffic and not v2\'s; no vendor sees studio-internal subjects', async () => {
  // a vendor's DMZ account receives everything its leaf carries: the widest view a vendor has
  const atV1 = record(v1Dmz, '>');
  const atV2 = record(v2Dmz, '>');
  await primed(studio, v1Dmz, subjects.fed('v1', 'studio', 'ready'));
  await primed(studio, v2Dmz, subjects.fed('v2', 'studio', 'ready'));
  studioOp.publish(subjects.schedSubmit('studio', 'op'), 'internal submit');
  studioSched.publish(subjects.jobEvent('studio', 'j9', 'done'), 'internal event');
  await studioOp.flush();
  await studioSched.flush();
  studio.publish(subjects.fed('v2', 'studio', 'job.j2.offer'), 'for v2');
  studio.publish(subjects.fed('v1', 'studio', 'job.j1.offer'), 'for v1');
  await waitUntil('each vendor to get its own offer', () => atV1.includes('rb.fed.v1.studio.job.j1.offer') && atV2.includes('rb.fed.v2.studio.job.j2.offer'), 10_000);
  await waitDelivered(studio, v1Dmz, subjects.fed('v1', 'studio', 'marker')); // anything sent before it has had its chance
  assert.ok(!atV1.some((s) => s.includes('.v2.')), `v1 saw v2's traffic: ${atV1.join(', ')}`);
  assert.ok(!atV2.some((s) => s.includes('.v1.')), `v2 saw v1's traffic: ${atV2.join(', ')}`);
  for (const seen of [atV1, atV2]) assert.ok(!seen.some((s) => s.startsWith('rb.studio.')), `a vendor saw studio-internal subjects: ${seen.join(', ')}`);
});

test('fed-isolation - a vendor cannot publish into the studio\'s farm subjects, nor send as another vendor', async () => {
  const farmSaw = record(studioOp, 'rb.studio.>');
  const fedSaw = record(studio, 'rb.fed.studio.*.>');
  await studioOp.flush();
  await primed(v1Dmz, studio, subjects.fed('studio', 'v1', 'ready'));
  await primed(v2, studio, subjects.fed('studio', 'v2', 'ready'));
  // v1 controls its own server: it sends from its DMZ, across the leaf, whatever it likes
  v1Dmz.publish(subjects.schedSubmit('studio', 'ann'), 'forged submit');
  v1Dmz.publish(subjects.schedCtl('studio', 'ann'), 'forged ctl');
  v1Dmz.publish(subjects.jobEvent('studio', 'j1', 'done'), 'forged event');
  v1Dmz.publish(subjects.fed('studio', 'v2', 'job.j2.status'), 'v1 spoofing v2');
  v1Dmz.publish(subjects.fed('studio', 'v1', 'job.j1.status'), 'v1 status');
  v2.publish(subjects.fed('studio', 'v2', 'job.j2.status'), 'v2 status');
  await waitUntil('the studio to get both vendors\' own status', () => fedSaw.includes('rb.fed.studio.v1.job.j1.status') && fedSaw.includes('rb.fed.studio.v2.job.j2.status'), 10_000);
  await waitDelivered(v1Dmz, studio, subjects.fed('studio', 'v1', 'marker'));
  await studioOp.flush();
  assert.deepEqual(farmSaw, [], 'a vendor\'s message reached the studio\'s farm subjects');
  assert.equal(fedSaw.filter((s) => s === 'rb.fed.studio.v2.job.j2.status').length, 1, `v1's spoof as v2 arrived: ${fedSaw.join(', ')}`);
});

test('fed-isolation - request/reply works both ways through the service imports; v1 cannot call v2\'s or the studio\'s service for v2', async () => {
  studio.subscribe(subjects.fedSvc('studio', 'v1', 'have'), { callback: (_e, m) => void m.respond('have-list for v1') });
  studio.subscribe(subjects.fedSvc('studio', 'v2', 'have'), { callback: (_e, m) => void m.respond('have-list for v2') });
  v1.subscribe(subjects.fedSvc('v1', 'studio', 'quote'), { callback: (_e, m) => void m.respond('quote from v1') });
  v2.subscribe(subjects.fedSvc('v2', 'studio', 'quote'), { callback: (_e, m) => void m.respond('quote from v2') });
  for (const nc of [studio, v1, v2]) await nc.flush();
  const ask = (nc: NatsConnection, subject: string, timeout = 1_000) => nc.request(subject, 'q', { timeout }).then((m) => m.string());
  // the service interest crosses the leaf like any other: ask until the first answer
  assert.equal(await waitUntil('v1 to reach the studio\'s service', () => ask(v1, subjects.fedSvc('studio', 'v1', 'have')), 15_000), 'have-list for v1');
  assert.equal(await waitUntil('the studio to reach v1\'s service', () => ask(studio, subjects.fedSvc('v1', 'studio', 'quote')), 15_000), 'quote from v1');
  assert.equal(await waitUntil('the studio to reach v2\'s service', () => ask(studio, subjects.fedSvc('v2', 'studio', 'quote')), 15_000), 'quote from v2');
  // from v1's DMZ, where v1 may send anything across
  await assert.rejects(ask(v1Dmz, subjects.fedSvc('studio', 'v2', 'have')), 'v1 called the studio as v2');
  await assert.rejects(ask(v1Dmz, subjects.fedSvc('v2', 'studio', 'quote')), 'v1 called v2\'s service');
  await assert.rejects(ask(v1Dmz, subjects.fedSvc('v2', 'v1', 'quote')), 'v1 reached v2 at all');
});

test('fed-isolation - v2 snooping _INBOX.> reads no replies of the studio and v1', async () => {
  studio.subscribe(subjects.fedSvc('studio', 'v1', 'ping'), { callback: (_e, m) => void m.respond('pong to v1') });
  v1.subscribe(subjects.fedSvc('v1', 'studio', 'ping'), { callback: (_e, m) => void m.respond('pong to studio') });
  await studio.flush();
  await v1.flush();
  const snooped: string[] = [];
  for (const s of ['_INBOX.>', '_R_.>', '>']) v2Dmz.subscribe(s, { callback: (_e, m) => void snooped.push(m.string()) });
  await primed(studio, v2Dmz, subjects.fed('v2', 'studio', 'ready'));
  const a = await waitUntil('v1 to ping the studio', () => v1.request(subjects.fedSvc('studio', 'v1', 'ping'), 'q', { timeout: 1_000 }).then((m) => m.string()), 15_000);
  const b = await waitUntil('the studio to ping v1', () => studio.request(subjects.fedSvc('v1', 'studio', 'ping'), 'q', { timeout: 1_000 }).then((m) => m.string()), 15_000);
  assert.deepEqual([a, b], ['pong to v1', 'pong to studio']);
  await waitDelivered(studio, v2Dmz, subjects.fed('v2', 'studio', 'marker'));
  assert.deepEqual(snooped.filter((s) => s.startsWith('pong')), [], 'v2 read replies meant for others');
});

test('fed-isolation - in the studio\'s domain v1 sees only its own DMZ: not the journal, not v2\'s outbox', async () => {
  const farmJsm = await jetstreamManager(studioSched);
  await farmJsm.streams.add({ name: streams.journal('studio'), subjects: [subjects.allJournal('studio')], storage: 'file' });
  for (const [nc, v] of [[studioDmzV1, 'v1'], [studioDmzV2, 'v2']] as const) {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: streams.fedOutbox, subjects: [`rbq.studio.${v}.>`], storage: 'file' });
  }
  const v1Hub = await jetstreamManager(v1Dmz, { domain: 'studio' });
  const names = await waitUntil('v1 to list the studio domain\'s streams', async () => {
    const list: string[] = [];
    for await (const n of v1Hub.streams.names()) list.push(n);
    return list;
  });
  assert.deepEqual(names, [streams.fedOutbox]);
  assert.deepEqual((await v1Hub.streams.info(streams.fedOutbox)).config.subjects, ['rbq.studio.v1.>'], 'v1 saw v2\'s outbox');
  await assert.rejects(v1Hub.streams.info(streams.journal('studio')), /not found/i);
  // v2 cannot reach v1's domain at all
  const v2ToV1 = await jetstreamManager(v2Dmz, { domain: 'v1', timeout: 1_500 }).catch((e: Error) => e);
  if (!(v2ToV1 instanceof Error)) await assert.rejects(v2ToV1.streams.info('ANY'));
});

test('fed-isolation - the leaf user cannot purge or delete the studio\'s outbox, and sourcing it still works', async () => {
  const hubJsm = await jetstreamManager(studioDmzV1);
  const out = 'RBFED_OUT_HARDENED';
  await hubJsm.streams.add({ name: out, subjects: ['rbq-hardened.studio.v1.>'], storage: 'file' });
  const js = jetstream(studioDmzV1);
  for (let i = 0; i < 3; i++) await js.publish(`rbq-hardened.studio.v1.${i}`, `m${i}`);
  const v1Hub = await jetstreamManager(v1Dmz, { domain: 'studio', timeout: 2_000 });
  await assert.rejects(v1Hub.streams.purge(out), 'v1 purged the studio outbox');
  await assert.rejects(v1Hub.streams.delete(out), 'v1 deleted the studio outbox');
  await assert.rejects(v1Hub.streams.deleteMessage(out, 1), 'v1 deleted a message of the studio outbox');
  assert.equal((await hubJsm.streams.info(out)).state.messages, 3, 'the outbox lost messages');
  // v1's inbox, in its own domain, sources the studio's outbox across domains
  const v1Jsm = await jetstreamManager(v1Dmz);
  await v1Jsm.streams.add({ name: streams.fedInbox, storage: 'file', sources: [{ name: out, external: { api: '$JS.studio.API', deliver: '' } }] });
  await waitUntil('v1\'s inbox to source the 3 messages', async () => (await v1Jsm.streams.info(streams.fedInbox)).state.messages === 3, 20_000);
});

/** A nats-server run by whoever dials the leaf port: an attacker's, configured by hand. */
async function rogueServer(dir: string, name: string, remoteUrl: string): Promise<{ url: string; log: () => string; stop: () => Promise<void> }> {
  const port = await freePort();
  const conf = join(dir, `${name}.conf`);
  await writeFile(conf, `server_name: ${name}\nlisten: "127.0.0.1:${port}"\nleafnodes { remotes: [ { url: ${JSON.stringify(remoteUrl)} } ] }\n`);
  const proc = spawn(natsServerBin(), ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr.on('data', (d: Buffer) => (log += d.toString()));
  const exited = once(proc, 'exit');
  await waitUntil(`${name} to listen`, () => /Server is ready/.test(log), 10_000);
  return {
    url: `127.0.0.1:${port}`,
    log: () => log,
    stop: async () => {
      proc.kill('SIGTERM');
      await exited;
    },
  };
}

test('fed-isolation - a leaf with no credentials lands in QUARANTINE and sees nothing; one with a wrong password is refused', async (t) => {
  const anon = await rogueServer(f.hub.dir, 'rogue-anon', `nats-leaf://127.0.0.1:${f.leafPort}`);
  t.after(anon.stop);
  const wrong = await rogueServer(f.hub.dir, 'rogue-wrong', `nats-leaf://leaf-v1:${'x'.repeat(43)}@127.0.0.1:${f.leafPort}`);
  t.after(wrong.stop);
  // the server's own word: the wrong password is refused, the anonymous leaf is connected (into QUARANTINE)
  await waitUntil('the hub to refuse the wrong password', () => /authentication error|Authorization Violation/i.test(wrong.log()), 15_000);
  await waitUntil('the hub to put the anonymous leaf in QUARANTINE', () => /for account "QUARANTINE"/.test(f.hub.log()), 15_000);
  const rogue = await c(connect({ servers: anon.url }));
  const saw = record(rogue, '>');
  await rogue.flush();
  const studioSaw = record(studio, 'rb.fed.studio.*.>');
  await primed(v1Dmz, studio, subjects.fed('studio', 'v1', 'ready'));
  rogue.publish(subjects.fed('studio', 'v1', 'job.j1.status'), 'rogue as v1');
  rogue.publish(subjects.schedSubmit('studio', 'ann'), 'rogue submit');
  await rogue.flush();
  studio.publish(subjects.fed('v1', 'studio', 'job.j1.offer'), 'for v1');
  studioSched.publish(subjects.jobEvent('studio', 'j1', 'done'), 'internal');
  await studioSched.flush();
  await waitDelivered(studio, v1Dmz, subjects.fed('v1', 'studio', 'marker'));
  await waitDelivered(v1Dmz, studio, subjects.fed('studio', 'v1', 'marker'));
  // what it published itself, on its own server, and nothing else
  assert.deepEqual(saw, [subjects.fed('studio', 'v1', 'job.j1.status'), subjects.schedSubmit('studio', 'ann')], 'the quarantined leaf saw traffic');
  assert.ok(!studioSaw.includes('rb.fed.studio.v1.job.j1.status'), 'the quarantined leaf reached the studio');
});

test('fed-isolation - a cut of the leaf and its restore bring the link back, through the proxy (advertise)', async () => {
  const px = f.proxy('v1');
  const before = px.connections;
  px.cut();
  // the server's word that the link is down: v1 logs the closed leaf
  const mark = f.site('v1').log().length;
  await waitUntil('v1 to see its leaf closed', () => /Leafnode connection closed/.test(f.site('v1').log().slice(mark)), 15_000);
  const t0 = Date.now();
  px.restore();
  await waitDelivered(studio, v1, subjects.fed('v1', 'studio', 'after-cut'));
  await waitDelivered(v1, studio, subjects.fed('studio', 'v1', 'after-cut'));
  const ms = Date.now() - t0;
  assert.ok(px.connections > before, 'the leaf came back around the proxy');
  console.log(`# link back ${ms} ms after the proxy was restored`);
});

test('fed-isolation - the studio cannot purge or delete v1\'s outbox either, and sources it across domains', async () => {
  const v1Jsm = await jetstreamManager(v1Dmz);
  const out = 'RBFED_OUT_V1';
  await v1Jsm.streams.add({ name: out, subjects: ['rbq-hardened.v1.studio.>'], storage: 'file' });
  const js = jetstream(v1Dmz);
  for (let i = 0; i < 3; i++) await js.publish(`rbq-hardened.v1.studio.${i}`, `m${i}`);
  const hubToV1 = await jetstreamManager(studioDmzV1, { domain: 'v1', timeout: 2_000 });
  await assert.rejects(hubToV1.streams.purge(out), 'the studio purged v1\'s outbox');
  await assert.rejects(hubToV1.streams.delete(out), 'the studio deleted v1\'s outbox');
  assert.equal((await v1Jsm.streams.info(out)).state.messages, 3, 'v1\'s outbox lost messages');
  const hubJsm = await jetstreamManager(studioDmzV1);
  await hubJsm.streams.add({ name: 'RBFED_IN_V1', storage: 'file', sources: [{ name: out, external: { api: '$JS.v1.API', deliver: '' } }] });
  await waitUntil('the studio\'s inbox to source the 3 messages', async () => (await hubJsm.streams.info('RBFED_IN_V1')).state.messages === 3, 20_000);
});
