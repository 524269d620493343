import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test, type TestContext } from 'node:test';
import { PNG } from 'pngjs';
import {
  createAdapters, deliverTask, prepareTask, renderTask,
  type Progress, type SlotResult,
} from '../../actors/render-slot/index.ts';
import type { FarmError, TaskAssignment } from '../../protocol/index.ts';
import { aTaskAssignment } from '../helpers/builders.ts';

// Small, fast, and visibly animated: the sphere moves and changes colour with clock (= frame number).
const SCENE = `#version 3.7;
global_settings { assumed_gamma 1.0 }
camera { location <0, 2, -5> look_at <0, 0.5, 0> }
light_source { <5, 10, -5> color rgb 1 }
sphere { <clock * 0.2 - 1, 0.6, 0>, 0.7 pigment { color rgb <clock / 10, 0.4, 1 - clock / 10> } }
plane { y, 0 pigment { checker color rgb 1 color rgb 0.1 } }
`;
const BAD_SCENE = `#version 3.7;
camera { location <0, 2, -5> look_at <0, 0, 0> }
sphere { <0, 0, 0>, 1 pigment { color rgb <1, 0, 0> } no_such_keyword_here }
`;
const DEMO_SCENE = fileURLToPath(new URL('../../tools/demo/scene.pov', import.meta.url));

async function workspace(t: TestContext) {
  const dir = await mkdtemp(join(tmpdir(), 'rb-pov-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const scene = join(dir, 'scenes', 'anim.pov');
  const bad = join(dir, 'scenes', 'bad.pov');
  await mkdir(join(dir, 'scenes'));
  await writeFile(scene, SCENE);
  await writeFile(bad, BAD_SCENE);
  return { dir, scene, bad, out: join(dir, 'out') };
}

const aTask = (o: Partial<TaskAssignment> & Pick<TaskAssignment, 'scene' | 'outputDir' | 'frames'>): TaskAssignment =>
  aTaskAssignment({ renderer: 'povray', resolution: { width: 64, height: 48 }, outputPattern: 'frame_####.png', ...o });

const adapters = createAdapters();

async function render(task: TaskAssignment, onProgress?: (p: Progress) => void, signal?: AbortSignal): Promise<SlotResult> {
  const prepared = await prepareTask(task, adapters);
  const outcome = await renderTask(task, prepared, { adapters, onProgress, signal, killGraceMs: 2_000 });
  return deliverTask(task, prepared, outcome, task.slot);
}

/** The task log, once written: it reaches the disk just after the task ends, off the hot path. */
async function logOf(path: string, timeoutMs = 3_000): Promise<string> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    const text = await readFile(path, 'utf8').catch(() => '');
    if (/\[(exit|could not start)/.test(text) || performance.now() > end) return text;
    await new Promise((r) => setTimeout(r, 10));
  }
}

const pixels = async (path: string) => PNG.sync.read(await readFile(path));

test('render-slot - renders a POV-Ray chunk in one process into atomically named frames', async (t) => {
  const w = await workspace(t);
  const progress: Progress[] = [];
  const task = aTask({ scene: w.scene, outputDir: w.out, frames: [1, 2, 3, 4] });
  const r = await render(task, (p) => progress.push(p));
  assert.equal(r.status, 'done', r.error?.message);
  assert.deepEqual(r.outputs, [1, 2, 3, 4].map((f) => ({ frame: f, path: join(w.out, `frame_000${f}.png`) })));
  let bytes = 0;
  for (const { path } of r.outputs) {
    const png = await pixels(path);
    assert.equal(png.width, 64);
    assert.equal(png.height, 48);
    bytes += (await stat(path)).size;
  }
  // only final names in the output dir; the private work dir is gone
  assert.deepEqual((await readdir(w.out)).sort(), ['.rb-logs', '.rb-partial', 'frame_0001.png', 'frame_0002.png', 'frame_0003.png', 'frame_0004.png']);
  assert.deepEqual(await readdir(join(w.out, '.rb-partial')), []);
  assert.ok(r.stats.wallMs > 100, `wall ${r.stats.wallMs}`);
  assert.ok(r.stats.cpuMs > 0, `cpu ${r.stats.cpuMs}`);
  assert.ok(r.stats.peakRssKb > 1000, `rss ${r.stats.peakRssKb}`);
  assert.equal(r.stats.bytesWritten, bytes);
  assert.deepEqual([...new Set(progress.map((p) => p.frame))], [1, 2, 3, 4]);
  assert.ok(progress.some((p) => p.percent === 100));
  const log = await logOf(join(w.out, '.rb-logs', `${task.taskId}-a1.log`));
  assert.match(log, /^\$ povray \+I"/);
  assert.match(log, /Rendering frame 4 of 4/);
  assert.match(log, /\[exit 0 /);
});

test('render-slot - the same frames render the same pixels however they are chunked (clock = frame number)', async (t) => {
  const w = await workspace(t);
  const whole = join(w.out, 'whole');
  const split = join(w.out, 'split');
  const rs = await Promise.all([
    render(aTask({ scene: w.scene, outputDir: whole, frames: [3, 4, 5, 6] })),
    render(aTask({ scene: w.scene, outputDir: split, frames: [3, 4] })),
    render(aTask({ scene: w.scene, outputDir: split, frames: [5] })),
    render(aTask({ scene: w.scene, outputDir: split, frames: [6] })),
  ]);
  for (const r of rs) assert.equal(r.status, 'done', r.error?.message);
  for (const f of [3, 4, 5, 6]) {
    const name = `frame_000${f}.png`;
    // PNG bytes differ only in POV-Ray's "Render Date" text chunk; the pixels must match
    assert.ok((await pixels(join(whole, name))).data.equals((await pixels(join(split, name))).data), `frame ${f} differs between chunkings`);
  }
  // and the animation really moves, so the comparison above means something
  assert.ok(!(await pixels(join(whole, 'frame_0003.png'))).data.equals((await pixels(join(whole, 'frame_0004.png'))).data));
});

test('render-slot - a scene with a parse error fails as the scene\'s, with POV-Ray\'s error line, and leaves no frames', async (t) => {
  const w = await workspace(t);
  const r = await render(aTask({ scene: w.bad, outputDir: w.out, frames: [1, 2] }));
  assert.equal(r.status, 'failed');
  assert.equal(r.error?.code, 'RB_SCENE_ERROR');
  assert.match(r.error!.message, /^povray: File '.*bad\.pov' line 3: Parse Error: .*no_such_keyword_here/);
  assert.deepEqual(r.outputs, []);
  assert.deepEqual((await readdir(w.out)).sort(), ['.rb-logs', '.rb-partial']);
});

test('render-slot - cancelling a chunk stops POV-Ray and keeps the frames it had finished', async (t) => {
  const w = await workspace(t);
  const ac = new AbortController();
  const task = aTask({ scene: w.scene, outputDir: w.out, frames: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], resolution: { width: 320, height: 240 } });
  const started = performance.now();
  const r = await render(task, (p) => {
    if (p.frame === 3) ac.abort();
  }, ac.signal);
  assert.equal(r.status, 'failed');
  assert.equal(r.error?.message, 'task cancelled');
  assert.deepEqual(r.outputs.map((o) => o.frame), [1, 2]);
  assert.ok(performance.now() - started < 8_000);
  assert.deepEqual(await readdir(join(w.out, '.rb-partial')), []);
});

test('render-slot - a host without POV-Ray fails the task as RB_RENDERER_MISSING before anything is written', async (t) => {
  const w = await workspace(t);
  const missing = createAdapters({ povrayBin: join(w.dir, 'no-povray-here') });
  const task = aTask({ scene: w.scene, outputDir: w.out, frames: [1] });
  await assert.rejects(prepareTask(task, missing, 'node-7'), (err: FarmError) => {
    assert.equal(err.code, 'RB_RENDERER_MISSING');
    assert.equal(err.message, `program '${join(w.dir, 'no-povray-here')}' is not installed on host node-7: ${join(w.dir, 'no-povray-here')} does not exist`);
    return true;
  });
  await assert.rejects(stat(w.out), { code: 'ENOENT' });
});

test('render-slot - the demo scene renders and animates', async (t) => {
  const w = await workspace(t);
  const r = await render(aTask({ scene: DEMO_SCENE, outputDir: w.out, frames: [9, 10], resolution: { width: 80, height: 60 } }));
  assert.equal(r.status, 'done', r.error?.message);
  const [a, b] = await Promise.all(r.outputs.map((o) => pixels(o.path)));
  assert.equal(a!.width, 80);
  assert.ok(!a!.data.equals(b!.data));
});
