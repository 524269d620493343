import assert from 'node:assert/strict';
import { chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import sharp from 'sharp';
import { createAdapters, deliverTask, Launcher, prepareTask, renderTask, runProcess, type AdapterLookup, type SlotResult } from '../../actors/render-slot/index.ts';
import type { FarmError, TaskAssignment } from '../../protocol/index.ts';
import { aTaskAssignment } from '../helpers/builders.ts';

const FIXTURES = new URL('../fixtures/povray/', import.meta.url);

/** A scratch dir with the broken-scene fixtures copied into `scenes/`. */
async function workspace(t: TestContext) {
  const dir = await mkdtemp(join(tmpdir(), 'rb-fail-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const scenes = join(dir, 'scenes');
  await mkdir(scenes);
  for (const f of ['parse-error.pov', 'missing-include.pov', 'standard-include.pov']) await copyFile(new URL(f, FIXTURES), join(scenes, f));
  return { dir, scenes, out: join(dir, 'out') };
}

const aPovTask = (o: Partial<TaskAssignment> & Pick<TaskAssignment, 'scene' | 'outputDir'>): TaskAssignment =>
  aTaskAssignment({ renderer: 'povray', resolution: { width: 32, height: 24 }, outputPattern: 'frame_####.png', frames: [1, 2], ...o });

const adapters = createAdapters();

async function render(task: TaskAssignment, using: AdapterLookup = adapters): Promise<SlotResult> {
  const prepared = await prepareTask(task, using, 'node-7');
  return deliverTask(task, prepared, await renderTask(task, prepared, { adapters: using, host: 'node-7' }), task.slot);
}

test('render-slot - a POV-Ray parse error is RB_SCENE_ERROR with the renderer\'s own line', async (t) => {
  const w = await workspace(t);
  const r = await render(aPovTask({ scene: join(w.scenes, 'parse-error.pov'), outputDir: w.out }));
  assert.equal(r.status, 'failed');
  assert.deepEqual(r.error, {
    code: 'RB_SCENE_ERROR',
    message: `povray: File '${w.scenes}/parse-error.pov' line 5: Parse Error: No matching } in 'sphere', undeclared identifier 'no_such_keyword_here' found instead`,
  });
  assert.deepEqual(r.outputs, []);
});

test('render-slot - a scene whose include is nowhere is RB_SCENE_ERROR naming the include and the include path searched', async (t) => {
  const w = await workspace(t);
  const r = await render(aPovTask({ scene: join(w.scenes, 'missing-include.pov'), outputDir: w.out }));
  assert.equal(r.error?.code, 'RB_SCENE_ERROR');
  // colors.inc (line 4) was found in POV-Ray's own include dir; set-dressing.inc (line 5) was not
  assert.match(r.error!.message, new RegExp(`^povray: File '${w.scenes}/missing-include\\.pov' line 5: Parse Error: Cannot open include file set-dressing\\.inc\\. \\(include path searched: ${w.scenes}, .*/usr/share/povray-3\\.7/include.*\\)$`));
});

test('render-slot - a scene this host cannot see is RB_INPUT_NOT_FOUND naming the path and host, and no renderer starts', async (t) => {
  const w = await workspace(t);
  // a "povray" that leaves a mark when it runs, to prove it never did
  const mark = join(w.dir, 'renderer-ran');
  const bin = join(w.dir, 'povray');
  await writeFile(bin, `#!/bin/sh\ntouch '${mark}'\nexit 1\n`);
  await chmod(bin, 0o755);
  const marking = createAdapters({ povrayBin: bin });
  const notVisible = async (scene: string) => {
    const task = aPovTask({ scene, outputDir: w.out });
    const err = await prepareTask(task, marking, 'node-7').then(() => assert.fail('prepared a task whose scene is not there'), (e: FarmError) => e);
    assert.equal(err.code, 'RB_INPUT_NOT_FOUND');
    // and as the slot reports it: the prepare error is the task's result
    return err.message;
  };
  // a share not mounted on this host: the message names the first part of the path that is missing
  assert.equal(
    await notVisible(join(w.dir, 'share', 'shot010', 'scene.pov')),
    `scene ${w.dir}/share/shot010/scene.pov is not visible on host node-7: ${w.dir}/share does not exist here (a share not mounted on this host, or a wrong path?)`,
  );
  assert.equal(await notVisible(join(w.scenes, 'gone.pov')), `scene ${w.scenes}/gone.pov is not visible on host node-7: there is no such file in ${w.scenes}`);
  assert.equal(await notVisible(w.scenes), `scene ${w.scenes} is not visible on host node-7: it is a folder, not a scene file`);
  await assert.rejects(stat(mark), { code: 'ENOENT' }, 'the renderer was started');
  await assert.rejects(readdir(w.out), { code: 'ENOENT' }, 'the output folder was made for a task that cannot run');
});

test('render-slot - a command job whose program is not on this host is RB_RENDERER_MISSING naming the program and host', async (t) => {
  const w = await workspace(t);
  const scene = join(w.scenes, 'parse-error.pov');
  const task = (command: string) => aTaskAssignment({ scene, outputDir: w.out, command, frames: [1] });
  const missing = async (command: string) =>
    prepareTask(task(command), adapters, 'node-7').then(() => assert.fail(`prepared '${command}'`), (e: FarmError) => {
      assert.equal(e.code, 'RB_RENDERER_MISSING');
      return e.message;
    });
  assert.match(await missing('kick -i {scene} -o {output}'), /^program 'kick' is not installed on host node-7: not found on PATH \(.*\)$/);
  assert.equal(await missing('/opt/arnold/bin/kick {scene}'), "program '/opt/arnold/bin/kick' is not installed on host node-7: /opt/arnold/bin/kick does not exist");
  const notExec = join(w.dir, 'render.sh');
  await writeFile(notExec, 'echo hi\n');
  assert.equal(await missing(`${notExec} {frame}`), `program '${notExec}' is not installed on host node-7: ${notExec} is not executable`);
  // a relative program is taken from the scene's folder, where it runs
  assert.equal(await missing('./render.sh {frame}'), `program './render.sh' is not installed on host node-7: ${w.scenes}/render.sh does not exist`);
  await assert.rejects(readdir(w.out), { code: 'ENOENT' });
  // and a program that is there runs as before
  const r = await render(task(`sh -c 'printf {frame} > {output}'`));
  assert.equal(r.status, 'done', r.error?.message);
});

test('render-slot - a scene folder gone between the check and the start is RB_INPUT_NOT_FOUND too, with or without the fork server', async (t) => {
  const w = await workspace(t);
  const gone = join(w.dir, 'gone');
  const launcher = new Launcher();
  t.after(() => launcher.close());
  for (const via of [undefined, launcher]) {
    const err = await runProcess({ argv: ['true'], cwd: gone, ...(via ? { launcher: via } : {}) }).exited.then(() => assert.fail('started in a folder that is not there'), (e: FarmError) => e);
    assert.equal(err.code, 'RB_INPUT_NOT_FOUND', err.message);
    assert.equal(err.message, `working directory '${gone}' does not exist (the scene's directory)`);
  }
});

test('render-slot - a renderer that exits 0 leaving a frame that is empty, no image, or of another size fails the task naming it; the good frame is delivered, nothing bad replaces a frame', async (t) => {
  const w = await workspace(t);
  // a "povray" that exits 0: frame 1 a real 32×24 PNG, frame 2 as the test says
  const good = join(w.dir, 'good.png');
  await writeFile(good, await sharp({ create: { width: 32, height: 24, channels: 3, background: '#336699' } }).png().toBuffer());
  const fake = async (second: string) => {
    const bin = join(w.dir, 'povray');
    // POV-Ray's work files: f<frame>.png, numbered by the animation's final frame (3: one digit)
    await writeFile(bin, `#!/bin/sh\nfor a in "$@"; do case "$a" in +O*) out=$(dirname "$(echo "$a" | sed 's/^+O"//; s/"$//')");; esac; done\ncp '${good}' "$out/f1.png"\n${second}\nexit 0\n`);
    await chmod(bin, 0o755);
    return createAdapters({ povrayBin: bin });
  };
  const cases: [string, RegExp][] = [
    [': > "$out/f2.png"', /^frame 2: the renderer wrote \S+\/f2\.png empty \(0 bytes\)$/],
    ['echo "frame 2" > "$out/f2.png"', /^frame 2: \S+\/f2\.png does not decode as a PNG image: .*unsupported image format/],
    // cut short: the header and the start of its pixels (a renderer killed mid-write that still exits 0)
    [`head -c 60 '${good}' > "$out/f2.png"`, /^frame 2: \S+\/f2\.png does not decode as a PNG image/],
  ];
  const framePath = (n: number) => join(w.out, `frame_000${n}.png`);
  for (const [second, reason] of cases) {
    await rm(w.out, { recursive: true, force: true });
    const r = await render(aPovTask({ scene: join(w.scenes, 'parse-error.pov'), outputDir: w.out }), await fake(second));
    assert.equal(r.status, 'failed', second);
    assert.equal(r.error?.code, 'RB_OUTPUT_FAILED');
    assert.match(r.error!.message, reason);
    assert.deepEqual(r.outputs.map((o) => o.frame), [1], 'the good frame is delivered');
    await assert.rejects(stat(framePath(2)), { code: 'ENOENT' }, 'no bad frame in the output folder');
  }
  // a good frame 2 already there is not replaced by a bad one of another size
  await writeFile(framePath(2), await readFile(good));
  const big = join(w.dir, 'big.png');
  await writeFile(big, await sharp({ create: { width: 320, height: 240, channels: 3, background: '#000' } }).png().toBuffer());
  const r = await render(aPovTask({ scene: join(w.scenes, 'parse-error.pov'), outputDir: w.out }), await fake(`cp '${big}' "$out/f2.png"`));
  assert.match(r.error!.message, /^frame 2: \S+\/f2\.png is 320×240, the job asks for 32×24$/);
  assert.deepEqual(await readFile(framePath(2)), await readFile(good));
});
