import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { createAdapters, deliverTask, prepareTask, renderTask, runProcess, type SlotResult } from '../../actors/render-slot/index.ts';
import type { FarmError, TaskAssignment } from '../../protocol/index.ts';
import { aTaskAssignment } from '../helpers/builders.ts';
import { waitUntil } from '../../tools/lib/wait-until.ts';

async function workspace(t: TestContext) {
  const dir = await mkdtemp(join(tmpdir(), 'rb-cmd-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await mkdir(join(dir, 'scenes'));
  const scene = join(dir, 'scenes', 'shot 1.scene');
  await writeFile(scene, 'scene');
  return { dir, scene, out: join(dir, 'out dir') }; // a space in the output path on purpose
}

const aTask = (o: Partial<TaskAssignment> & Pick<TaskAssignment, 'scene' | 'outputDir' | 'command'>): TaskAssignment =>
  aTaskAssignment({ jobId: 'j2', slot: 1, frames: [1, 2, 3], ...o });
const adapters = createAdapters();

/** The task log, once written: it reaches the disk just after the task ends, off the hot path. */
async function logOf(path: string, timeoutMs = 3_000): Promise<string> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    const text = await readFile(path, 'utf8').catch(() => '');
    if (/\[(exit|could not start)/.test(text) || performance.now() > end) return text;
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function render(task: TaskAssignment): Promise<SlotResult> {
  const prepared = await prepareTask(task, adapters);
  return deliverTask(task, prepared, await renderTask(task, prepared, { adapters }), task.slot);
}

test('render-slot - a command with {output} runs once per frame and its files land under their final names', async (t) => {
  const w = await workspace(t);
  const r = await render(aTask({ scene: w.scene, outputDir: w.out, command: `sh -c 'printf "%s from %s" {frame} {scene} > {output}; echo rendered {frame}'` }));
  assert.equal(r.status, 'done', r.error?.message);
  assert.deepEqual(r.outputs.map((o) => o.path), [1, 2, 3].map((f) => join(w.out, `f_000${f}.txt`)));
  assert.equal(await readFile(join(w.out, 'f_0002.txt'), 'utf8'), `2 from ${w.scene}`);
  assert.equal(r.stats.bytesWritten, 3 * `1 from ${w.scene}`.length);
  const log = await logOf(join(w.out, '.rb-logs', `${r.taskId}-a1.log`));
  assert.equal(log.match(/^\$ sh -c/gm)?.length, 3);
  assert.equal(log.match(/^rendered \d/gm)?.length, 3);
});

test('render-slot - a task that succeeds without printing anything leaves no log', async (t) => {
  const w = await workspace(t);
  const r = await render(aTask({ scene: w.scene, outputDir: w.out, command: `sh -c 'printf x > {output}'` }));
  assert.equal(r.status, 'done', r.error?.message);
  // logs reach the disk just after their task: once a later task's log is there, this one's would be too
  const later = await render(aTask({ scene: w.scene, outputDir: w.out, frames: [1], command: `sh -c 'echo said; printf x > {output}'` }));
  assert.match(await logOf(join(w.out, '.rb-logs', `${later.taskId}-a1.log`)), /said/);
  await assert.rejects(readFile(join(w.out, '.rb-logs', `${r.taskId}-a1.log`)), { code: 'ENOENT' });
});

test('render-slot - a whole-task command writes into {outdir} by the output pattern', async (t) => {
  const w = await workspace(t);
  const command = `sh -c 'for f in $(seq {first} {last}); do echo $f > {outdir}/f_$(printf %04d $f).txt; done'`;
  const r = await render(aTask({ scene: w.scene, outputDir: w.out, frames: [4, 5], command }));
  assert.equal(r.status, 'done', r.error?.message);
  assert.deepEqual(r.outputs.map((o) => o.frame), [4, 5]);
  assert.equal(await readFile(join(w.out, 'f_0005.txt'), 'utf8'), '5\n');
});

test('render-slot - exit 0 without the {output} file fails that frame clearly', async (t) => {
  const w = await workspace(t);
  const r = await render(aTask({ scene: w.scene, outputDir: w.out, frames: [7], command: 'true {output}' }));
  assert.equal(r.status, 'failed');
  assert.equal(r.error?.code, 'RB_OUTPUT_FAILED');
  assert.match(r.error!.message, /^frame 7: the renderer exited without writing .*f_0007\.txt/);
});

test('render-slot - a failing command stops the task with the tail of its stderr', async (t) => {
  const w = await workspace(t);
  const command = `sh -c 'if [ {frame} = 2 ]; then echo "loading {frame}"; echo "error: texture wood.png missing" >&2; exit 3; fi; echo ok > {output}'`;
  const r = await render(aTask({ scene: w.scene, outputDir: w.out, command }));
  assert.equal(r.status, 'failed');
  assert.deepEqual(r.error, { code: 'RB_RENDER_FAILED', message: 'sh exited with code 3: error: texture wood.png missing' });
  assert.deepEqual(r.outputs.map((o) => o.frame), [1]); // frame 1 was done; frame 3 never ran
  assert.deepEqual((await readdir(w.out)).filter((n) => !n.startsWith('.')), ['f_0001.txt']);
});

test('render-slot - cancel ends the whole process group, not just the shell', async () => {
  const ac = new AbortController();
  const p = runProcess({ argv: ['sh', '-c', 'sleep 30; echo never'], cwd: '/', signal: ac.signal, killGraceMs: 10_000 });
  setTimeout(() => ac.abort(), 100);
  const t0 = performance.now();
  const exit = await p.exited;
  // had only sh died, sleep would hold the pipes open for 30 s (or the 2 s fallback)
  assert.ok(performance.now() - t0 < 1_500, `took ${performance.now() - t0} ms`);
  assert.equal(exit.cancelled, true);
  assert.equal(exit.signal, 'SIGTERM');
});

test('render-slot - a process that ignores SIGTERM is killed after the grace period', async () => {
  let said = '';
  const p = runProcess({ argv: ['sh', '-c', 'trap "" TERM; echo ready; sleep 30'], cwd: '/', killGraceMs: 300, onOutput: (_s, text) => (said += text) });
  // cancelled once the trap is set (a fixed 100 ms was not always enough on a loaded machine)
  await waitUntil('the shell to ignore SIGTERM', () => said.includes('ready'), 10_000, 10);
  const t0 = performance.now();
  p.cancel();
  const exit = await p.exited;
  assert.equal(exit.signal, 'SIGKILL');
  assert.ok(performance.now() - t0 >= 290);
});

test('render-slot - accounting counts CPU of the whole process tree and its peak memory', async () => {
  // the CPU is burnt in a grandchild; the memory in a child node process
  const burn = await runProcess({ argv: ['sh', '-c', 'sh -c "i=0; while [ \\$i -lt 400000 ]; do i=\\$((i+1)); done"; sleep 0.2'], cwd: '/' }).exited;
  assert.equal(burn.code, 0);
  assert.ok(burn.usage.cpuMs >= 200, `cpu ${burn.usage.cpuMs} ms of wall ${burn.usage.wallMs}`);
  assert.ok(burn.usage.cpuMs <= burn.usage.wallMs * 2.2);
  const mem = await runProcess({
    argv: ['sh', '-c', `"${process.execPath}" -e "const b = Buffer.alloc(120 * 1024 * 1024, 1); setTimeout(() => b.length, 400)"`],
    cwd: '/',
  }).exited;
  assert.equal(mem.code, 0);
  assert.ok(mem.usage.peakRssKb >= 120 * 1024, `peak ${mem.usage.peakRssKb} KiB`);
});

test('render-slot - a command that is not installed is RB_RENDERER_MISSING, found before it starts', async (t) => {
  const w = await workspace(t);
  const task = aTask({ scene: w.scene, outputDir: w.out, command: 'no-such-renderer-rb {scene}' });
  await assert.rejects(prepareTask(task, adapters), (err: FarmError) => {
    assert.equal(err.code, 'RB_RENDERER_MISSING');
    assert.match(err.message, /^program 'no-such-renderer-rb' is not installed on this host: not found on PATH \(.*\/usr\/bin.*\)$/);
    return true;
  });
  await assert.rejects(readdir(w.out), { code: 'ENOENT' }); // nothing made for a task that cannot run
});
