import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { FarmError } from '../../protocol/index.ts';
import { LOGS_DIR, PARTIAL_DIR, prepareDirs, storeFrames, taskPaths, TaskLog } from '../../actors/render-slot/index.ts';
import { checkRealDir, openToAppend, openToRead } from '../../actors/files/index.ts';
import { thumbnail, ThumbnailError } from '../../actors/media/index.ts';
import { readTail, ThumbnailCache } from '../../tools/web/index.ts';

const SECRET = 'root:$6$not-for-artists:19000:0:99999:7:::\n';

/**
 * An output folder an artist controls, and beside it a "victim" folder standing in for the
 * farm's own files (a stand-in for /etc/shadow, which the artist may not read or write).
 */
async function setting(t: TestContext) {
  const dir = await mkdtemp(join(tmpdir(), 'rb-links-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const out = join(dir, 'out');
  const victim = join(dir, 'victim');
  await mkdir(out);
  await mkdir(victim);
  const shadow = join(victim, 'shadow');
  await writeFile(shadow, SECRET);
  /** The victim folder holds exactly what it held, byte for byte. */
  const untouched = async () => {
    assert.deepEqual(await readdir(victim), ['shadow'], 'nothing was created in the victim folder');
    assert.equal(await readFile(shadow, 'utf8'), SECRET, 'the victim file was not written');
  };
  return { out, victim, shadow, untouched };
}

const unsafe = (e: unknown) => e instanceof FarmError && e.code === 'RB_UNSAFE_PATH';

test('output links - a task log planted as a link is never written through, in one piece or streamed', async (t) => {
  const s = await setting(t);
  await mkdir(join(s.out, LOGS_DIR));
  for (const [name, text] of [['j1.0-a1.log', 'short\n'], ['j1.1-a1.log', 'x'.repeat(70_000)]] as const) {
    const path = join(s.out, LOGS_DIR, name);
    await symlink(s.shadow, path);
    const errors: Error[] = [];
    const log = new TaskLog(path, (e) => errors.push(e), s.out);
    log.write(text);
    await log.close();
    assert.equal(errors.length, 1, name);
    assert.ok(unsafe(errors[0]), String(errors[0]));
    assert.match(errors[0]!.message, /is a symbolic link/);
    assert.ok((await lstat(path)).isSymbolicLink(), 'the link is left as it was');
  }
  await s.untouched();
});

test('output links - a log folder planted as a link fails the task before anything is written', async (t) => {
  const s = await setting(t);
  await symlink(s.victim, join(s.out, LOGS_DIR));
  const p = taskPaths(s.out, 'j2.0', 1);
  await assert.rejects(prepareDirs(p, s.out), (e: unknown) => unsafe(e) && /\.rb-logs is a symbolic link/.test((e as Error).message));
  // the log itself refuses it too (a link swapped in after the task was prepared)
  const errors: Error[] = [];
  const log = new TaskLog(p.logFile, (e) => errors.push(e), s.out);
  log.write('hello\n');
  await log.close();
  assert.ok(unsafe(errors[0]), String(errors[0]));
  await s.untouched();
});

test('output links - a work folder planted as a link fails the task, and a planted work dir is replaced, not followed', async (t) => {
  const s = await setting(t);
  await symlink(s.victim, join(s.out, PARTIAL_DIR));
  const p = taskPaths(s.out, 'j3.0', 1, 'h1.0');
  await assert.rejects(prepareDirs(p, s.out), (e: unknown) => unsafe(e) && /\.rb-partial is a symbolic link/.test((e as Error).message));
  await s.untouched();

  await rm(join(s.out, PARTIAL_DIR));
  await mkdir(join(s.out, PARTIAL_DIR));
  await symlink(s.victim, p.workDir); // the attempt's own work dir, by its name
  await prepareDirs(p, s.out);
  const st = await lstat(p.workDir);
  assert.ok(st.isDirectory() && !st.isSymbolicLink(), 'a real, empty work dir took the link\'s place');
  assert.deepEqual(await readdir(p.workDir), []);
  await s.untouched();
});

test('output links - a link at a frame\'s final name is replaced by the frame; a link the renderer made is not delivered', async (t) => {
  const s = await setting(t);
  const p = taskPaths(s.out, 'j4.0', 1);
  await prepareDirs(p, s.out);
  await symlink(s.shadow, join(s.out, 'f_1.png')); // planted where frame 1 will land
  await writeFile(join(p.workDir, 'a.png'), 'frame one');
  await symlink(s.shadow, join(p.workDir, 'b.png')); // `ln -s /etc/shadow {output}`
  const r = await storeFrames(s.out, 'f_#.png', [{ frame: 1, file: join(p.workDir, 'a.png') }, { frame: 2, file: join(p.workDir, 'b.png') }]);
  assert.deepEqual(r.stored.map((f) => f.frame), [1]);
  assert.equal(await readFile(join(s.out, 'f_1.png'), 'utf8'), 'frame one');
  assert.equal(r.missing.length, 1);
  assert.match(r.missing[0]!.reason, /f_2\.png is a symbolic link, not a frame file/);
  await s.untouched();
});

test('output links - thumbnails and the monitor never read a frame or log through a link', async (t) => {
  const s = await setting(t);
  const frame = join(s.out, 'f_0001.png');
  await symlink(s.shadow, frame);
  const refused = (e: unknown) => {
    assert.ok(e instanceof ThumbnailError, String(e));
    assert.equal(e.problem, 'not-a-file');
    assert.match(e.message, /symbolic link/);
    assert.doesNotMatch(e.message, /root:|not-for-artists/, 'not a byte of the file is shown');
    return true;
  };
  await assert.rejects(thumbnail(frame, { width: 32, height: 32 }), refused);
  await assert.rejects(new ThumbnailCache().get(frame, 32), refused);
  // a real image beside it is read as before
  const real = join(s.out, 'f_0002.png');
  await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 9, g: 9, b: 9 } } }).png().toFile(real);
  assert.ok((await thumbnail(real, { width: 4, height: 4 })).length > 0);

  // the log view: a link at the log, or at its folder, reads as no log
  await mkdir(join(s.out, LOGS_DIR));
  const log = join(s.out, LOGS_DIR, 'j5.0-a1.log');
  await symlink(s.shadow, log);
  assert.equal(await readTail(log, 1000), null);
  const other = join(s.out, 'other');
  await mkdir(other);
  await symlink(s.victim, join(other, LOGS_DIR));
  assert.equal(await readTail(join(other, LOGS_DIR, 'shadow'), 1000), null);
  await writeFile(join(s.out, LOGS_DIR, 'j5.1-a1.log'), 'a real log\n');
  assert.deepEqual(await readTail(join(s.out, LOGS_DIR, 'j5.1-a1.log'), 1000), { text: 'a real log\n', size: 11 });
});

test('output links - a FIFO planted as a frame or log is refused at once, never read or written', async (t) => {
  const s = await setting(t);
  const fifo = join(s.out, 'f_0003.png');
  execFileSync('mkfifo', [fifo]);
  await assert.rejects(thumbnail(fifo, { width: 8, height: 8 }), (e: unknown) => e instanceof ThumbnailError && /a FIFO, not a regular file/.test(e.message));
  await assert.rejects(openToRead(fifo), unsafe);
  await assert.rejects(openToAppend(s.out, fifo), (e: unknown) => (e as NodeJS.ErrnoException).code === 'ENXIO' || unsafe(e));
});

test('output links - checkRealDir takes real folders inside the root and refuses what leads out', async (t) => {
  const s = await setting(t);
  await mkdir(join(s.out, 'a', 'b'), { recursive: true });
  await checkRealDir(s.out, join(s.out, 'a', 'b'));
  await symlink(s.victim, join(s.out, 'a', 'c'));
  await assert.rejects(checkRealDir(s.out, join(s.out, 'a', 'c')), unsafe);
  await assert.rejects(checkRealDir(s.out, join(s.out, 'a', 'c', 'd')), unsafe);
  await assert.rejects(checkRealDir(s.out, s.victim), unsafe);
  // the root may itself be a link: the job chose it
  const alias = join(s.victim, '..', 'alias');
  await symlink(s.out, alias);
  await checkRealDir(alias, join(alias, 'a', 'b'));
});
