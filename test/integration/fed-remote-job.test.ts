import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import sharp from 'sharp';
import { AckPolicy, DeliverPolicy, jetstreamManager } from '@nats-io/jetstream';
import { Role, streams, subjects, type JobSpec } from '../../protocol/index.ts';
import { readBundle, writeBundle, type ReadBundleResult } from '../../sites/bundles/index.ts';
import { hotFolderDirs } from '../../sites/hotfolders/index.ts';
import { loadSiteKey, verifySiteSignature, type SiteKey } from '../../sites/links/site-key.ts';
import { RETURNER_CONSUMER } from '../../sites/remote-jobs/index.ts';
import { TestFarm, rb, waitUntil } from '../helpers/farm.ts';

// a POV-Ray scene that needs its tree: an #include'd texture and an image_map, both by relative path
const SCENE = `#include "inc/things.inc"
camera { location <0, 1, -4> look_at <0, 0.5, 0> }
light_source { <4, 6, -6> color rgb 1 }
plane { y, 0 pigment { image_map { png "tex/checker.png" } rotate x * 90 scale 2 } }
sphere { <-1.5 + clock * 0.3, 0.5, 0>, 0.5 texture { Things } }
`;
const INCLUDE = '#declare Things = texture { pigment { color rgb <1, 0.3, 0.2> } finish { phong 0.5 } };\n';

interface Studio {
  /** The studio's own data dir (for the writer's path rules) and where its files really are. */
  dataDir: string;
  files: string;
  /** The original paths the studio gives its files: not where v1 keeps them, nor where they are. */
  root: string;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function makeStudio(): Promise<Studio> {
  const base = await mkdtemp(join(tmpdir(), 'rb-studio-'));
  const files = join(base, 'files');
  await mkdir(join(files, 'inc'), { recursive: true });
  await mkdir(join(files, 'tex'), { recursive: true });
  await writeFile(join(files, 'scene.pov'), SCENE);
  await writeFile(join(files, 'inc', 'things.inc'), INCLUDE);
  // a 2×2 checker, blown up: any change in how it is found changes the pixels
  const px = Buffer.from([255, 255, 255, 30, 60, 200, 30, 60, 200, 255, 255, 255]);
  await sharp(px, { raw: { width: 2, height: 2, channels: 3 } }).resize(64, 64, { kernel: 'nearest' }).png().toFile(join(files, 'tex', 'checker.png'));
  // a file above 4 MiB travels in content-defined chunks; the vendor joins it into the job's tree
  await writeFile(join(files, 'tex', 'plate.bin'), randomBytes(6 << 20));
  return { dataDir: join(base, 'data'), files, root: `/projects-${randomUUID().slice(0, 8)}/shot-010` };
}

function studioSpec(s: Studio, over: Partial<JobSpec> = {}): JobSpec {
  return { name: 'shot 010', scene: `${s.root}/scene.pov`, frames: '1-3', resolution: '96x72', supportFiles: [`${s.root}/inc/things.inc`, `${s.root}/tex/checker.png`, `${s.root}/tex/plate.bin`], output: { dir: `${s.root}/out`, pattern: 'shot_####.png' }, site: 'v1', ...over };
}

/** Writes a bundle as the studio would, into the vendor's incoming/studio/ (written aside, then renamed in). */
async function dropFromStudio(farm: TestFarm, s: Studio, head: { bundleId: string; kind: 'job' | 'status'; job: string; spec?: JobSpec; cancel?: boolean; sign?: SiteKey; tamper?: (tar: Buffer) => void }): Promise<string> {
  const incoming = hotFolderDirs(farm.dir, 'studio').incoming;
  const staged = join(s.dataDir, `${head.bundleId}.rbb`);
  await mkdir(s.dataDir, { recursive: true });
  const files = head.spec ? [
    { path: head.spec.scene, from: join(s.files, 'scene.pov') },
    { path: `${s.root}/inc/things.inc`, from: join(s.files, 'inc', 'things.inc') },
    { path: `${s.root}/tex/checker.png`, from: join(s.files, 'tex', 'checker.png') },
    { path: `${s.root}/tex/plate.bin`, from: join(s.files, 'tex', 'plate.bin') },
  ] : [];
  await rm(staged, { force: true });
  await writeBundle({
    head: {
      kind: head.kind, bundleId: head.bundleId, from: 'studio', to: 'v1', route: [], jobRef: { site: 'studio', job: head.job },
      ...(head.spec ? { job: head.spec } : {}),
      ...(head.cancel ? { status: { state: 'cancel' as const, reason: 'the client changed their mind', at: Date.now() } } : {}),
    },
    files, out: staged, dataDir: s.dataDir, ...(head.sign ? { sign: head.sign } : {}),
  });
  if (head.tamper) {
    const tar = await readFile(staged);
    head.tamper(tar);
    await writeFile(staged, tar);
  }
  const dest = join(incoming, `${head.bundleId}.rbb`);
  await rename(staged, dest);
  return dest;
}

const outgoing = (farm: TestFarm) => hotFolderDirs(farm.dir, 'studio').outgoing;
const sent = async (farm: TestFarm) => (await readdir(outgoing(farm))).filter((n) => n.endsWith('.rbb')).sort();

async function openBundle(farm: TestFarm, name: string, s: Studio): Promise<ReadBundleResult> {
  const tempDir = join(s.dataDir, '..', 'read');
  await mkdir(tempDir, { recursive: true });
  return readBundle({ source: createReadStream(join(outgoing(farm), name)), tempDir, dataDir: s.dataDir });
}

async function pixels(path: string): Promise<Buffer> {
  return (await sharp(path).removeAlpha().raw().toBuffer({ resolveWithObject: true })).data;
}

/** Each bundle in outgoing/studio with the time its writer made it: a bundle written again shows a new one. */
async function snapshot(farm: TestFarm, s: Studio): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const n of await sent(farm)) out.set(n, (await openBundle(farm, n, s)).manifest.createdAt);
  return out;
}

const waitSent = (farm: TestFarm, name: string, timeoutMs = 90_000) =>
  waitUntil(`${name} in outgoing/studio`, async () => (await sent(farm)).includes(name), timeoutMs, 100);

async function remoteJobOf(farm: TestFarm, originJob: string) {
  return (await farm.jobs()).filter((j) => j.origin?.site === 'studio' && j.origin.job === originJob);
}

test('fed remote job - a studio job bundle renders at v1 and its frames, samples, result and signed bill go back', { timeout: 240_000 }, async (t) => {
  const farm = await TestFarm.start({ site: 'v1' });
  t.after(() => farm.stop());
  await farm.registry();
  await farm.scheduler();
  await farm.renderServer('rs1', 2);
  const studio = await makeStudio();
  t.after(() => rm(join(studio.files, '..'), { recursive: true, force: true }));
  const outcomes: { peer: string; kind: string; file: string; error?: string }[] = [];
  let intake = await farm.remoteIntake(['studio'], { onOutcome: (peer, o) => outcomes.push({ peer, kind: o.to, file: o.name, ...(o.error ? { error: o.error.message } : {}) }) });

  await t.test('renders the job flagged as the studio\'s, and sends it all back', async () => {
    await dropFromStudio(farm, studio, { bundleId: 'studio-j-1-job', kind: 'job', job: 'j-1', spec: studioSpec(studio) });
    await waitSent(farm, 'v1.j-1.bill.rbb');
    const [job] = await remoteJobOf(farm, 'j-1');
    assert.ok(job, 'the job is queued at v1 with its origin');
    assert.equal(job.state, 'done');
    assert.equal(job.user, 'peer:studio');
    assert.match(rb(farm, 'job', job.jobId).stdout, /origin\s+from studio, their job j-1\n/);
    assert.match(rb(farm, 'jobs').stdout, new RegExp(`${job.jobId}.*from studio, their job j-1`));
    const plate = join(farm.dir, 'fed', 'jobs', 'studio', 'j-1', 'root', studio.root, 'tex', 'plate.bin');
    assert.equal(sha(await readFile(plate)), sha(await readFile(join(studio.files, 'tex', 'plate.bin'))), 'the file sent in chunks is whole in the job\'s tree');
    const names = await sent(farm);
    for (const n of ['accepted', 'started', 't0-a1', 't1-a1', 't2-a1', 'sample-f1', 'sample-f2', 'sample-f3', 'result', 'bill']) assert.ok(names.includes(`v1.j-1.${n}.rbb`), `v1.j-1.${n}.rbb sent: ${names.join(' ')}`);

    const accepted = await openBundle(farm, 'v1.j-1.accepted.rbb', studio);
    assert.equal(accepted.manifest.status?.state, 'accepted');
    assert.equal(accepted.manifest.status?.remoteJob, job.jobId);

    // frames come back under the studio's output.dir, pixel-identical to the scene rendered here directly
    const direct = await farm.submit({ name: 'direct', scene: join(studio.files, 'scene.pov'), frames: '1-3', resolution: '96x72', output: { dir: join(farm.dir, 'direct'), pattern: 'shot_####.png' } });
    await farm.waitJob(direct, 'done', 90_000);
    const result = await openBundle(farm, 'v1.j-1.result.rbb', studio);
    assert.equal(result.manifest.kind, 'result');
    assert.deepEqual(result.manifest.outputs, [1, 2, 3].map((f) => `${studio.root}/out/shot_000${f}.png`));
    assert.equal(result.manifest.logs?.length, 3, 'a log per task');
    for (const path of result.manifest.outputs!) {
      const file = result.manifest.files.find((f) => f.path === path)!;
      const got = await pixels(result.blobs.get(file.sha256)!);
      const want = await pixels(join(farm.dir, 'direct', basename(path)));
      assert.ok(got.equals(want), `${basename(path)} is pixel-identical to the direct render`);
    }
    // a partial result: one frame and its log, as the frame finished
    const partial = await openBundle(farm, 'v1.j-1.t1-a1.rbb', studio);
    assert.equal(partial.manifest.kind, 'partial-result');
    assert.equal(partial.manifest.outputs?.length, 1);
    assert.match(partial.manifest.logs?.[0] ?? '', new RegExp(`^${studio.root}/out/\\.rb-logs/`));
    const sample = await openBundle(farm, 'v1.j-1.sample-f2.rbb', studio);
    assert.equal(sample.manifest.status?.state, 'progress');
    const thumb = await sharp(sample.blobs.get(sample.manifest.files[0]!.sha256)!).metadata();
    assert.ok((thumb.width ?? 0) <= 320 && thumb.format === 'png', 'a small PNG thumbnail');

    // the bill: per frame measured, totals add up, signed with v1's key
    const bill = await openBundle(farm, 'v1.j-1.bill.rbb', studio);
    const b = bill.manifest.bill!;
    assert.equal(b.frames.length, 3);
    assert.equal(b.totals.cpuMs, b.frames.reduce((n, l) => n + l.cpuMs, 0));
    assert.ok(b.frames.every((l) => l.host === 'rs1' && l.wallMs > 0 && l.bytes > 0));
    assert.equal(b.currency, 'XXX', 'no rate card: nothing invented');
    assert.ok(bill.signature, 'the bill is signed');
    assert.ok(verifySiteSignature((await loadSiteKey(farm.dir)).publicKey, bill.manifestBytes, bill.signature!));
    // v1 keeps a copy of each bill it issues: `renderbus bills --issued` lists it (sent bundles leave outgoing/)
    const issued = rb(farm, 'bills', '--issued', '--data', farm.dir);
    assert.equal(issued.code, 0, issued.stderr);
    assert.match(issued.stdout, /^customer +job .*\nstudio +j-1 +\S+ +3 +\S+ +\S+ +0 XXX +signed /);
  });

  await t.test('the same job bundle again queues nothing and sends nothing', async () => {
    const before = await snapshot(farm, studio);
    const seen = outcomes.length;
    await dropFromStudio(farm, studio, { bundleId: 'studio-j-1-job', kind: 'job', job: 'j-1', spec: studioSpec(studio) });
    await waitUntil('the replayed bundle to be processed', () => outcomes.slice(seen).some((o) => o.file.startsWith('studio-j-1-job') && o.kind === 'processed'), 30_000, 100);
    assert.equal((await remoteJobOf(farm, 'j-1')).length, 1);
    assert.deepEqual(await snapshot(farm, studio), before);
  });

  await t.test('a job no host here can render is rejected with the registry\'s reason, nothing queued', async () => {
    await dropFromStudio(farm, studio, { bundleId: 'studio-j-2-job', kind: 'job', job: 'j-2', spec: studioSpec(studio, { requirements: { packages: ['houdini'] } }) });
    await waitSent(farm, 'v1.j-2.rejected.rbb', 30_000);
    const st = await openBundle(farm, 'v1.j-2.rejected.rbb', studio);
    assert.equal(st.manifest.status?.state, 'rejected');
    assert.match(st.manifest.status?.reason ?? '', /no host at v1 can render it \(closest: rs1: needs houdini/);
    assert.equal((await remoteJobOf(farm, 'j-2')).length, 0);
  });

  await t.test('a cancel bundle after the first early look cancels the job; cancelled and a partial bill go back', async () => {
    await dropFromStudio(farm, studio, { bundleId: 'studio-j-3-job', kind: 'job', job: 'j-3', spec: studioSpec(studio, { frames: '1-200' }) });
    // the client sees the first sample frame's thumbnail (it crosses ahead of the frame) and cancels
    await waitUntil('the first early look', async () => (await sent(farm)).some((n) => /^v1\.j-3\.sample-f\d+\.rbb$/.test(n)), 60_000, 100);
    await dropFromStudio(farm, studio, { bundleId: 'studio-j-3-cancel', kind: 'status', job: 'j-3', cancel: true });
    await waitSent(farm, 'v1.j-3.bill.rbb');
    const [job] = await remoteJobOf(farm, 'j-3');
    assert.equal(job?.state, 'cancelled');
    const st = await openBundle(farm, 'v1.j-3.cancelled.rbb', studio);
    assert.equal(st.manifest.status?.state, 'cancelled');
    const bill = (await openBundle(farm, 'v1.j-3.bill.rbb', studio)).manifest.bill!;
    assert.ok(bill.frames.length >= 1 && bill.frames.length < 200, `a partial bill: ${bill.frames.length} frames`);
    assert.equal(bill.frames.length, job!.counts.done);
    assert.ok(!(await sent(farm)).includes('v1.j-3.result.rbb'));
  });

  await t.test('a returner stopped mid-job loses no bundle and writes none twice', async () => {
    await dropFromStudio(farm, studio, { bundleId: 'studio-j-4-job', kind: 'job', job: 'j-4', spec: studioSpec(studio, { frames: '1-12', resolution: '320x240' }) });
    await waitSent(farm, 'v1.j-4.t0-a1.rbb');
    await intake.stop();
    const stoppedAt = Date.now();
    // frames end while nobody sends: proof from the scheduler, not a sleep
    const jobId = (await remoteJobOf(farm, 'j-4'))[0]!.jobId;
    const doneAtStop = (await farm.job(jobId)).counts.done;
    assert.ok(doneAtStop < 12, 'the job still renders when the returner stops');
    await waitUntil('more frames to end while the returner is stopped', async () => (await farm.job(jobId)).counts.done > doneAtStop, 60_000, 100);
    const before = new Map<string, number>();
    for (const n of (await sent(farm)).filter((x) => x.startsWith('v1.j-4.'))) before.set(n, (await openBundle(farm, n, studio)).manifest.createdAt);
    intake = await farm.remoteIntake(['studio']);
    await waitSent(farm, 'v1.j-4.bill.rbb');
    const names = (await sent(farm)).filter((x) => x.startsWith('v1.j-4.'));
    for (let i = 0; i < 12; i++) assert.ok(names.includes(`v1.j-4.t${i}-a1.rbb`), `task ${i}'s frame was sent`);
    for (const [n, createdAt] of before) assert.equal((await openBundle(farm, n, studio)).manifest.createdAt, createdAt, `${n} was not written again`);
    assert.ok([...before.values()].every((at) => at <= stoppedAt));

    // every event of the stream delivered again: nothing is written again
    await intake.stop();
    const all = await snapshot(farm, studio);
    const nc = await farm.connectAs(Role.Scheduler, 'scheduler');
    const jsm = await jetstreamManager(nc);
    await jsm.consumers.delete(streams.events(farm.site), RETURNER_CONSUMER);
    await jsm.consumers.add(streams.events(farm.site), { durable_name: RETURNER_CONSUMER, filter_subject: subjects.allEvents(farm.site), ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All });
    intake = await farm.remoteIntake(['studio']);
    await waitUntil('the returner to have read the whole stream again', async () => {
      const info = await jsm.consumers.info(streams.events(farm.site), RETURNER_CONSUMER);
      return info.num_pending === 0 && info.num_ack_pending === 0 && info.delivered.stream_seq > 0;
    }, 60_000, 200);
    assert.deepEqual(await snapshot(farm, studio), all, 'no bundle written again');
  });
  await t.test('with the studio\'s key held, an unsigned or tampered job bundle goes to failed/ with its reason and submits nothing', async () => {
    await intake.stop();
    const studioKey = await loadSiteKey(studio.dataDir);
    const failed: { file: string; error?: string }[] = [];
    intake = await farm.remoteIntake(['studio'], { peerKey: () => studioKey.publicKey, onOutcome: (_p, o) => o.to === 'failed' && failed.push({ file: o.name, ...(o.error ? { error: `${o.error.code}: ${o.error.message}` } : {}) }) });
    await dropFromStudio(farm, studio, { bundleId: 'studio-j-7-job', kind: 'job', job: 'j-7', spec: studioSpec(studio) });
    // signed, then the job's name changed in the manifest (same length: the tar stays well formed)
    await dropFromStudio(farm, studio, {
      bundleId: 'studio-j-8-job', kind: 'job', job: 'j-8', spec: studioSpec(studio), sign: studioKey,
      tamper: (tar) => tar.write('shot 666', tar.indexOf('shot 010')),
    });
    await waitUntil('both bundles in failed/', () => failed.length === 2, 30_000, 50);
    const reasons = Object.fromEntries(await Promise.all(['studio-j-7-job', 'studio-j-8-job'].map(async (id) => [id, await readFile(join(hotFolderDirs(farm.dir, 'studio').failed, `${id}.rbb.reason.txt`), 'utf8')])));
    assert.match(reasons['studio-j-7-job']!, /^RB_BUNDLE_UNSIGNED: bundle studio-j-7-job carries no signature/);
    assert.match(reasons['studio-j-8-job']!, /^RB_BAD_SIGNATURE: bundle studio-j-8-job: manifest.sig does not verify with studio's site key/);
    // nothing of them applied: no job, no record, not even a `rejected` answer
    assert.deepEqual([...await remoteJobOf(farm, 'j-7'), ...await remoteJobOf(farm, 'j-8')], []);
    assert.deepEqual((await sent(farm)).filter((n) => n.startsWith('v1.j-7.') || n.startsWith('v1.j-8.')), []);
    assert.deepEqual((await readdir(join(farm.dir, 'fed', 'remote-jobs', 'studio'))).filter((n) => /j-[78]/.test(n)), []);
  });
});

