import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createReadStream } from 'node:fs';
import { access, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { readBundle } from '../../sites/bundles/index.ts';
import { dropFile, hotFolderDirs } from '../../sites/hotfolders/index.ts';
import type { RemoteJobRecord } from '../../sites/remote-jobs/index.ts';
import { rb, TestFarm, waitUntil } from '../helpers/farm.ts';
import { writePovProject } from '../helpers/pov-project.ts';

// Two farms and no link: the bundles are carried between their hot folders by hand, as the link
// would. The studio works in /var/tmp (bundle paths may not lie under /tmp).
const exists = (p: string) => access(p).then(() => true, () => false);
const DAY = 86_400_000;

async function pixels(path: string): Promise<Buffer> {
  return (await sharp(path).removeAlpha().raw().toBuffer({ resolveWithObject: true })).data;
}

test('fed rerender - frames of a done outsourced job render again at v1 from its kept inputs, no file sent; gone after the retention', { timeout: 180_000 }, async (t) => {
  const [studio, v1] = await Promise.all([
    TestFarm.start({ site: 'studio', peers: ['v1'], tmpBase: '/var/tmp' }),
    TestFarm.start({ site: 'v1' }),
  ]);
  t.after(() => Promise.all([studio.stop(), v1.stop()]));
  await Promise.all([studio.scheduler(), v1.registry(), v1.scheduler(), v1.renderServer('rs1', 2)]);
  await studio.studioIntake();
  const vendor = await v1.remoteIntake(['studio']);

  const toVendor = { from: hotFolderDirs(studio.dataDir, 'v1').outgoing, to: hotFolderDirs(v1.dir, 'studio').incoming };
  const toStudio = { from: hotFolderDirs(v1.dir, 'studio').outgoing, to: hotFolderDirs(studio.dataDir, 'v1').incoming };
  const carried = new Set<string>();
  /** Carries every bundle not carried yet, as the link would. */
  const carry = async (way: { from: string; to: string }) => {
    for (const name of (await readdir(way.from)).filter((n) => n.endsWith('.rbb')).sort()) {
      if (carried.has(name)) continue;
      carried.add(name);
      await dropFile(way.to, name, join(way.from, name));
    }
  };
  const vendorSent = (name: string) => waitUntil(`${name} in v1's outgoing/studio`, () => exists(join(toStudio.from, name)), 60_000, 100);
  const ended = async (jobId: string) => {
    await carry(toStudio);
    return waitUntil(`job ${jobId} ended at the studio`, async () => {
      const j = await studio.job(jobId);
      return ['done', 'failed', 'cancelled'].includes(j.state) ? j : undefined;
    }, 30_000, 100);
  };

  // the studio's project: a scene with an #include and an image_map texture
  const { proj, scene, inc, tex } = await writePovProject(studio.dir);
  const outDir = join(studio.dir, 'out');
  const frame = (n: number) => join(outDir, `frame_000${n}.png`);

  const original = await studio.submit({ name: 'shot', scene, renderer: 'povray', frames: '1-4', resolution: '64x48', supportFiles: [inc, tex], output: { dir: outDir }, site: 'v1' });
  await waitUntil('the job bundle', () => exists(join(toVendor.from, `job-${original}.rbb`)), 20_000, 100);
  await carry(toVendor);
  await vendorSent(`v1.${original}.bill.rbb`);
  assert.equal((await ended(original)).state, 'done');
  const first = new Map<number, Buffer>();
  for (const n of [2, 3]) first.set(n, await pixels(frame(n)));
  const casDir = join(v1.dir, 'fed', 'cas', 'studio');
  const blobs = async () => (await readdir(join(casDir, 'sha256'), { recursive: true })).filter((n) => /[0-9a-f]{64}$/.test(n));
  const keptBlobs = await blobs();
  assert.ok(keptBlobs.length >= 3, 'v1 keeps the job\'s files in its store');

  await t.test('the command refuses what it cannot re-render, by name', async () => {
    const unknown = rb(studio, 'rerender', 'j-nope', '--frames', '1');
    assert.equal(unknown.code, 1, unknown.stderr);
    assert.match(unknown.stderr, /job j-nope is not known at studio/);
    const strangers = rb(studio, 'rerender', original, '--frames', '3-6');
    assert.equal(strangers.code, 2, strangers.stderr);
    assert.match(strangers.stderr, new RegExp(`--frames: 2 frames \\(5, 6\\) are not of job ${original}, whose frames are 1-4`));
    const noFrames = rb(studio, 'rerender', original);
    assert.equal(noFrames.code, 2);
    assert.match(noFrames.stderr, /--frames/);
  });

  await t.test('a job rendered here is re-rendered here, as a new job; the ended one stays as it was', async () => {
    const scene = await v1.writeScene('local.pov');
    const out = join(v1.dir, 'out-local');
    const local = await v1.submit({ name: 'local', scene, renderer: 'povray', frames: '1-2', resolution: '32x24', output: { dir: out } });
    await waitUntil('the local job done', async () => (await v1.job(local)).state === 'done', 30_000, 100);
    await rm(join(out, 'frame_0002.png'));
    const cli = rb(v1, 'rerender', local, '--frames', '2', '--wait');
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stderr, new RegExp(`1 frame of ${local} rendered again here, from ${scene}`));
    const job = await v1.job(cli.stdout.trim());
    assert.equal(job.state, 'done');
    assert.equal(job.spec.rerenderOf, local);
    assert.equal(job.spec.site, undefined);
    assert.equal(job.name, 're-render of ' + local + ': local');
    assert.ok(await exists(join(out, 'frame_0002.png')), 'the frame is in the same output folder again');
    const before = await v1.job(local);
    assert.equal(before.state, 'done');
    assert.equal(before.counts.total, 2);
  });

  let again = '';
  await t.test('a re-render of 2 frames sends no file, renders at v1 from its kept tree, and the frames come back pixel-identical', async (t) => {
    // the studio's files change and go: the vendor must not need them
    await writeFile(scene, 'sphere { 0, 1 pigment { color rgb <0, 1, 0> } }\n');
    await rm(inc);
    await rm(frame(2));
    await rm(frame(3));
    const cli = rb(studio, 'rerender', original, '--frames', '2-3');
    assert.equal(cli.code, 0, cli.stderr);
    again = cli.stdout.trim();
    assert.match(cli.stderr, new RegExp(`2 frames of ${original} rendered again at v1, from the inputs it kept of ${original}`));
    const job = await studio.job(again);
    assert.equal(job.state, 'outsourced');
    assert.equal(job.spec.rerenderOf, original);
    assert.equal(job.outputDir, outDir);
    assert.match(rb(studio, 'job', again).stdout, new RegExp(`re-render\\s+of job ${original}, from the inputs v1 kept of it`));

    // its bundle: no file, no blob, a few KB
    const file = join(toVendor.from, `job-${again}.rbb`);
    await waitUntil('the re-render bundle', () => exists(file), 20_000, 100);
    await mkdir(join(studio.dir, 'read'), { recursive: true });
    const read = await readBundle({ source: createReadStream(file), tempDir: join(studio.dir, 'read'), dataDir: join(studio.dir, 'reader-data') });
    assert.deepEqual(read.manifest.files, []);
    assert.equal(read.blobs.size, 0);
    assert.equal(read.manifest.job?.rerenderOf, original);
    assert.equal(read.manifest.job?.frames, '2-3');
    const size = (await stat(file)).size;
    assert.ok(size < 8 * 1024, `the re-render bundle is ${size} bytes`);
    t.diagnostic(`the re-render bundle: ${size} bytes`);

    // a job that has not ended is refused: it may still be rendering
    const running = rb(studio, 'rerender', again, '--frames', '2');
    assert.equal(running.code, 1);
    assert.match(running.stderr, new RegExp(`job ${again} is outsourced: only a job that ended`));

    await carry(toVendor);
    await vendorSent(`v1.${again}.bill.rbb`);
    const there = (await v1.jobs()).find((j) => j.origin?.job === again);
    assert.ok(there, 'v1 queued the re-render with its origin');
    assert.equal(there.state, 'done');
    assert.equal(there.counts.total, 2);
    assert.ok(!(await exists(join(v1.dir, 'fed', 'jobs', 'studio', again, 'root'))), 'no second tree: it rendered from the original\'s');
    assert.equal((await ended(again)).state, 'done');
    for (const n of [2, 3]) assert.ok((await pixels(frame(n))).equals(first.get(n)!), `frame ${n} is pixel-identical`);
    assert.deepEqual((await blobs()).sort(), keptBlobs.sort(), 'nothing was added to v1\'s store');
  });

  await t.test('after the retention the tree, its reference and its blobs are gone, and a re-render is refused naming it', async () => {
    const tree = join(v1.dir, 'fed', 'jobs', 'studio', original);
    const ref = join(casDir, 'refs', `job-${original}.json`);
    // a sweep now: both ended a moment ago, within the 7 days
    const now = await vendor.sweep();
    assert.deepEqual(now.removed, []);
    assert.ok(await exists(tree));
    assert.ok(await exists(ref));
    // eight days later
    const later = await vendor.sweep({ now: Date.now() + 8 * DAY });
    assert.deepEqual(later.removed.sort(), [`studio/${again}`, `studio/${original}`].sort());
    assert.ok(!(await exists(tree)), 'the tree is gone');
    assert.ok(!(await exists(join(v1.dir, 'fed', 'jobs', 'studio', again))), 'the re-render\'s outputs went with it');
    assert.ok(!(await exists(ref)), 'the CAS reference is gone');
    assert.deepEqual(await blobs(), [], 'the blobs were collected');
    const rec = JSON.parse(await readFile(join(v1.dir, 'fed', 'remote-jobs', 'studio', `${original}.json`), 'utf8')) as RemoteJobRecord;
    assert.equal(rec.inputsGone?.keptMs, 7 * DAY);

    const cli = rb(studio, 'rerender', original, '--frames', '1');
    assert.equal(cli.code, 0, cli.stderr);
    const refused = cli.stdout.trim();
    await waitUntil('the second re-render bundle', () => exists(join(toVendor.from, `job-${refused}.rbb`)), 20_000, 100);
    await carry(toVendor);
    await vendorSent(`v1.${refused}.rejected.rbb`);
    const job = await ended(refused);
    assert.equal(job.state, 'failed');
    assert.match(job.error ?? '', new RegExp(`inputs of ${original} were removed on \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d UTC after 7 days`));
    assert.equal((await v1.jobs()).filter((j) => j.origin?.job === refused).length, 0, 'nothing was queued at v1');
  });
});
