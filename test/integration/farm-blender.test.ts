import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, readFile, readdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { decodeAny } from '../../protocol/index.ts';
import { rb, TestFarm, waitUntil } from '../helpers/farm.ts';

/*
 * Issue 17: Blender renders on the farm. The scene is made at test time by Blender's own Python
 * (no binary fixture): an animated sphere over a plane whose material reads an image texture by a
 * `//` relative path. Two render servers of one slot each render it in chunks; the same frames in
 * chunks of one and of three are pixel-identical.
 */

const MAKE_SCENE = `
import bpy, sys
argv = sys.argv[sys.argv.index('--') + 1:]
out, rig = argv[0], argv[1] == 'rig'
bpy.ops.wm.read_factory_settings(use_empty=True)
s = bpy.context.scene
s.render.engine = 'CYCLES'
s.cycles.samples = 4
s.cycles.use_denoising = False
s.cycles.seed = 7
s.render.resolution_x, s.render.resolution_y, s.render.resolution_percentage = 640, 480, 50
s.frame_start, s.frame_end = 1, 6
bpy.ops.mesh.primitive_plane_add(size=4)
plane = bpy.context.object
mat = bpy.data.materials.new('checker')
mat.use_nodes = True
nodes = mat.node_tree.nodes
img = nodes.new('ShaderNodeTexImage')
img.image = bpy.data.images.load('//tex/checker.png')
mat.node_tree.links.new(img.outputs['Color'], nodes['Principled BSDF'].inputs['Base Color'])
plane.data.materials.append(mat)
bpy.ops.mesh.primitive_uv_sphere_add(radius=0.5)
ball = bpy.context.object
ball.location = (-1.2, 0, 0.5); ball.keyframe_insert('location', frame=1)
ball.location = (1.2, 0, 0.5); ball.keyframe_insert('location', frame=6)
bpy.ops.object.camera_add(location=(0, -5, 3), rotation=(1.1, 0, 0))
s.camera = bpy.context.object
bpy.ops.object.light_add(type='SUN', location=(0, 0, 5))
if rig:
    t = bpy.data.texts.new('rig.py')
    t.write("raise ValueError('the rig script is broken')\\n")
    t.use_module = True
bpy.ops.wm.save_as_mainfile(filepath=out, relative_remap=True)
`;

/** A 16×16 checker PNG, made here (pngjs). */
function checkerPng(): Buffer {
  const png = new PNG({ width: 16, height: 16 });
  for (let y = 0; y < 16; y++) for (let x = 0; x < 16; x++) {
    const i = (y * 16 + x) * 4;
    const on = ((x >> 2) + (y >> 2)) % 2 === 0;
    png.data.set(on ? [230, 40, 40, 255] : [30, 30, 200, 255], i);
  }
  return PNG.sync.write(png);
}

let farm: TestFarm;
let proj: string;
before(async () => {
  farm = await TestFarm.start();
  proj = join(farm.dir, 'proj');
  await mkdir(join(proj, 'tex'), { recursive: true });
  await writeFile(join(proj, 'tex', 'checker.png'), checkerPng());
  await writeFile(join(proj, 'make.py'), MAKE_SCENE);
  for (const [name, rig] of [['shot.blend', 'plain'], ['rig.blend', 'rig']] as const) {
    // saved in the project's folder, so that the texture's `//tex/checker.png` resolves from it
    const r = spawnSync('blender', ['-b', '--factory-startup', '--python', join(proj, 'make.py'), '--', join(proj, name), rig], { cwd: proj, encoding: 'utf8' });
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
