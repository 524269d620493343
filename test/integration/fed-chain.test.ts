import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pino from 'pino';
import { Role, type JobSpec } from '../../protocol/index.ts';
import { readBundle, writeBundle } from '../../sites/bundles/index.ts';
import { ensureHotFolders, hotFolderDirs } from '../../sites/hotfolders/index.ts';
import { startIntake } from '../../sites/intake/index.ts';
import { loadSiteKey, type SiteKey } from '../../sites/links/site-key.ts';
import { startOutsourcing } from '../../sites/outsource/index.ts';
import { startRemoteJobs } from '../../sites/remote-jobs/index.ts';
import { TestFarm, rb, waitUntil } from '../helpers/farm.ts';

/*
 * Chaining (docs/federation.md, "Chaining"): studio → v1 → v2 with three real farms, the bundles
 * carried by hand between their hot folders (the link is proven by fed-transfer and fed-e2e).
 * v1's render server lacks the package the job needs; v2's has it.
 */

const SCENE = `#include "chain.inc"
camera { location <0, 1, -4> look_at <0, 0.5, 0> }
light_source { <4, 6, -6> color rgb 1 }
plane { y, 0 pigment { checker color rgb 1 color rgb 0.2 } }
sphere { <-1.5 + clock * 0.3, 0.5, 0>, 0.5 texture { Ball } }
`;
const INCLUDE = '#declare Ball = texture { pigment { color rgb <0.2, 0.5, 1> } finish { phong 0.4 } };\n';
const NEEDS = { packages: ['shaders@*'] };
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A site's two halves and its intake, composed as sites/site-services.ts does, on the farm's data dir. */
async function siteServices(farm: TestFarm, peers: string[], keys: Map<string, SiteKey>, forwardTo: string[] = []) {
  const nc = await farm.connectAs(Role.Intake, 'intake');
  const log = pino({ level: process.env.RENDERBUS_LOG ?? 'error' });
  const o = { site: farm.site, dataDir: farm.dataDir, nc, peers, log };
  const remote = await startRemoteJobs({ ...o, forwardTo: () => forwardTo });
  const outsourcing = await startOutsourcing({ ...o, forward: (j) => remote.forward.jobFor(j), outputDirFor: (j) => remote.forward.outputDirFor(j), keyOf: (s) => keys.get(s)?.publicKey });
  const intake = await startIntake({
    ...o, scanEveryMs: 100,
    handlers: { peerJob: remote.peerJob, ownJob: outsourcing.ownJob, refused: remote.refused },
    peerKey: (p) => keys.get(p)?.publicKey,
  });
  return async () => {
    await intake.stop();
    await outsourcing.stop();
    await remote.stop();
  };
}

/** Carries every bundle in a's outgoing/<b>/ into b's incoming/<a>/ (and a's processed/, as the link leaves it). */
async function carry(a: TestFarm, b: TestFarm): Promise<void> {
  const from = hotFolderDirs(a.dataDir, b.site);
  const to = (await ensureHotFolders(b.dataDir, a.site)).incoming;
  for (const name of (await readdir(from.outgoing)).filter((n) => n.endsWith('.rbb'))) {
    await copyFile(join(from.outgoing, name), join(to, `${name}.carrying`));
    await rename(join(to, `${name}.carrying`), join(to, name));
    await rename(join(from.outgoing, name), join(from.processed, name));
  }
}

const names = async (dir: string) => (await readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith('.rbb')).sort();

test('fed chain - studio → v1 → v2: frames, news and both bills come back along the chain; loops and jobs without consent are refused', { timeout: 240_000 }, async (t) => {
  const [studio, v1, v2] = await Promise.all([
    TestFarm.start({ site: 'studio', peers: ['v1'], tmpBase: '/var/tmp' }),
    TestFarm.start({ site: 'v1', peers: ['studio', 'v2'], tmpBase: '/var/tmp' }),
    TestFarm.start({ site: 'v2', peers: ['v1'], tmpBase: '/var/tmp' }),
  ]);
  const stops: (() => Promise<void>)[] = [];
  let carrying = true;
  let pump: Promise<void> | undefined;
  t.after(async () => {
    carrying = false; // the pump first: it reads the folders the farms' stop removes
    await pump;
    for (const s of stops) await s();
    await Promise.all([studio.stop(), v1.stop(), v2.stop()]);
  });
  await Promise.all([v1.registry(), v2.registry()]);
  await Promise.all([
    studio.scheduler(),
    v1.scheduler(['--outsource-unrenderable', 'v2']),
    v2.scheduler(),
    v1.renderServer('rs1', 1),
    v2.renderServer('rs2', 1, ['--packages', 'povray@3.7.0.10,shaders@1.0']), // --packages replaces the probe: POV-Ray named too
  ]);
  const keys = new Map<string, SiteKey>();
  for (const f of [studio, v1, v2]) keys.set(f.site, await loadSiteKey(f.dataDir));
  stops.push(await siteServices(studio, ['v1'], keys));
  stops.push(await siteServices(v1, ['studio', 'v2'], keys, ['v2']));
  stops.push(await siteServices(v2, ['v1'], keys));
  // the "link": bundles carried between the hot folders as they appear
  pump = (async () => {
    while (carrying) {
      await carry(studio, v1);
      await carry(v1, studio);
      await carry(v1, v2);
      await carry(v2, v1);
      await new Promise((r) => setTimeout(r, 100));
    }
  })();

  const scene = await studio.writeScene('chain.pov', SCENE);
  const include = await studio.writeScene('chain.inc', INCLUDE);
  const spec = (name: string, over: Partial<JobSpec> = {}): JobSpec => ({
    name, scene, supportFiles: [include], frames: '1-3', resolution: '96x72', site: 'v1', requirements: NEEDS,
    output: { dir: join(studio.dir, `out-${name}`), pattern: 'f_####.png' }, ...over,
  });

  await t.test('a consenting job goes studio → v1 → v2; frames identical, both bills and the path at the studio', async () => {
    // v2 charges for its CPU (at least 1.00); v1 adds 0.25 per job it passes on (its rate card's forwardMinor)
    await writeFile(join(v2.dataDir, 'fed', 'rates.json'), JSON.stringify({ currency: 'EUR', perCoreHourMinor: 4, perGbMinor: 0, minimumMinor: 100 }));
    await writeFile(join(v1.dataDir, 'fed', 'rates.json'), JSON.stringify({ currency: 'EUR', perCoreHourMinor: 4, perGbMinor: 0, minimumMinor: 100, forwardMinor: 25 }));
    const jobId = await studio.submit(spec('chained', { chain: true }));
    const done = await studio.waitJob(jobId, 'done', 120_000);
    assert.deepEqual(done.outsourced?.via, ['v2'], 'the studio knows where its job went');
    // v1 took it (no host of its own can) and passed it on; v2 rendered it as v1's job
    const [mid] = (await v1.jobs()).filter((j) => j.origin?.site === 'studio' && j.origin.job === jobId);
    assert.equal(mid?.outsourced?.site, 'v2', `v1's job went to v2: ${JSON.stringify(mid)}`);
    const [end] = (await v2.jobs()).filter((j) => j.origin?.site === 'v1' && j.origin.job === mid.jobId);
    assert.equal(end?.state, 'done');
    // v2 got the studio's own description: its paths, its output folder, its consent
    const v2Job = await v2.job(end.jobId);
    assert.equal(v2Job.spec.scene, scene);
    const rec = JSON.parse(await readFile(join(v2.dataDir, 'fed', 'remote-jobs', 'v1', `${mid.jobId}.json`), 'utf8')) as { theirSpec: JobSpec; route: string[] };
    assert.equal(rec.theirSpec.output?.dir, join(studio.dir, 'out-chained'));
    assert.equal(rec.theirSpec.chain, true);
    assert.deepEqual(rec.route, ['studio', 'v1'], 'the job bundle v2 got carries its path');
    // the frames: rendered at v2, landed at v1, and identical at the studio
    for (const f of [1, 2, 3]) {
      const at = (dir: string) => readFile(join(dir, `f_000${f}.png`));
      const s = sha(await at(join(studio.dir, 'out-chained')));
      assert.equal(sha(await at(join(v1.dataDir, 'fed', 'jobs', 'studio', jobId, 'out'))), s, `frame ${f} at v1`);
      assert.equal(sha(await at(join(v2.dataDir, 'fed', 'jobs', 'v1', mid.jobId, 'out'))), s, `frame ${f} at v2`);
    }
    // v2's task logs came on with v1's result (the last may still be landing, as a .part, when the
    // job's end is applied: the intake writes each file atomically)
    const logsDir = join(studio.dir, 'out-chained', '.rb-logs', 'remote-v1');
    const logs = await waitUntil('the three logs at the studio', async () => {
      const files = await readdir(logsDir).catch(() => []);
      return files.length === 3 && !files.some((f) => f.endsWith('.part')) ? files : undefined;
    }, 30_000, 100).catch(async () => readdir(logsDir));
    assert.equal(logs.length, 3, `a log per task, rendered at v2: ${logs.join(' ')}`);
    assert.deepEqual(logs.filter((f) => f.endsWith('.part')), [], 'every log landed whole');
    // samples went on too: v1 made them from the frames as they came
    const samples = join(studio.dir, 'out-chained', '.rb-samples');
    await waitUntil('the three samples at the studio', async () => (await readdir(samples).catch(() => [])).length === 3, 30_000, 100);
    assert.deepEqual((await readdir(samples)).sort(), ['f_0001.png.png', 'f_0002.png.png', 'f_0003.png.png']);
    // both bills at the studio: v1's (signed by v1) carrying v2's as it came (verified with v2's key)
    const bill = await waitUntil('the bill at the studio', async () => (await studio.job(jobId)).outsourced?.bill, 90_000, 200);
    assert.equal(bill.signed, true);
    assert.deepEqual(bill.via?.map((v) => [v.site, v.frames, v.verified, v.currency, v.amountMinor]), [['v2', 3, true, 'EUR', 100]]);
    assert.deepEqual([bill.amountMinor, bill.marginMinor, bill.frames], [25, 25, 0], "v1's own part: no frames rendered there, its margin");
    const kept = JSON.parse(await readFile(bill.file!, 'utf8')) as { via: { site: string; verified: boolean; bill: { frames: { host: string }[] } }[] };
    assert.deepEqual(kept.via[0]!.bill.frames.map((l) => l.host), ['rs2', 'rs2', 'rs2'], "v2's lines, measured at v2");
    const view = rb(studio, 'job', jobId).stdout;
    assert.match(view, /outsourced to v1 → v2: done there/);
    assert.match(view, /bill\s+0\.25 EUR for 0 frames .*, signed by v1/);
    assert.match(view, /of which v2's bill: 1\.00 EUR for 3 frames, signed by v2, verified here; v1's margin 0\.25 EUR/);
  });

  await t.test('a job without consent is refused at v1 as before', async () => {
    const jobId = await studio.submit(spec('unchained'));
    const failed = await studio.waitJob(jobId, 'failed', 60_000);
    assert.match(failed.error ?? '', /RB_REMOTE_FAILED: outsourced to v1, refused there: no host at v1 can render it \(closest: rs1: needs shaders@\*/);
    assert.doesNotMatch(failed.error ?? '', /passed on/);
    assert.equal((await v2.jobs()).length, 1, 'nothing new reached v2');
  });

  await t.test('a loop is refused with its path: v2 passing a job back to v1, v1 back to the studio', async () => {
    // v2 "passes on" a job that came studio → v1 → v2 back to v1, signed by v2 as its own bundle
    const stage = join(v2.dir, 'stage');
    await mkdir(stage, { recursive: true });
    const scene2 = join(v2.dir, 'loop.pov');
    await writeFile(scene2, SCENE);
    const drop = async (from: TestFarm, to: TestFarm, route: string[], job: string) => {
      const out = join(stage, `${job}.rbb`);
      await writeBundle({
        head: { kind: 'job', bundleId: `${job}-job`, from: from.site, to: to.site, route, jobRef: { site: from.site, job }, job: { scene: scene2, frames: '1', chain: true, output: { dir: join(v2.dir, 'loop-out') } } },
        files: [scene2], out, dataDir: from.dataDir, sign: keys.get(from.site)!,
      });
      await rename(out, join(hotFolderDirs(to.dataDir, from.site).incoming, `${job}.rbb`));
    };
    await drop(v2, v1, ['studio', 'v1', 'v2'], 'l-1');
    await drop(v1, studio, ['studio', 'v1'], 'l-2');
    const rejected = async (farm: TestFarm, peer: TestFarm, name: string) => {
      // the pump carries the answer on: it is in the peer's incoming/ or processed/ by now
      const file = await waitUntil(`${name} answered`, async () => {
        for (const dir of [hotFolderDirs(farm.dataDir, peer.site).processed, hotFolderDirs(peer.dataDir, farm.site).processed, hotFolderDirs(peer.dataDir, farm.site).failed]) {
          if ((await names(dir)).includes(name)) return join(dir, name);
        }
        return undefined;
      }, 30_000, 100);
      const tmp = join(stage, 'read');
      await mkdir(tmp, { recursive: true });
      return (await readBundle({ source: createReadStream(file), tempDir: tmp, dataDir: join(stage, 'none') })).manifest.status;
    };
    const atV1 = await rejected(v1, v2, 'v1.l-1.rejected.rbb');
    assert.equal(atV1?.state, 'rejected');
    assert.equal(atV1?.reason, 'RB_CHAIN_LOOP: v2\'s job l-1 came along studio → v1 → v2, which already passed this site (v1): refused, it would go round');
    const atStudio = await rejected(studio, v1, 'studio.l-2.rejected.rbb');
    assert.match(atStudio?.reason ?? '', /^RB_CHAIN_LOOP: v1's job l-2 came along studio → v1, which already passed this site \(studio\)/);
    assert.equal((await v1.jobs()).filter((j) => j.origin?.site === 'v2').length, 0, 'nothing queued at v1');
  });

  await t.test('a cancel at the studio cancels at v1, which cancels at v2', async () => {
    const jobId = await studio.submit(spec('cancelled', { chain: true, frames: '1-400' }));
    const mid = await waitUntil('the job passed on by v1', async () => (await v1.jobs()).find((j) => j.origin?.job === jobId && j.outsourced?.site === 'v2'), 60_000, 200);
    await waitUntil('its first frame rendered at v2', async () => (await v2.jobs()).some((j) => j.origin?.job === mid.jobId && j.counts.done > 0), 60_000, 200);
    assert.equal(rb(studio, 'cancel', jobId).code, 0);
    await waitUntil("v1's job cancelled", async () => (await v1.job(mid.jobId)).state === 'cancelled', 30_000, 200);
    const end = await waitUntil("v2's job cancelled", async () => (await v2.jobs()).find((j) => j.origin?.job === mid.jobId && j.state === 'cancelled'), 30_000, 200);
    assert.ok(end.counts.done < 400, 'stopped before the end');
  });
});
