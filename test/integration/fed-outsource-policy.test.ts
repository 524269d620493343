import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import pino from 'pino';
import { chromium, type Browser } from 'playwright-core';
import sharp from 'sharp';
import { call, serve } from '../../actors/bus/index.ts';
import { codecFor, codecs, LinkStatusReply, LinkStatusRequest, PROTOCOL_MAJOR, Role, subjects, type LinkStatus } from '../../protocol/index.ts';
import { hotFolderDirs } from '../../sites/hotfolders/index.ts';
import { rb, TestFarm, waitUntil, type ActorProcess } from '../helpers/farm.ts';

// The studio's policy for jobs no local host can render (`--outsource-unrenderable`), and the web
// monitor's view of federation. One farm named `studio` with peer `v1` and no link (as in
// fed-outsource.test.ts): real nats-server, registry, scheduler, a render server whose only
// renderer is POV-Ray, the studio's packer in this process; the vendor's news is the intake's
// request on `sched.remote.v1`, and the link service's `link.status` answer is played by this test.

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const TOKEN = 'fed-policy-test-token-0123456789abcdef';

// bundle paths may not lie under /tmp (a system directory for the path rules): the farm works in /var/tmp
let farm: TestFarm;
let scheduler: ActorProcess;
let blendJob = '';
let outDir = '';

before(async () => {
  farm = await TestFarm.start({ site: 'studio', peers: ['v1'], tmpBase: '/var/tmp' });
  await farm.registry();
  await farm.renderServer('node-a', 1);
  scheduler = await farm.scheduler();
  await farm.studioIntake(); // the packer: an outsourced job's bundle goes to outgoing/v1/
});
after(async () => {
  await farm?.stop();
});

const why = (jobId: string) => {
  const r = rb(farm, 'why', jobId);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
};

test('outsource-policy - a job no host here can render waits without the policy; with it, it goes to v1, and stays there after a restart', async () => {
  const scene = await farm.writeScene('blend.pov');
  outDir = join(farm.dir, 'out-blend');
  const sub = rb(farm, 'submit', scene, '--frames', '1-2', '--require', 'houdini@*', '--name', 'blend', '--output', outDir, '--json');
  assert.equal(sub.code, 0, sub.stderr);
  blendJob = (JSON.parse(sub.stdout) as { jobId: string }).jobId;

  // without the policy: it waits, and says why (the registry matched no host: the round looked at it)
  const waiting = await waitUntil('the job to wait for a host', async () => {
    const j = await farm.job(blendJob);
    return /no host matches the requirements/.test(j.waiting ?? '') ? j : undefined;
  }, 20_000);
  assert.equal(waiting.state, 'queued');
  assert.equal(waiting.outsourced, undefined);
  assert.match(why(blendJob), /no host matches the requirements \(node-a needs houdini@\*/);
  const bundle = join(hotFolderDirs(farm.dataDir, 'v1').outgoing, `job-${blendJob}.rbb`);
  assert.equal(existsSync(bundle), false);

  // the same farm with the policy: the job goes to v1 as if it said `site: v1`, and its bundle is written
  await scheduler.kill('SIGTERM');
  scheduler = await farm.scheduler(['--outsource-unrenderable', 'v1']);
  const sent = await waitUntil('the job to be outsourced', async () => {
    const j = await farm.job(blendJob);
    return j.state === 'outsourced' ? j : undefined;
  }, 20_000);
  assert.equal(sent.outsourced?.site, 'v1');
  assert.match(sent.outsourced?.why ?? '', /^no host here can render it \(node-a needs houdini@\*/);
  await waitUntil('its bundle in outgoing/v1/', () => existsSync(bundle), 20_000);
  const jobs = rb(farm, 'jobs');
  assert.match(jobs.stdout, /outsourced to v1: 0\/2 frames back/);
  assert.match(why(blendJob), /outsourced to v1: .*; sent by the site's policy: no host here can render it/);
  const shown = rb(farm, 'job', blendJob);
  assert.match(shown.stdout, /sent by +the site's policy: no host here can render it \(node-a needs houdini@\*/);
  // a job a host here can render stays here
  const probe = await farm.dispatchRound();
  assert.equal(probe.outsourced, undefined);

  // journaled: a scheduler restarted without the policy keeps it sent, with why
  await scheduler.kill('SIGKILL');
  scheduler = await farm.scheduler();
  const after = await farm.job(blendJob);
  assert.equal(after.state, 'outsourced');
  assert.equal(after.outsourced?.site, 'v1');
  assert.match(after.outsourced?.why ?? '', /^no host here can render it/);
});

test('outsource-policy - a bad --outsource-unrenderable is refused, naming the flag', () => {
  const bad = rb(farm, 'scheduler', '--outsource-unrenderable', 'V1');
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /--outsource-unrenderable: 'V1' is not a site name/);
  const outside = rb(farm, 'scheduler', '--peers', 'v1', '--outsource-unrenderable', 'v2');
  assert.equal(outside.code, 2, outside.stderr);
  assert.match(outside.stderr, /--outsource-unrenderable: 'v2' is not one of --peers \(v1\)/);
  const itself = rb(farm, 'up', '--data', join(farm.dir, 'no-farm'), '--outsource-unrenderable', 'studio');
  assert.equal(itself.code, 2, itself.stderr);
  assert.match(itself.stderr, /--outsource-unrenderable: 'studio' is this site itself/);
});

test('web monitor - an outsourced job shows where it went and its remote progress, a peer\'s job where it came from, and the Sites panel the links', async () => {
  assert.ok(blendJob, 'the first test outsourced a job');
  assert.ok(existsSync(CHROMIUM), `no chromium at ${CHROMIUM}: run 'sh tools/bootstrap.sh --test', or set CHROMIUM_PATH`);
  // v1 started rendering it and sent frame 1 back (what the intake tells the scheduler of a status bundle)
  // and an early look at frame 2: its sample thumbnail, written in .rb-samples/ as the intake writes it
  const intake = await farm.connectAs(Role.Intake, 'intake');
  const sample = join(outDir, '.rb-samples', 'frame_0002.png.png');
  await mkdir(join(outDir, '.rb-samples'), { recursive: true });
  await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 200, g: 40, b: 40 } } }).png().toFile(sample);
  await call(intake, subjects.schedRemote(farm.site, 'v1'), codecs.remoteUpdate, {
    v: PROTOCOL_MAJOR, jobId: blendJob, bundleId: 'status-1', state: 'started', remoteJob: 'r42', counts: { total: 2, done: 1, failed: 0, running: 1 },
    outputs: [{ frame: 1, path: join(outDir, 'frame_0001.png') }], samples: [{ frame: 2, path: sample }], at: Date.now(),
  }, codecs.remoteUpdateReply, { timeoutMs: 5_000 });
  // a job v1 sent us (it renders here)
  const scene = await farm.writeScene('theirs.pov');
  const theirs = await call(intake, subjects.schedIntake(farm.site, 'v1'), codecs.intakeRequest, {
    v: PROTOCOL_MAJOR, kind: 'submit', originJob: 'x7', spec: { name: 'theirs', scene, frames: '1', resolution: '64x48', output: { dir: join(farm.dir, 'out-theirs') } },
  }, codecs.intakeReply, { timeoutMs: 5_000 });

  const tokenFile = join(farm.dir, 'monitor-token');
  await writeFile(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
  const { base } = await farm.monitor(['--token-file', tokenFile]);
  let browser: Browser | undefined;
  let linkService: { nc: NatsConnection; sub: Subscription } | undefined;
  try {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
    const page = await browser.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (err) => pageErrors.push(err.message));
    await page.goto(`${base}/#token=${TOKEN}`);

    // the jobs list: where each went or came from, and v1's progress
    const out = page.locator(`tr[data-job="${blendJob}"] [data-outsourced="v1"]`);
    await out.waitFor({ timeout: 10_000 });
    assert.equal(await out.innerText(), 'outsourced to v1 · 1/2 frames back · rendering there, 1 rendering');
    assert.match(await page.locator(`tr[data-job="${blendJob}"] td.why`).innerText(), /sent by the site's policy: no host here can render it \(node-a needs houdini@\*/);
    const from = page.locator(`tr[data-job="${theirs.jobId}"] [data-origin="v1"]`);
    await from.waitFor({ timeout: 10_000 });
    assert.equal(await from.innerText(), 'from v1 · their job x7');
    // no link service answered yet: a site whose links are unknown shows no Sites panel
    assert.equal(await page.locator('[data-sites]').count(), 0);

    // the link service answers (played here, with the site link's credential): the panel appears, live
    const status: LinkStatus = { peer: 'v1', state: 'up', since: Date.now() - 65_000, rttMs: 12, lastHelloAt: Date.now(), outgoing: { bundles: 1, bytes: 3 * 1024 * 1024 }, incoming: { bundles: 0, bytes: 0 }, bytesOut: 0, bytesIn: 0 };
    const nc = await farm.connectAs(Role.SiteLink, 'site-link');
    const sub = serve(nc, { subject: subjects.linkStatus(farm.site), request: codecFor(LinkStatusRequest), reply: codecFor(LinkStatusReply), handle: () => ({ site: farm.site, links: [status] }), log: pino({ level: 'silent' }) });
    linkService = { nc, sub };
    const row = page.locator('[data-sites] tr[data-peer="v1"]');
    await row.waitFor({ timeout: 15_000 });
    assert.equal(await row.locator('[data-link-state]').innerText(), 'up');
    assert.equal(await row.locator('[data-rtt]').innerText(), '12 ms');
    assert.equal(await row.locator('[data-waiting-out]').innerText(), '1 bundle, 3.0 MiB');
    assert.equal(await row.locator('[data-waiting-in]').innerText(), '-');
    assert.equal(await row.locator('[data-jobs-out]').innerText(), '1');

    // the job page: where it went, v1's word, and why it went
    await page.locator(`tr[data-job="${blendJob}"] a`).first().click();
    const line = page.locator('[data-site-line="outsourced"]');
    await line.waitFor({ timeout: 10_000 });
    const text = await line.innerText();
    assert.match(text, /^outsourced to v1: rendering there \(their job r42\), 1\/2 frames back; last news \d+s ago/);
    assert.match(text, /sent by the site's policy: no host here can render it \(node-a needs houdini@\*/);
    // its grid: frame 1 is back, frame 2 waits at v1
    await page.locator('.grid .frame[data-frame="1"][data-state="done"]').waitFor({ timeout: 10_000 });
    assert.equal(await page.locator('.grid .frame[data-frame="2"]').getAttribute('data-state'), 'queued');
    // the early look at frame 2, served by the monitor from the file the scheduler lists
    const look = page.locator('[data-samples] img');
    await look.waitFor({ timeout: 10_000 });
    assert.equal(await look.getAttribute('alt'), 'sample of frame 2');
    await waitUntil('the sample thumbnail to load', () => look.evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth > 0), 10_000);
    const none = await fetch(`${base}/api/jobs/${blendJob}/samples/1`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(none.status, 404, 'frame 1 has no sample');
    assert.deepEqual(pageErrors, []);
  } finally {
    linkService?.sub.unsubscribe();
    await linkService?.nc.close();
    await browser?.close();
  }
});
