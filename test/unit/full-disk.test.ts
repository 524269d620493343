import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JetStreamApiError } from '@nats-io/jetstream';
import { prepareJob } from '../../protocol/index.ts';
import { JobBook } from '../../actors/scheduler/index.ts';
import { isStorageFailure, SICK_AFTER_JOBS, STORAGE_RETRY_MS } from '../../actors/scheduler/host-health.ts';
import { journalWriteError } from '../../actors/scheduler/journal.ts';
import { moveFrames, outputDiskFull, type DeliveryFs } from '../../actors/render-slot/output.ts';
import { nextStoreMode, STUCK_AFTER_PROBES } from '../../sites/store-guard.ts';
import { aJobSpec, aTaskResult } from '../helpers/builders.ts';

/** The real file-system calls, each recorded before it is made. */
function recordingFs(calls: string[]): DeliveryFs {
  const sync = async (path: string) => {
    const fh = await open(path, 'r');
    await fh.sync();
    await fh.close();
  };
  return {
    syncFile: async (p) => {
      calls.push(`fsync file ${p}`);
      await sync(p);
    },
    rename: async (a, b) => {
      calls.push(`rename ${a} -> ${b}`);
      await rename(a, b);
    },
    syncDir: async (p) => {
      calls.push(`fsync dir ${p}`);
      await sync(p);
    },
  };
}

test('delivery - a frame is flushed to the disk, renamed, then its directory flushed, before delivery returns', async (t) => {
  const out = await mkdtemp(join(tmpdir(), 'rb-fsync-'));
  t.after(() => rm(out, { recursive: true, force: true }));
  const work = join(out, 'work');
  await mkdir(work);
  await writeFile(join(work, 'a.png'), 'one');
  await writeFile(join(work, 'b.png'), 'two');
  const calls: string[] = [];
  const r = await moveFrames(out, 'f_#.png', [{ frame: 1, file: join(work, 'a.png') }, { frame: 2, file: join(work, 'b.png') }], recordingFs(calls));
  assert.deepEqual(r.missing, []);
  assert.deepEqual(r.moved.map((m) => m.path), [join(out, 'f_1.png'), join(out, 'f_2.png')]);
  for (const [file, final] of [['a.png', 'f_1.png'], ['b.png', 'f_2.png']] as const) {
    const synced = calls.indexOf(`fsync file ${join(work, file)}`);
    const renamed = calls.indexOf(`rename ${join(work, file)} -> ${join(out, final)}`);
    assert.ok(synced >= 0 && renamed > synced, `${file}: its data is flushed before the rename\n${calls.join('\n')}`);
  }
  assert.equal(calls.at(-1), `fsync dir ${out}`, 'the directory is flushed once, after every rename');
  assert.equal(calls.filter((c) => c.startsWith('fsync dir')).length, 1);
  assert.equal(await readFile(join(out, 'f_2.png'), 'utf8'), 'two');
});

test('delivery - a frame that cannot be flushed is not delivered, and a full disk says so', async () => {
  const calls: string[] = [];
  const full: DeliveryFs = {
    syncFile: async (p) => {
      calls.push(p);
      if (p.endsWith('b.png')) throw Object.assign(new Error('ENOSPC: no space left on device, fsync'), { code: 'ENOSPC' });
    },
    rename: async () => {},
    syncDir: async () => {},
  };
  const r = await moveFrames('/out', 'f_#.png', [{ frame: 1, file: '/w/a.png' }, { frame: 2, file: '/w/b.png' }], full);
  assert.deepEqual(r.moved.map((m) => m.frame), [1]);
  assert.equal(r.missing[0]?.errno, 'ENOSPC');
  assert.match(r.missing[0]!.reason, /^no space left on the output disk: cannot move \/w\/b\.png/);

  const dirFails: DeliveryFs = { ...full, syncFile: async () => {}, syncDir: async () => Promise.reject(Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' })) };
  const d = await moveFrames('/out', 'f_#.png', [{ frame: 1, file: '/w/a.png' }], dirFails);
  assert.deepEqual([d.moved, d.missing.map((m) => m.reason)], [[], ['cannot flush /out to the disk: EIO: i/o error, fsync']], 'a rename that may not survive a power cut is not called done');
});

test('delivery - a failed frame is put down to a full output disk by errno, by what the renderer said, or by the free space left', async () => {
  const plenty = async () => 10 * 2 ** 30;
  assert.equal(await outputDiskFull('/out', { text: 'Parse Error: missing }' }, plenty), undefined);
  assert.equal(await outputDiskFull('/out', { errnos: [undefined, 'ENOENT'] }, plenty), undefined);
  assert.match((await outputDiskFull('/out', { errnos: ['EDQUOT'] }, plenty))!, /^no space left on the output disk \(\/out: \d+ KB free\)$/);
  assert.ok(await outputDiskFull('/out', { text: 'sh: 1: echo: echo: I/O error: No space left on device' }, plenty));
  assert.equal(await outputDiskFull('/out', { text: 'Parse Error' }, async () => 4096), 'no space left on the output disk (/out: 4 KB free)', 'a half-written frame filled it');
});

const add = (book: JobBook, id: string, over: Parameters<typeof aJobSpec>[0] = {}) => {
  const spec = aJobSpec(over);
  return book.add(id, spec, prepareJob(spec), 1000);
};

test('host health - a full output disk counts against no host and uses up no attempt; the job waits, then gets its frames again', () => {
  assert.equal(isStorageFailure('RB_OUTPUT_DISK_FULL'), true);
  assert.equal(isStorageFailure('RB_OUTPUT_DISK_FULL: no space left on the output disk (/out: 0 KB free)'), true);
  assert.equal(isStorageFailure('RB_OUTPUT_FAILED'), false);
  const book = new JobBook();
  const full = { status: 'failed' as const, error: { code: 'RB_OUTPUT_DISK_FULL', message: 'no space left on the output disk (/out: 0 KB free)' } };
  const jobs = Array.from({ length: SICK_AFTER_JOBS + 1 }, (_, i) => add(book, `j${i}`, { frames: '1', maxAttempts: 2, maxHostFailures: 1 }));
  let now = 2_000;
  for (let round = 0; round < 4; round++) {
    for (const job of jobs) {
      const a = book.lease(job, 'h1', 0, now);
      assert.ok(a, `round ${round}: ${job.id} gets its frame again once it has waited`);
      assert.equal(book.result(aTaskResult({ jobId: job.id, taskIndex: 0, attempt: a.attempt, ...full }), now).kind, 'accepted');
      assert.equal(book.lease(job, 'h1', 0, now + STORAGE_RETRY_MS - 1), undefined, 'not at once: the disk is still full');
    }
    now += STORAGE_RETRY_MS;
  }
  assert.equal(book.health.isSick('h1', now), false, 'failures of many jobs, all the disk\'s fault: the host is not sick');
  assert.deepEqual(jobs.map((j) => [book.state(j), book.isBadHost(j, 'h1')]), jobs.map(() => ['rendering', false]), 'four tries, more than maxAttempts: none counted');
  const a = book.lease(jobs[0]!, 'h1', 0, now)!;
  book.result(aTaskResult({ jobId: 'j0', taskIndex: 0, attempt: a.attempt }), now);
  assert.equal(book.state(jobs[0]!), 'done', 'space freed: the frame is stored');
});

test('host health - a full output disk replayed from the journal is not counted as an attempt either', () => {
  const book = new JobBook();
  const job = add(book, 'a', { frames: '1', maxAttempts: 2 });
  for (let attempt = 1; attempt <= 3; attempt++) book.restoreRetry(job, 0, attempt, 'RB_OUTPUT_DISK_FULL: no space left on the output disk');
  book.finishReplay();
  const a = book.lease(job, 'h1', 0, 5_000)!;
  assert.equal(a.attempt, 4);
  book.result(aTaskResult({ jobId: 'a', taskIndex: 0, attempt: 4, status: 'failed', error: { code: 'RB_RENDER_FAILED', message: 'Parse Error' } }), 5_001);
  assert.notEqual(book.state(job), 'failed', 'its first real failure: one attempt of two used');
});

test('journal - a write the store refused for space is RB_STORAGE_FULL, retryable; anything else is the scheduler unavailable', () => {
  const insufficient = new JetStreamApiError({ code: 503, err_code: 10023, description: 'insufficient resources' });
  const e = journalWriteError('the submit record', insufficient);
  assert.deepEqual([e.code, e.retryable], ['RB_STORAGE_FULL', true]);
  assert.match(e.message, /^the site's data disk is full: nats-server could not store the submit record \(insufficient resources\); try again once space is freed/);
  assert.equal(journalWriteError('x', new Error('write /data/nats/jetstream/msgs/1.blk: no space left on device')).code, 'RB_STORAGE_FULL');
  const t = journalWriteError('the submit record', new Error('timeout'));
  assert.deepEqual([t.code, t.retryable, t.message], ['RB_SCHEDULER_UNAVAILABLE', true, 'could not store the submit record durably: timeout']);
});

test('store guard - refuses writes under the floor, takes them again at twice the floor, and restarts a stuck JetStream', () => {
  const MB = 2 ** 20;
  assert.equal(nextStoreMode('normal', 500 * MB, 256 * MB, false), null);
  assert.equal(nextStoreMode('normal', 100 * MB, 256 * MB, false)?.restart, 'full');
  assert.equal(nextStoreMode('full', 300 * MB, 256 * MB, false), null, 'not back yet: it would flap');
  assert.equal(nextStoreMode('full', 600 * MB, 256 * MB, false)?.restart, 'normal');
  assert.deepEqual(nextStoreMode('normal', 500 * MB, 256 * MB, true), { restart: 'normal', why: 'JetStream stopped answering' });
  assert.equal(nextStoreMode('full', 300 * MB, 256 * MB, true)?.restart, 'full');
  assert.equal(nextStoreMode('normal', undefined, 256 * MB, false), null, 'a disk it cannot measure is left alone');
  assert.ok(STUCK_AFTER_PROBES >= 2, 'one slow answer is not a stuck JetStream');
});
