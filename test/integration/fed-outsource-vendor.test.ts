import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { dropFile, hotFolderDirs } from '../../sites/hotfolders/index.ts';
import { loadSiteKey } from '../../sites/links/site-key.ts';
import { rb, TestFarm, waitUntil } from '../helpers/farm.ts';

/*
 * The studio's half against the vendor's real half, without a link: two farms on this machine,
 * and the bundles carried between their hot folders by hand, as an operator without a link would
 * (studio outgoing/v1 → v1 incoming/studio, and back). The link itself is the lead's end-to-end test.
 */

const SCENE = `#include "parts.inc"
camera { location <0, 1, -4> look_at <0, 0.5, 0> }
light_source { <4, 6, -6> color rgb 1 }
plane { y, 0 pigment { image_map { png "checker.png" } rotate x * 90 scale 2 } }
sphere { <-1.5 + clock * 0.3, 0.5, 0>, 0.5 texture { Ball } }
`;

/** Raw RGB pixels of a PNG, to compare two renders pixel by pixel. */
const pixels = async (file: string) => (await sharp(file).raw().toBuffer()).toString('base64');

let studio: TestFarm;
let vendor: TestFarm;
let proj: string;

before(async () => {
  studio = await TestFarm.start({ site: 'studio', peers: ['v1'], tmpBase: '/var/tmp' });
  vendor = await TestFarm.start({ site: 'v1' });
  await Promise.all([studio.scheduler(), vendor.registry().then(() => vendor.scheduler())]);
  await vendor.renderServer('v1-node', 2);
  await vendor.remoteIntake(['studio']);
  const vendorKey = (await loadSiteKey(vendor.dir)).publicKey;
  await studio.studioIntake({ peerKey: (peer) => (peer === 'v1' ? vendorKey : undefined) });
  proj = join(studio.dir, 'proj');
  await mkdir(proj, { recursive: true });
  await writeFile(join(proj, 'shot.pov'), SCENE);
  await writeFile(join(proj, 'parts.inc'), '#declare Ball = texture { pigment { color rgb <1, 0.3, 0.2> } finish { phong 0.5 } };\n');
  const px = Buffer.from([255, 255, 255, 30, 60, 200, 30, 60, 200, 255, 255, 255]);
  await sharp(px, { raw: { width: 2, height: 2, channels: 3 } }).resize(64, 64, { kernel: 'nearest' }).png().toFile(join(proj, 'checker.png'));
});

after(async () => {
  await studio?.stop();
  await vendor?.stop();
});

const specOf = (name: string, frames: string, resolution = '64x48') => ({
  name, scene: join(proj, 'shot.pov'), renderer: 'povray' as const, frames, resolution, supportFiles: [join(proj, 'parts.inc'), join(proj, 'checker.png')],
  output: { dir: join(studio.dir, `out-${name}`), pattern: 'shot_####.png' },
});

const carried = new Set<string>();
/** The carrier: every bundle either side drops in its outgoing folder goes to the other's incoming, once. */
async function carry(): Promise<void> {
  const toVendor = { from: hotFolderDirs(studio.dataDir, 'v1').outgoing, to: hotFolderDirs(vendor.dir, 'studio').incoming };
  const toStudio = { from: hotFolderDirs(vendor.dir, 'studio').outgoing, to: hotFolderDirs(studio.dataDir, 'v1').incoming };
  for (const way of [toVendor, toStudio]) {
    await mkdir(way.to, { recursive: true });
    for (const name of (await readdir(way.from).catch(() => [] as string[])).filter((n) => n.endsWith('.rbb')).sort()) {
      if (carried.has(`${way.from}/${name}`)) continue;
      await dropFile(way.to, name, join(way.from, name));
      carried.add(`${way.from}/${name}`);
    }
  }
}

test('fed-outsource-vendor - a job sent to v1 and carried by hand comes back rendered, pixel for pixel as v1 renders it here, with its bill signed', async () => {
  const spec = specOf('shot', '1-3');
  const outDir = spec.output.dir;
  const jobId = await studio.submit({ ...spec, site: 'v1' });
  const job = await waitUntil(`job ${jobId} to come back done`, async () => {
    await carry();
    const j = await studio.job(jobId);
    if (j.state === 'failed' || j.state === 'cancelled') throw new Error(`job ${j.state}: ${j.error ?? ''}\n${studio.logs()}\n${vendor.logs()}`);
    return j.state === 'done' ? j : undefined;
  }, 120_000, 300);
  assert.deepEqual(job.counts, { total: 3, queued: 0, running: 0, done: 3, failed: 0 });
  assert.equal(job.outsourced?.site, 'v1');

  // the bill comes after the result: wait for it, signed by v1's site key
  const billed = await waitUntil('the bill', async () => {
    await carry();
    const j = await studio.job(jobId);
    return j.outsourced?.bill ? j : undefined;
  }, 30_000, 300);
  assert.equal(billed.outsourced?.bill?.signed, true);
  assert.equal(billed.outsourced?.bill?.frames, 3);

  // the same scene rendered at v1 as a job of its own: the frames that came back are the same pixels
  const localOut = join(vendor.dir, 'local-out');
  const local = await vendor.submit({ ...spec, name: 'local', output: { dir: localOut, pattern: 'shot_####.png' } });
  await vendor.waitJob(local, 'done', 60_000);
  for (const n of [1, 2, 3]) {
    const name = `shot_000${n}.png`;
    assert.equal(await pixels(join(outDir, name)), await pixels(join(localOut, name)), `frame ${n}`);
  }
  // its logs and sample thumbnails landed beside the frames
  assert.ok((await readdir(join(outDir, '.rb-logs', 'remote-v1'))).some((n) => n.endsWith('.log')));
  assert.ok((await readdir(join(outDir, '.rb-samples'))).length > 0);
  // nothing went to failed/ on either side
  assert.deepEqual(await readdir(hotFolderDirs(studio.dataDir, 'v1').failed).then((l) => l.filter((n) => n.endsWith('.reason.txt'))), []);
});

test('fed-outsource-vendor - cancel at the studio, carried to v1, stops the job there, and v1 says so', async () => {
  // long enough at v1 that the cancel finds it rendering
  const jobId = await studio.submit({ ...specOf('long', '1-400', '640x480'), site: 'v1' });
  await waitUntil('v1 to start it', async () => {
    await carry();
    return (await studio.job(jobId)).outsourced?.state === 'started';
  }, 60_000, 300);
  assert.equal(rb(studio, 'cancel', jobId).code, 0);
  assert.equal((await studio.job(jobId)).state, 'cancelled');
  const theirs = await waitUntil('v1 to say it cancelled the job', async () => {
    await carry();
    const j = await studio.job(jobId);
    return j.outsourced?.state === 'cancelled' ? j : undefined;
  }, 60_000, 300);
  assert.equal(theirs.state, 'cancelled');
  assert.ok(theirs.counts.done < 400, 'it did not render to the end');
  const atVendor = (await vendor.jobs()).find((j) => j.jobId === theirs.outsourced?.remoteJob);
  assert.equal(atVendor?.state, 'cancelled');
});
