import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { createAdapters, deliverTask, prepareTask, renderTask, type SlotResult } from '../../actors/render-slot/index.ts';
import type { TaskAssignment } from '../../protocol/index.ts';
import { aTaskAssignment } from '../helpers/builders.ts';
import { shellWrite, tinyExr, tinyPng, WRITE_PNG } from '../helpers/tiny-image.ts';

/*
 * Issue 17 item 2: a command template's frames are checked like any renderer's before they are
 * delivered. A file named as an image must decode as one (and be of the job's size when the
 * template was told it); a command that exits 0 without its frame, or with half of one, fails.
 */

async function workspace(t: TestContext) {
  const dir = await mkdtemp(join(tmpdir(), 'rb-cmd-check-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await mkdir(join(dir, 'scenes'));
  const scene = join(dir, 'scenes', 'shot.scene');
  await writeFile(scene, 'scene');
  return { dir, scene, out: join(dir, 'out') };
}

const adapters = createAdapters();

async function render(task: TaskAssignment): Promise<SlotResult> {
  const prepared = await prepareTask(task, adapters);
  return deliverTask(task, prepared, await renderTask(task, prepared, { adapters }), task.slot);
}

test('command output - image frames must decode: text named .png, a truncated PNG or no file at all fail RB_OUTPUT_FAILED naming the file; real images and other names pass', async (t) => {
  const w = await workspace(t);
  const task = (command: string, o: Partial<TaskAssignment> = {}) => aTaskAssignment({ scene: w.scene, outputDir: w.out, frames: [1], outputPattern: 'f_####.png', command, ...o });
  const failed = async (r: SlotResult, file: RegExp) => {
    assert.equal(r.status, 'failed');
    assert.equal(r.error?.code, 'RB_OUTPUT_FAILED', r.error?.message);
    assert.match(r.error!.message, file);
  };

  await failed(await render(task(`sh -c 'echo frame {frame} > {output}'`, { frames: [2] })), /^frame 2: \/.*\/f_0002\.png does not decode as a PNG image/);
  const cut = tinyPng(64, 64).subarray(0, 60); // the header whole, the pixels cut off
  await failed(await render(task(`sh -c '${shellWrite(cut, '{output}')}'`, { frames: [3] })), /^frame 3: \/.*\/f_0003\.png does not decode as a PNG image/);
  await failed(await render(task('true {output}', { frames: [4] })), /^frame 4: the renderer exited without writing \/.*\/f_0004\.png/);
  await failed(await render(task(`sh -c 'echo EXR > {output}'`, { frames: [5], outputPattern: 'f_####.exr' })), /^frame 5: \/.*\/f_0005\.exr is not an OpenEXR image/);
  assert.deepEqual(await readdir(w.out).then((names) => names.filter((n) => !n.startsWith('.'))), [], 'no bad frame was delivered');

  const png = await render(task(`sh -c '${WRITE_PNG}'`, { frames: [6] }));
  assert.equal(png.status, 'done', png.error?.message);
  const exr = await render(task(`sh -c '${shellWrite(tinyExr(), '{output}')}'`, { frames: [7], outputPattern: 'f_####.exr' }));
  assert.equal(exr.status, 'done', exr.error?.message);
  const text = await render(task(`sh -c 'echo frame {frame} > {output}'`, { frames: [8], outputPattern: 'f_####.txt' }));
  assert.equal(text.status, 'done', text.error?.message);
  assert.equal(await readFile(join(w.out, 'f_0008.txt'), 'utf8'), 'frame 8\n');
});

test('command output - a template told the job\'s resolution ({width} {height}) must deliver frames of that size; one not told it may write its own', async (t) => {
  const w = await workspace(t);
  const resolution = { width: 4, height: 3 };
  const task = (command: string, frame: number) => aTaskAssignment({ scene: w.scene, outputDir: w.out, frames: [frame], outputPattern: 'f_####.png', resolution, command });
  const wrong = await render(task(`sh -c ': {width} {height}; ${WRITE_PNG}'`, 1));
  assert.equal(wrong.status, 'failed');
  assert.equal(wrong.error?.code, 'RB_OUTPUT_FAILED');
  assert.match(wrong.error!.message, /^frame 1: \/.*\/f_0001\.png is 2×2, the job asks for 4×3$/);
  const right = await render(task(`sh -c ': {width} {height}; ${shellWrite(tinyPng(4, 3), '{output}')}'`, 2));
  assert.equal(right.status, 'done', right.error?.message);
  const untold = await render(task(`sh -c '${WRITE_PNG}'`, 3));
  assert.equal(untold.status, 'done', untold.error?.message);
});
