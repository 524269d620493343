import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, readFile, readdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PNG } from 'pngjs';
import { decodeAny } from '../../protocol/index.ts';
import { rb, rbAsync, TestFarm, waitUntil } from '../helpers/farm.ts';

/*
 * Issue 17: Blender renders on the farm. The scene is made at test time by Blender's own Python
 * (no binary fixture): an animated sphere over a plane whose material reads an image texture by a
 * `//` relative path. Two render servers of one slot each render it in chunks; the same frames in
 * chunks of one and of three are pixel-identical.
 */

/** The scene's maker (Blender's own Python): a sphere over a plane with a `//tex/checker.png` texture. */
const MAKE_SCENE = fileURLToPath(new URL('../../tools/demo/blender-scene.py', import.meta.url));

let farm: TestFarm;
let proj: string;
before(async () => {
  farm = await TestFarm.start();
  proj = join(farm.dir, 'proj');
  await mkdir(proj, { recursive: true });
  const scenes = [['shot.blend', '640x480', []], ['rig.blend', '640x480', ['--rig']], ['small.blend', '64x48', []]] as const;
  for (const [name, size, extra] of scenes) {
    // the texture is written beside the scene (tex/checker.png) and read back by a `//` relative path
    const r = spawnSync('blender', ['-b', '--factory-startup', '--python', MAKE_SCENE, '--', join(proj, name), '--frames', '6', '--size', size, '--samples', '4', ...extra], { encoding: 'utf8' });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  }
  await farm.registry();
  await farm.scheduler();
  await Promise.all([farm.renderServer('left', 1), farm.renderServer('right', 1)]);
});
after(async () => farm?.stop());

const pixels = async (file: string) => PNG.sync.read(await readFile(file));

test('blender - a .blend scene renders in chunks on two render servers: every frame a PNG of the job\'s size, progress seen, pixels the same whatever the chunking', async () => {
  const progress = new Set<string>();
  const sub = farm.nc.subscribe(`rb.${farm.site}.evt.frame.*.*.progress`, { callback: (_e, m) => {
    const e = decodeAny(m.data) as { jobId: string; frame: number; percent?: number };
    progress.add(`${e.jobId}:${e.frame}:${e.percent}`);
  } });
  const job = (name: string, chunk: number) => farm.submit({
    name, scene: join(proj, 'shot.blend'), frames: '1-6', chunk, resolution: '160x120', blender: { samples: 4, denoise: false },
    output: { dir: join(farm.dir, `out-${name}`), pattern: 'shot_####.png' },
  });
  const threes = await job('threes', 3);
  const ones = await job('ones', 1);
  const [a, b] = await Promise.all([threes, ones].map((id) => farm.waitJob(id, 'done', 240_000).catch((e: Error) => assert.fail(`${e.message}\n${farm.logs()}`))));
  sub.unsubscribe();
  assert.deepEqual(new Set(a!.frames.map((f) => f.host)), new Set(['left', 'right']), 'both render servers took a chunk');
  const names = ['shot_0001.png', 'shot_0002.png', 'shot_0003.png', 'shot_0004.png', 'shot_0005.png', 'shot_0006.png'];
  assert.deepEqual((await readdir(join(farm.dir, 'out-threes'))).filter((f) => f.endsWith('.png')).sort(), names);
  for (const name of names) {
    const [x, y] = await Promise.all([pixels(join(farm.dir, 'out-threes', name)), pixels(join(farm.dir, 'out-ones', name))]);
    assert.deepEqual([x.width, x.height], [160, 120], name);
    assert.ok(x.data.equals(y.data), `${name}: the same pixels in chunks of 3 and of 1`);
  }
  const first = await pixels(join(farm.dir, 'out-threes', names[0]!));
  const last = await pixels(join(farm.dir, 'out-threes', names[5]!));
  assert.ok(!first.data.equals(last.data), 'the sphere moves');
  assert.equal(b!.counts.done, 6);
  // the slot sends a frame's progress at most so often: a frame of 0.3 s shows its start
  for (const id of [threes, ones]) assert.ok([...progress].some((p) => p.startsWith(`${id}:`)), `progress events of job ${id}: ${[...progress].join(' ')}`);
});

test('blender - a texture that is not there keeps the job waiting, naming it (as any file a host cannot see); a scene script that fails fails the job with its Python error', async () => {
  // the texture moved away after the scene was made
  await rename(join(proj, 'tex'), join(proj, 'tex-moved'));
  try {
    const id = await farm.submit({ name: 'no-tex', scene: join(proj, 'shot.blend'), frames: '1', resolution: '32x24', blender: { denoise: false }, output: { dir: join(farm.dir, 'out-no-tex') } });
    const texture = join(proj, 'tex', 'checker.png').replace(/[.]/g, '\\.');
    const waiting = await waitUntil('the job to say why it waits', async () => (await farm.job(id)).waiting, 120_000);
    assert.match(waiting, new RegExp(`cannot see its files \\(RB_INPUT_NOT_FOUND: blender: the scene reads a file that host \\S+ cannot see: ${texture}`));
    assert.equal(rb(farm, 'cancel', id).code, 0);
  } finally {
    await rename(join(proj, 'tex-moved'), join(proj, 'tex'));
  }
  const rig = await farm.submit({ name: 'rig', scene: join(proj, 'rig.blend'), frames: '1-2', resolution: '32x24', blender: { scripts: true, denoise: false }, output: { dir: join(farm.dir, 'out-rig') } });
  const failed = await farm.waitJob(rig, 'failed', 120_000);
  assert.match(failed.error ?? '', /RB_SCENE_ERROR: blender: the scene's Python failed: ValueError: the rig script is broken \(in .*rig\.blend.rig\.py\)/);
  // without `scripts` Blender skips the script and the scene renders
  const skipped = await farm.submit({ name: 'rig-off', scene: join(proj, 'rig.blend'), frames: '1', resolution: '32x24', blender: { denoise: false }, output: { dir: join(farm.dir, 'out-rig-off') } });
  await farm.waitJob(skipped, 'done', 120_000);
});

test('blender - the probe reports the engines: a host whose Blender cannot make a GL context offers Cycles alone, and an Eevee job waits naming it', async () => {
  // this host's Blender, as on a host without EGL: it aborts making the context (the probe's 1×1 Workbench render)
  const noGl = join(farm.dir, 'no-gl');
  await mkdir(noGl);
  const real = spawnSync('sh', ['-c', 'command -v blender'], { encoding: 'utf8' }).stdout.trim();
  await writeFile(join(noGl, 'blender'), `#!/bin/sh\n__EGL_VENDOR_LIBRARY_DIRS=/nonexistent exec ${real} "$@"\n`, { mode: 0o755 });
  await farm.renderServer('flat', 1, ['--licenses', 'flat,flat-only'], { PATH: `${noGl}:${process.env.PATH}` });
  const hosts = await farm.hosts();
  const engines = (h: string) => hosts.find((r) => r.host === h)?.inventory.packages.find((p) => p.name === 'blender')?.engines;
  assert.deepEqual(engines('flat'), ['CYCLES']);
  assert.ok(engines('left')?.includes('CYCLES'), `left: ${JSON.stringify(engines('left'))}`);
  // only 'flat' holds both licenses: the others miss more, so the reason names 'flat' and the engine
  const id = await farm.submit({ name: 'eevee', scene: join(proj, 'shot.blend'), frames: '1', resolution: '32x24', blender: { engine: 'eevee' }, requirements: { licenses: ['flat', 'flat-only'] }, output: { dir: join(farm.dir, 'out-eevee') } });
  const waiting = await waitUntil('the Eevee job to say why it waits', async () => (await farm.job(id)).waiting, 20_000);
  assert.match(waiting, /no host matches the requirements \(flat needs the blender engine BLENDER_EEVEE, blender 3\.4\.1 has CYCLES/);
  assert.equal(rb(farm, 'cancel', id).code, 0);
});

test('blender - the Open Job Description sample (tools/templates/openjd/blender-chunks.yaml) renders its chunk in one Blender process, at the scene\'s own settings', async () => {
  const out = join(farm.dir, 'out-openjd');
  const sample = fileURLToPath(new URL('../../tools/templates/openjd/blender-chunks.yaml', import.meta.url));
  const r = await rbAsync(farm, 'submit', sample, '--param', `BlendFile=${join(proj, 'small.blend')}`, '--param', `OutputDir=${out}`,
    '--param', 'Frames=1-3', '--param', 'ChunkSize=3', '--output', join(farm.dir, 'openjd-jobs'), '--wait');
  assert.equal(r.code, 0, r.stderr);
  const job = await farm.job(r.stdout.trim());
  assert.equal(job.state, 'done');
  assert.equal(new Set(job.frames.map((f) => f.taskIndex)).size, 1, 'frames 1-3 in one task: one Blender process');
  const files = (await readdir(out)).sort();
  assert.deepEqual(files, ['frame_0001.png', 'frame_0002.png', 'frame_0003.png']);
  for (const f of files) {
    const png = await pixels(join(out, f));
    assert.deepEqual([png.width, png.height], [64, 48], `${f}: the scene's own resolution`);
  }
});
