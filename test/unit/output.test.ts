import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { prepareDirs, removeWorkDir, storeFrames, taskPaths, TaskLog } from '../../actors/render-slot/index.ts';
import { PARTIAL_DIR, removeOtherRuns } from '../../actors/render-slot/output.ts';
import { FarmError } from '../../protocol/index.ts';
import { waitUntil } from '../../tools/lib/wait-until.ts';

async function outDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'rb-output-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('output - work dir and log live inside the output dir, named by task and attempt', () => {
  assert.deepEqual(taskPaths('/farm/out/j1', 'j1.3', 2), {
    workDir: '/farm/out/j1/.rb-partial/j1.3-a2',
    logFile: '/farm/out/j1/.rb-logs/j1.3-a2.log',
  });
  assert.equal(taskPaths('/farm/out/j1', 'j1.3', 2, 'node-4.1').workDir, '/farm/out/j1/.rb-partial/j1.3-a2-node-4.1', 'the lease holder\'s own, when named');
  assert.throws(() => taskPaths('/out', 'j1.0', 1, '../x.1'), /not a host\.slot/);
});

test('output - refuses paths that could escape the output dir', () => {
  const bad = (fn: () => unknown, text: RegExp) => assert.throws(fn, (e: unknown) => e instanceof FarmError && e.code === 'RB_BAD_JOB' && text.test(e.message));
  bad(() => taskPaths('relative/out', 'j1.0', 1), /must be an absolute path/);
  bad(() => taskPaths('/out', '../../etc', 1), /cannot name a file/);
  bad(() => taskPaths('/out', 'a/b', 1), /cannot name a file/);
  bad(() => taskPaths('/out', 'j..0', 1), /no '\.\.'/);
  bad(() => taskPaths('/out', 'j1.0', 0), /attempt 0/);
});

test('output - frames move to their final names by rename; nothing else lands in the output dir', async (t) => {
  const out = await outDir(t);
  const p = taskPaths(out, 'j1.0', 1);
  await prepareDirs(p, out);
  await writeFile(join(p.workDir, 'f1.png'), 'one');
  await writeFile(join(p.workDir, 'f2.png'), 'frame two');
  const before = await stat(join(p.workDir, 'f2.png'));
  const r = await storeFrames(out, 'shot_###.png', [{ frame: 1, file: join(p.workDir, 'f1.png') }, { frame: 2, file: join(p.workDir, 'f2.png') }]);
  assert.deepEqual(r.missing, []);
  assert.deepEqual(r.stored, [
    { frame: 1, path: join(out, 'shot_001.png'), bytes: 3 },
    { frame: 2, path: join(out, 'shot_002.png'), bytes: 9 },
  ]);
  // same inode: a rename, so the file appeared under its final name whole
  assert.equal((await stat(join(out, 'shot_002.png'))).ino, before.ino);
  assert.equal(await readFile(join(out, 'shot_002.png'), 'utf8'), 'frame two');
  await removeWorkDir(p.workDir);
  assert.deepEqual((await readdir(out)).sort(), ['.rb-logs', '.rb-partial', 'shot_001.png', 'shot_002.png']);
  assert.deepEqual(await readdir(join(out, '.rb-partial')), []);
});

test('output - a frame the renderer did not write is reported, the others are stored', async (t) => {
  const out = await outDir(t);
  const p = taskPaths(out, 'j1.4', 1);
  await prepareDirs(p, out);
  await writeFile(join(p.workDir, 'a.png'), 'x');
  const r = await storeFrames(out, 'f_#.png', [{ frame: 8, file: join(p.workDir, 'a.png') }, { frame: 9, file: join(p.workDir, 'b.png') }]);
  assert.deepEqual(r.stored.map((s) => s.frame), [8]);
  assert.equal(r.missing.length, 1);
  assert.equal(r.missing[0]!.frame, 9);
  assert.match(r.missing[0]!.reason, /exited without writing .*b\.png/);
  await assert.rejects(stat(join(out, 'f_9.png')), /ENOENT/);
});

test('output - a stale work dir of the same attempt is emptied before the task runs', async (t) => {
  const out = await outDir(t);
  const p = taskPaths(out, 'j2.0', 3);
  await prepareDirs(p, out);
  await writeFile(join(p.workDir, 'f1.png'), 'left over by a crash');
  await prepareDirs(p, out);
  assert.deepEqual(await readdir(p.workDir), []);
  assert.ok((await stat(join(out, '.rb-logs'))).isDirectory());
});

test('output - an output dir that cannot be created is an RB_OUTPUT_FAILED error', async (t) => {
  const out = await outDir(t);
  await writeFile(join(out, 'file'), 'not a directory');
  const under = join(out, 'file', 'sub');
  await assert.rejects(prepareDirs(taskPaths(under, 'j1.0', 1), under), (e: unknown) => e instanceof FarmError && e.code === 'RB_OUTPUT_FAILED' && /cannot create the work directory/.test(e.message));
});

test('output - a short task log is written in one piece when the task ends', async (t) => {
  const out = await outDir(t);
  const path = join(out, 'short.log');
  const log = new TaskLog(path);
  log.write('$ true\n');
  log.write('[exit 0]\n');
  await assert.rejects(stat(path), /ENOENT/); // nothing touched the disk yet
  await log.close();
  assert.equal(await readFile(path, 'utf8'), '$ true\n[exit 0]\n');
});

test('output - a long task log streams to disk before the task ends', async (t) => {
  const out = await outDir(t);
  const path = join(out, 'long.log');
  const log = new TaskLog(path);
  const line = `${'x'.repeat(99)}\n`;
  for (let i = 0; i < 700; i++) log.write(line); // 70 000 characters
  // on disk while the task still runs (no close yet): waited for, not given a fixed 50 ms on a loaded machine
  await waitUntil('the log to stream to disk', async () => (await stat(path)).size >= 64 * 1024, 10_000, 10);
  log.write('end\n');
  await log.close();
  assert.equal((await readFile(path, 'utf8')).length, 700 * 100 + 4);
});

test('output - a log that cannot be written is reported once and never throws', async (t) => {
  const out = await outDir(t);
  const errors: Error[] = [];
  const log = new TaskLog(join(out, 'missing-dir', 'x.log'), (e) => errors.push(e));
  log.write('a\n');
  await log.close();
  log.write('b\n');
  await log.close();
  assert.equal(errors.length, 1);
  assert.match(errors[0]!.message, /ENOENT/);
});

test('output - a run clears the work dirs other runs of its task left behind: earlier attempts, and its own attempt on other slots', async (t) => {
  const out = await mkdtemp(join(tmpdir(), 'rb-attempts-'));
  t.after(() => rm(out, { recursive: true, force: true }));
  const dir = (task: string, attempt: number, holder: string) => taskPaths(out, task, attempt, holder).workDir;
  for (const d of [dir('job.7', 1, 'h1.0'), dir('job.7', 2, 'h1.0'), dir('job.7', 3, 'h1.0'), dir('job.7', 3, 'h2.3'), dir('job.7', 4, 'h2.3'), dir('job.8', 1, 'h1.0'), dir('job.70', 1, 'h1.0')]) {
    await mkdir(d, { recursive: true });
  }
  await removeOtherRuns(out, 'job.7', 3, dir('job.7', 3, 'h1.0'));
  assert.deepEqual((await readdir(join(out, PARTIAL_DIR))).sort(), ['job.7-a3-h1.0', 'job.7-a4-h2.3', 'job.70-a1-h1.0', 'job.8-a1-h1.0']);
});
