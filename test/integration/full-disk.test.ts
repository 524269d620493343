import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, openSync, writeSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, readLedger, rb, TestFarm, waitUntil } from '../helpers/farm.ts';

/**
 * A small file system of its own (tmpfs), or null when this machine does not let the test
 * mount one (it needs root): the test is then skipped, saying why.
 */
async function smallDisk(t: TestContext, size: string): Promise<string | null> {
  const dir = await mkdtemp(join(tmpdir(), 'rb-small-disk-'));
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { encoding: 'utf8' });
  if (r.status !== 0) {
    await rm(dir, { recursive: true, force: true });
    t.skip(`cannot mount a ${size} tmpfs here (${(r.stderr || r.error?.message || 'not permitted').trim()}): this test needs a small file system to fill`);
    return null;
  }
  t.after(async () => {
    spawnSync('umount', ['-l', dir]); // lazy: a process still holding a file there does not keep it mounted
    await rm(dir, { recursive: true, force: true });
  });
  return dir;
}

/** Fills the file system holding `dir` to its last byte; returns the file to delete to free it. */
function fill(dir: string): string {
  const ballast = join(dir, 'ballast');
  const fd = openSync(ballast, 'w');
  const chunk = Buffer.alloc(256 * 1024, 7);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
    // the last partial chunk: write what still fits
    for (let b = 4096; ; ) {
      try {
        writeSync(fd, chunk, 0, b);
      } catch {
        if (b === 1) break;
        b = Math.max(1, b >> 1);
      }
    }
  } finally {
    closeSync(fd);
  }
  return ballast;
}

test('full disk - a full output disk fails frames with a clear reason, makes no host sick, and the jobs complete once space is freed', async (t) => {
  const out = await smallDisk(t, '4m');
  if (!out) return;
  const farm = await TestFarm.start();
  t.after(() => farm.stop());
  await farm.registry();
  await farm.scheduler();
  await farm.renderServer('disky', 2);
  const ballast = fill(out);
  // three jobs: on the old code their failures made the host sick (failed frames of three jobs),
  // and with one attempt each they failed for good at once
  const jobs: { jobId: string; ledger: string; dir: string }[] = [];
  for (const n of [1, 2, 3]) {
    const dir = join(out, `job${n}`);
    const { spec, ledger } = await farm.ledgerJob(`full${n}`, '1-2', 0, { output: { dir, pattern: 'f_####.txt' }, maxAttempts: 1 });
    jobs.push({ jobId: await farm.submit(spec), ledger, dir });
  }
  for (const { jobId } of jobs) {
    const j = await waitUntil(`a frame of ${jobId} to fail on the full disk`, async () => {
      const d = await farm.job(jobId);
      assert.notEqual(d.state, 'failed', `${jobId} failed for good: ${JSON.stringify(d.frames)}\n${farm.logs()}`);
      return d.frames.some((f) => f.error?.startsWith('RB_OUTPUT_DISK_FULL')) ? d : undefined;
    }, 30_000);
    const f = j.frames.find((x) => x.error)!;
    assert.match(f.error!, /^RB_OUTPUT_DISK_FULL: no space left on the output disk \(.*KB free\)/, 'the reason names the disk');
  }
  const waiting = await waitUntil('a job to say why it waits', async () => (await farm.job(jobs[0]!.jobId)).waiting, 20_000);
  assert.match(waiting, /its output disk is full; its frames are tried again every 10 s/);
  const sick = rb(farm, 'sick', '--json');
  assert.equal(sick.code, 0, sick.stderr);
  assert.deepEqual(JSON.parse(sick.stdout), [], 'the host is not sick: the disk was to blame');
  assert.equal((await farm.hosts()).find((h) => h.host === 'disky')?.host, 'disky');

  await unlink(ballast);
  for (const { jobId, ledger, dir } of jobs) {
    const job = await farm.waitJob(jobId, 'done', 60_000);
    assert.deepEqual(job.frames.map((f) => [f.frame, f.state]), [[1, 'done'], [2, 'done']]);
    assert.deepEqual((await readdir(dir)).filter((n) => !n.startsWith('.')).sort(), ['f_0001.txt', 'f_0002.txt']);
    assert.equal(await readFile(join(dir, 'f_0002.txt'), 'utf8'), 'frame 2\n');
    assert.ok([...(await readLedger(ledger)).values()].some((n) => n >= 2), 'frames were tried again after failing on the full disk');
  }
});
