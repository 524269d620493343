import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { NatsConnection } from '@nats-io/transport-node';
import { call } from '../../actors/bus/index.ts';
import { startRegistry } from '../../actors/registry/index.ts';
import { startSimulatedFarm, type SimulatedFarm } from '../../actors/render-server/index.ts';
import { startScheduler, type SchedulerHandle } from '../../actors/scheduler/index.ts';
import { codecs, FarmError, parseFrames, PROTOCOL_MAJOR as v, Role, subjects, type JobDetail, type JobSpec, type PackageInfo } from '../../protocol/index.ts';
import { silentLogger } from '../../sites/logger.ts';
import { MAX_QUOTES_IN_FLIGHT, serveQuoteAsker, serveQuotes } from '../../sites/quotes/index.ts';
import { describeJob } from '../../tools/cli/job.ts';
import { explainWhy } from '../../tools/cli/why.ts';
import { paint } from '../../tools/cli/format.ts';
import { startFedSites, waitLinkUp, type FedSites } from '../helpers/fed-sites.ts';
import { waitUntil } from '../helpers/farm.ts';

/*
 * Quotes and `site: auto` across three real nats-servers linked by leaf nodes (test/helpers/
 * fed-sites.ts): at each site a real registry, a real scheduler and simulated render hosts (real
 * render servers whose slots render by waiting), and the quote services of sites/quotes on each
 * site's link credential. The studio has 1 slot with POV-Ray; v1 is slow (1 slot) but has Blender;
 * v2 is fast (4 slots) without Blender. v1 charges 1.00 EUR per core-hour, v2 3.00.
 */

const log = silentLogger();
const POVRAY: PackageInfo = { name: 'povray', version: '3.7.0.10' };
const BLENDER: PackageInfo = { name: 'blender', version: '4.1' };
const QUOTE_WAIT_MS = 1_500;

let fed: FedSites;
let artist: NatsConnection;
const stops: (() => Promise<unknown>)[] = [];
const quoteServices = new Map<string, { stop(): void }>();
const schedulers = new Map<string, SchedulerHandle>();
let scene: string;
let outRoot: string;

/** The studio's scheduler: peers v1 and v2, and the overflow policy naming v2. */
const studioOptions = { peers: ['v1', 'v2'], outsourceOverflow: ['v2'], quoteTimeoutMs: QUOTE_WAIT_MS };

async function startSite(name: string, peers: string[], slots: number, packages: PackageInfo[]): Promise<void> {
  const s = fed.site(name);
  const [regNc, schedNc, hostsNc, linkNc] = await Promise.all([s.connectAs(Role.Registry), s.connectAs(Role.Scheduler), s.connectAs(Role.RenderServer), s.connectAs(Role.SiteLink)]);
  const registry = await startRegistry({ nc: regNc, site: name, log, announceMs: 500 });
  const scheduler: SchedulerHandle = await startScheduler({ nc: schedNc, site: name, log, ...(name === 'studio' ? studioOptions : { peers, quoteTimeoutMs: QUOTE_WAIT_MS }) });
  schedulers.set(name, scheduler);
  const hosts: SimulatedFarm = startSimulatedFarm({ nc: hostsNc, site: name, log, hosts: 1, slots, frameMs: 100, jitter: 0, heartbeatMs: 1_000, spreadMs: 0, hostPrefix: `${name}-`, packages });
  await hosts.ready;
  if (name === 'studio') {
    const asker = serveQuoteAsker({ site: name, nc: linkNc, peers: () => peers, log });
    stops.push(async () => asker.stop());
  } else {
    quoteServices.set(name, serveQuotes({ site: name, dataDir: s.dir, nc: linkNc, peers, log }));
  }
  stops.push(() => schedulers.get(name)!.stop(), () => hosts.stop({ abandon: true }), () => registry.stop(), ...[regNc, schedNc, hostsNc, linkNc].map((c) => () => c.close()));
  const op = await s.connectAs(Role.Operator);
  stops.push(() => op.close());
  await waitUntil(`${name}'s simulated host registered`, async () => {
    const b = await call(op, subjects.regList(name), codecs.listRequest, { v }, codecs.listReply, { timeoutMs: 1_000 }).catch(() => undefined);
    return b?.hosts.length === 1;
  }, 20_000);
}

before(async () => {
  fed = await startFedSites();
  stops.push(() => fed.stop());
  const studio = fed.site('studio');
  scene = join(studio.dir, 'scenes', 'shot.pov');
  outRoot = join(studio.dir, 'out');
  await mkdir(join(studio.dir, 'scenes'), { recursive: true });
  await writeFile(scene, '#version 3.7; camera { location <0,0,-3> look_at 0 } sphere { 0, 1 pigment { rgb 1 } }\n');
  for (const [vendor, perCoreHourMinor] of [['v1', 100], ['v2', 300]] as const) {
    await mkdir(join(fed.site(vendor).dir, 'fed'), { recursive: true });
    await writeFile(join(fed.site(vendor).dir, 'fed', 'rates.json'), JSON.stringify({ currency: 'EUR', perCoreHourMinor, perGbMinor: 0, minimumMinor: 0 }));
  }
  await Promise.all([waitLinkUp(studio, fed.site('v1')), waitLinkUp(studio, fed.site('v2'))]);
  await startSite('studio', ['v1', 'v2'], 1, [POVRAY]);
  await startSite('v1', ['studio'], 1, [POVRAY, BLENDER]);
  await startSite('v2', ['studio'], 4, [POVRAY]);
  artist = await studio.connectAs(Role.Artist);
  stops.push(() => artist.close());
});

after(async () => {
  for (const s of stops.reverse()) await s().catch(() => {});
});

let n = 0;
async function submit(over: Partial<JobSpec>): Promise<string> {
  n += 1;
  const spec: JobSpec = { name: `auto-${n}`, scene, frames: '1-8', site: 'auto', output: { dir: join(outRoot, `auto-${n}`) }, ...over };
  const r = await call(artist, subjects.schedSubmit('studio', 'ann'), codecs.submitRequest, { v, spec }, codecs.submitReply, { timeoutMs: 10_000 });
  return r.jobId;
}

const jobOf = async (jobId: string): Promise<JobDetail> => (await call(artist, subjects.schedQuery('studio'), codecs.queryRequest, { v, what: 'job', jobId }, codecs.jobReply, { timeoutMs: 5_000 })).job;

/** Jobs placed so far (the restart test checks they stay where they were placed). */
const placedJobs: string[] = [];

async function placed(jobId: string): Promise<JobDetail> {
  const j = await waitUntil(`job ${jobId} placed`, async () => {
    const x = await jobOf(jobId);
    return x.placement ? x : undefined;
  }, 20_000, 50);
  placedJobs.push(jobId);
  return j;
}

const plain = paint({ isTTY: false } as NodeJS.WriteStream);

test('fed-quotes - site: auto asks both vendors: the fast one (4 slots) wins, and why shows every quote', async (t) => {
  const t0 = performance.now();
  const jobId = await submit({});
  const j = await placed(jobId);
  t.diagnostic(`submit to placement (files hashed, two vendors quoted over their links, the place record written): ${Math.round(performance.now() - t0)} ms`);
  assert.equal(j.placement!.peer, 'v2', j.placement!.text);
  assert.equal(j.state, 'outsourced');
  assert.equal(j.outsourced?.site, 'v2');
  // 8 frames at the default 30 s: here and v1 one slot each (4 min), v2 four (1 min); v1 1.00 EUR per core-hour, v2 3.00
  assert.match(j.placement!.text, /^placed at v2: finishes in ~1 min for 0\.20 EUR; here: ~4 min \(1 slot, 0 frames ahead\); v1: ~4 min, 0\.07 EUR$/);
  const v1 = j.placement!.options.find((o) => o.site === 'v1')!;
  const v2 = j.placement!.options.find((o) => o.site === 'v2')!;
  assert.deepEqual([v1.slots, v2.slots], [1, 4]);
  assert.ok(v1.missingBytes! > 0 && v1.missingBytes === v2.missingBytes, 'neither vendor holds the scene yet: its bytes are to cross');
  const why = explainWhy(j, plain);
  assert.match(why, /outsourced to v2: 0\/8 frames back .*; placed at v2: finishes in ~1 min for 0\.20 EUR; here: .*; v1: ~4 min, 0\.07 EUR/, why);
});

test('fed-quotes - a job needing Blender goes to v1: v2 and here cannot render it, and why says what they lack', async (t) => {
  const t0 = performance.now();
  const jobId = await submit({ requirements: { packages: ['blender'] } });
  const j = await placed(jobId);
  t.diagnostic(`submit to placement, the scene hashed before: ${Math.round(performance.now() - t0)} ms`);
  assert.equal(j.placement!.peer, 'v1', j.placement!.text);
  assert.match(j.placement!.text, /^placed at v1: finishes in ~4 min for 0\.07 EUR; here: no host here can render it \(studio-0 needs blender, has no blender\); v2: cannot render it \(v2-0 needs blender, has no blender\)$/);
});

test('fed-quotes - a studio asking v1 for many quotes at once gets at most four answered at a time; the rest are refused, retryable', async () => {
  const link = await fed.site('studio').connectAs(Role.SiteLink);
  stops.push(() => link.close());
  const req = codecs.quoteRequest.encode({ v, jobId: 'flood', job: { frames: 1, renderer: 'povray', priority: 50, requirements: { packages: ['povray'] } }, files: [], at: Date.now() });
  const replies = await Promise.all(Array.from({ length: 12 }, async () => codecs.quoteReply.decode((await link.request(subjects.fedSvc('v1', 'studio', 'quote'), req, { timeout: 5_000 })).data)));
  const answered = replies.filter((r) => r.ok).length;
  const refused = replies.filter((r) => !r.ok && r.error.code === 'RB_TOO_MANY_REQUESTS' && r.error.retryable);
  assert.ok(answered >= MAX_QUOTES_IN_FLIGHT && answered < 12, `answered ${answered}`);
  assert.equal(answered + refused.length, 12);
});

test('fed-quotes - with a budget too small for either vendor it stays here, is queued normally and renders here', async () => {
  const jobId = await submit({ budget: '0.05 EUR' });
  const j = await placed(jobId);
  assert.equal(j.placement!.peer, undefined, j.placement!.text);
  assert.match(j.placement!.text, /^placed here: finishes in ~4 min \(1 slot, 0 frames ahead\); v1: 0\.07 EUR is over the budget of 0\.05 EUR; v2: 0\.20 EUR is over the budget of 0\.05 EUR$/);
  const done = await waitUntil('the job rendered here', async () => {
    const x = await jobOf(jobId);
    return x.state === 'done' ? x : undefined;
  }, 20_000, 100);
  assert.deepEqual(new Set(done.frames.map((f) => f.host)), new Set(['studio-0']));
  assert.match(explainWhy(done, plain), /where: placed here: finishes in ~4 min/);
});

test('fed-quotes - the overflow policy: a job without site renders here while the farm has room; submitted while it is busy, it goes to v2', async () => {
  const busy = await submit({ site: undefined, frames: '1-60', name: 'busy' });
  const running = await waitUntil('the first job rendering here', async () => {
    const j = await jobOf(busy);
    return j.counts.running > 0 || j.counts.done > 0 ? j : undefined;
  }, 10_000, 50);
  assert.equal(running.placement, undefined, 'room here: nobody was asked');
  const jobId = await submit({ site: undefined });
  const j = await placed(jobId);
  // measured here by now: 100 ms a frame; ~50 frames ahead on 1 slot, against v2's 4 slots at the studio's frame time
  assert.equal(j.placement!.peer, 'v2', j.placement!.text);
  assert.match(j.placement!.text, /^placed at v2: finishes in ~1 s for 0\.00 EUR; here: ~\d+ s \(1 slot, \d+ frames ahead\)$/);
  assert.equal(j.state, 'outsourced');
  assert.match(j.why!.text, /^outsourced to v2: 0\/8 frames back .*; sent by the site's policy: placed at v2: /);
  await call(artist, subjects.schedCtl('studio', 'ann'), codecs.ctlRequest, { v, action: 'cancel', jobId: busy }, codecs.ctlReply, { timeoutMs: 5_000 });
});

test('fed-quotes - a 40-frame auto + split job is divided between here and the vendors; the parent counts its parts\' frames; a cancel cascades', async (t) => {
  const t0 = performance.now();
  const jobId = await submit({ frames: '1-40', split: true, name: 'split' });
  const j = await placed(jobId);
  t.diagnostic(`submit to split: ${Math.round(performance.now() - t0)} ms; ${j.placement!.text}`);
  // the studio measured ~100 ms a frame here, which v1 and v2 quote too: 1, 1 and 4 slots, nothing ahead
  assert.match(j.placement!.text, new RegExp(`^split: frames 1-(\\d+) here \\(job ${jobId}-p1\\), \\d+-\\d+ at v1 \\(job ${jobId}-p2\\), \\d+-40 at v2 \\(job ${jobId}-p3\\); all finish in [^;]+; weighed whole: placed at v2: `), j.placement!.text);
  assert.equal(j.placement!.peer, undefined, 'the parent goes nowhere itself');
  const parts = j.parts!;
  assert.deepEqual(parts.map((p) => [p.jobId, p.site, p.here ?? false]), [[`${jobId}-p1`, 'studio', true], [`${jobId}-p2`, 'v1', false], [`${jobId}-p3`, 'v2', false]]);
  const sizes = parts.map((p) => p.counts.total);
  assert.equal(sizes.reduce((a, b) => a + b, 0), 40);
  assert.ok(sizes[2]! > sizes[0]! && sizes[2]! > sizes[1]! && sizes.every((x) => x >= 5), `v2 (4 slots) takes most: ${sizes}`);
  for (const p of parts) placedJobs.push(p.jobId); // the restart test checks them too
  const [here, atV1, atV2] = await Promise.all(parts.map((p) => jobOf(p.jobId)));
  assert.equal(here!.outputDir, j.outputDir);
  assert.equal(here!.partOf, jobId);
  assert.deepEqual([atV1!.state, atV1!.outsourced?.site, atV2!.state, atV2!.outsourced?.site], ['outsourced', 'v1', 'outsourced', 'v2']);
  // the local part renders here; v2's part comes back as the intake would tell it
  const intake = await fed.site('studio').connectAs(Role.Intake);
  stops.push(() => intake.close());
  const outputs = parseFrames(atV2!.spec.frames).map((frame) => ({ frame, path: join(j.outputDir, `frame_${String(frame).padStart(4, '0')}.png`) }));
  await call(intake, subjects.schedRemote('studio', 'v2'), codecs.remoteUpdate, { v, jobId: atV2!.jobId, bundleId: 'result-1', state: 'done', outputs, final: true, at: Date.now() }, codecs.remoteUpdateReply, { timeoutMs: 5_000 });
  const both = await waitUntil('the local part done and v2\'s back', async () => {
    const x = await jobOf(jobId);
    return x.counts.done === sizes[0]! + sizes[2]! ? x : undefined;
  }, 20_000, 100);
  assert.equal(both.state, 'rendering', 'one part still out: not done');
  // its frames are its parts': the local ones rendered here, v2's back, v1's queued there
  assert.deepEqual(both.frames.map((f) => f.frame), parseFrames('1-40'));
  assert.deepEqual(both.frames.filter((f) => f.state === 'done').length, sizes[0]! + sizes[2]!);
  assert.equal(both.frames[39]!.output, outputs.at(-1)!.path);
  assert.deepEqual(both.parts!.map((p) => p.state), ['done', 'outsourced', 'done']);
  // renderbus job lists the parts; a part says whose part it is
  const shown = describeJob(both, plain);
  assert.match(shown, new RegExp(`parts +${jobId}-p1  frames 1-${sizes[0]} here: done, ${sizes[0]}/${sizes[0]} done\n +${jobId}-p2  frames \\S+ at v1: outsourced, 0/${sizes[1]} done\n`), shown);
  assert.match(describeJob(await jobOf(atV1!.jobId), plain), new RegExp(`part of +job ${jobId} \\(split`));
  assert.match(explainWhy(both, plain), new RegExp(`split into 3 parts: ${jobId}-p1 ${sizes[0]}/${sizes[0]} here \\(done\\), ${jobId}-p2 0/${sizes[1]} at v1 \\(outsourced\\), ${jobId}-p3 ${sizes[2]}/${sizes[2]} at v2 \\(done\\)`));
  // cancel the parent: v1's part is cancelled too (its vendor told by the packer, as for any job)
  await call(artist, subjects.schedCtl('studio', 'ann'), codecs.ctlRequest, { v, action: 'cancel', jobId }, codecs.ctlReply, { timeoutMs: 5_000 });
  const [parent, v1Part] = await Promise.all([jobOf(jobId), jobOf(atV1!.jobId)]);
  assert.equal(parent.state, 'cancelled');
  assert.equal(v1Part.state, 'cancelled');
});

test('fed-quotes - a vendor that does not answer in time, and one whose link is cut, are skipped with the reason', async () => {
  // v2's quote service hangs: its subject is still served, but nothing answers
  quoteServices.get('v2')!.stop();
  const hung = await fed.site('v2').connectAs(Role.SiteLink);
  stops.push(() => hung.close());
  hung.subscribe(subjects.fedSvc('v2', 'studio', 'quote'), { callback: () => {} });
  await hung.flush();
  fed.proxy('v1').cut();
  const t0 = Date.now();
  const jobId = await submit({});
  const j = await placed(jobId);
  assert.equal(j.placement!.peer, undefined, j.placement!.text);
  assert.match(j.placement!.text, /^placed here: finishes in ~[^;]+; v1: did not answer[^;]*; v2: did not answer in 2 s$/);
  assert.ok(Date.now() - t0 < QUOTE_WAIT_MS + 5_000, 'the wait is bounded by the quote timeout');
});

test('fed-quotes - a restarted scheduler keeps every placement (the place records), and asks nobody again', async () => {
  const before = new Map((await Promise.all(placedJobs.map(jobOf))).map((j) => [j.jobId, j]));
  await schedulers.get('studio')!.stop();
  const nc = await fed.site('studio').connectAs(Role.Scheduler);
  stops.push(() => nc.close());
  // v1's link is cut and v2 is silent since the test before: a placement asked again would come out here
  schedulers.set('studio', await startScheduler({ nc, site: 'studio', log, ...studioOptions }));
  for (const jobId of placedJobs) {
    const j = await waitUntil(`job ${jobId} back after the restart`, () => jobOf(jobId).catch(() => undefined), 10_000, 100);
    const was = before.get(jobId)!;
    // a split job: the same parts, in the same states, each made once (from its place record)
    const parts = (x: JobDetail) => x.parts?.map((p) => [p.jobId, p.state, p.counts.done]);
    assert.deepEqual([j.state, j.placement?.peer, j.placement?.text, j.outsourced?.site, parts(j), j.partOf], [was.state, was.placement?.peer, was.placement?.text, was.outsourced?.site, parts(was), was.partOf], jobId);
  }
});

test('fed-quotes - the quote subjects are refused by the server to roles that may not ask', async () => {
  const refused = (e: unknown) => e instanceof FarmError && e.code === 'RB_FORBIDDEN';
  await assert.rejects(call(artist, subjects.linkQuotes('studio'), codecs.quotesRequest, { v, jobId: 'x', job: { frames: 1, renderer: 'povray', priority: 50, requirements: {} }, paths: [scene] }, codecs.quotesReply, { timeoutMs: 2_000 }), refused);
  await assert.rejects(call(artist, subjects.schedLoad('studio'), codecs.loadRequest, { v, renderer: 'povray', priority: 50 }, codecs.loadReply, { timeoutMs: 2_000 }), refused);
  await assert.rejects(call(artist, subjects.fedSvc('v1', 'studio', 'quote'), codecs.quoteRequest, { v, jobId: 'x', job: { frames: 1, renderer: 'povray', priority: 50, requirements: {} }, files: [], at: 0 }, codecs.quoteReply, { timeoutMs: 2_000 }), refused);
});
