import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FarmError, PROTOCOL_MAJOR, prepareJob, type JournalRecord } from '../../protocol/index.ts';
import { JobBook, type Job } from '../../actors/scheduler/index.ts';
import { checkQueueLimits, queueLimits } from '../../actors/scheduler/queue-limits.ts';
import { applyRecord, rebuildJob } from '../../actors/scheduler/replay.ts';
import { jobsToEvict, retention } from '../../actors/scheduler/retention.ts';
import { aJobSpec, aTaskResult } from '../helpers/builders.ts';

const add = (book: JobBook, id: string, over: Parameters<typeof aJobSpec>[0] = {}, at = 1000): Job => {
  const spec = aJobSpec(over);
  const job = book.add(id, spec, prepareJob(spec), at);
  job.journalSeq = 1;
  return job;
};
const refused = (re: RegExp) => (e: unknown) => e instanceof FarmError && e.code === 'RB_QUEUE_FULL' && re.test(e.message);

test('queue-limits - a job past a limit is refused, naming the limit and what is queued', () => {
  const book = new JobBook();
  const limits = queueLimits({ siteFrames: 2_500, userFrames: 1_000, jobFrames: 1_000 });
  add(book, 'a1', { user: 'alice', frames: '1-800' });
  checkQueueLimits(book, 'alice', 200, limits); // exactly at the limit: taken
  assert.throws(() => checkQueueLimits(book, 'alice', 201, limits), refused(/user alice has 800 frames queued or running; 201 more would pass the limit of 1,000 frames per user/));
  add(book, 'b1', { user: 'bob', frames: '1-1000' });
  add(book, 'c1', { user: 'carol', frames: '1-600' });
  assert.throws(() => checkQueueLimits(book, 'dave', 150, limits), refused(/the site has 2,400 frames queued or running; 150 more would pass its limit of 2,500 frames/));
  assert.throws(() => checkQueueLimits(book, 'dave', 1_001, limits), refused(/the job has 1,001 frames; this farm takes at most 1,000 frames in one job/));
  checkQueueLimits(book, 'dave', 100, limits);
});

test('queue-limits - frames that ended no longer count; running ones do', () => {
  const book = new JobBook();
  const limits = queueLimits({ userFrames: 4 });
  const job = add(book, 'a', { user: 'alice', frames: '1-4' });
  assert.throws(() => checkQueueLimits(book, 'alice', 1, limits), refused(/has 4 frames/));
  const a = book.lease(job, 'h1', 0, 2000)!;
  assert.throws(() => checkQueueLimits(book, 'alice', 1, limits), refused(/has 4 frames/), 'a running frame counts');
  book.result(aTaskResult({ jobId: 'a', taskIndex: a.taskIndex, attempt: 1 }), 3000);
  checkQueueLimits(book, 'alice', 1, limits);
  book.cancel(job, 4000);
  checkQueueLimits(book, 'alice', 4, limits);
});

test('queue-limits - bad limit values are refused, naming them', () => {
  assert.throws(() => queueLimits({ siteFrames: 0 }), /siteFrames must be a whole number of at least 1, not 0/);
  assert.throws(() => retention({ keepJobs: -1 }), /keepJobs must be a whole number/);
  assert.deepEqual(queueLimits(), { siteFrames: 5_000_000, userFrames: 1_000_000, jobFrames: 1_000_000 });
});

test('retention - finished jobs past the latest N, or older than the age, leave memory; others stay', () => {
  const book = new JobBook();
  const done = (id: string, at: number, over: Parameters<typeof aJobSpec>[0] = {}) => {
    const job = add(book, id, { frames: '1', ...over });
    const a = book.lease(job, 'h1', 0, at)!;
    book.result(aTaskResult({ jobId: id, taskIndex: a.taskIndex, attempt: 1 }), at);
    return job;
  };
  done('old', 1_000);
  done('mid', 5_000);
  done('new', 9_000);
  add(book, 'running', { frames: '1-2' });
  const names = (jobs: Job[]) => jobs.map((j) => j.id).sort();
  assert.deepEqual(names(jobsToEvict(book, 10_000, { keepJobs: 2, keepMs: 1e9 })), ['old'], 'the latest 2 finished stay');
  assert.deepEqual(names(jobsToEvict(book, 10_000, { keepJobs: 10, keepMs: 6_000 })), ['old'], 'finished more than 6 s ago');
  assert.deepEqual(names(jobsToEvict(book, 10_000, { keepJobs: 0, keepMs: 1e9 })), ['mid', 'new', 'old']);
  // a job another unfinished job waits on stays
  add(book, 'waits', { frames: '1', after: ['mid'], hold: true });
  assert.deepEqual(names(jobsToEvict(book, 10_000, { keepJobs: 0, keepMs: 1e9 })), ['new', 'old']);
});

test('retention - an evicted job leaves the book, is remembered as archived, and reads back from its records as it was', () => {
  const book = new JobBook();
  const records: JournalRecord[] = [];
  const spec = aJobSpec({ frames: '1-3' });
  records.push({ v: PROTOCOL_MAJOR, kind: 'submit', jobId: 'j', spec, at: 1000 });
  applyRecord(book, records[0]!, 42);
  const job = book.jobs.get('j')!;
  assert.equal(job.journalSeq, 42);
  const leased = [0, 1, 2].map((slot) => book.lease(job, 'h1', slot, 2000)!);
  const stats = { wallMs: 100, cpuMs: 90, peakRssKb: 1000, bytesWritten: 10 };
  const end = (taskIndex: number, attempt: number, status: 'done' | 'failed', at: number) => {
    const frame = taskIndex + 1;
    const outputs = status === 'done' ? [{ frame, path: `/out/${frame}.png` }] : [];
    const r = book.result(aTaskResult({ jobId: 'j', taskIndex, attempt, slot: taskIndex, status, outputs, stats, ...(status === 'failed' ? { error: { code: 'RB_RENDER_FAILED', message: 'boom' } } : {}) }), at);
    assert.equal(r.kind, 'accepted');
    const retry = r.kind === 'accepted' && r.retried;
    const startedAt = r.kind === 'accepted' ? r.task.startedAt : undefined; // journaled with it, as the scheduler does
    records.push({ v: PROTOCOL_MAJOR, kind: 'task', jobId: 'j', taskIndex, status, attempt, host: 'h1', slot: taskIndex, outputs, stats, at, ...(status === 'failed' ? { error: 'RB_RENDER_FAILED: boom' } : {}), ...(retry ? { retry } : {}), ...(startedAt !== undefined ? { startedAt } : {}) });
  };
  end(leased[0]!.taskIndex, 1, 'done', 3000);
  end(leased[1]!.taskIndex, 1, 'failed', 3001);
  end(leased[2]!.taskIndex, 1, 'done', 3002);
  // maxAttempts 3: the failed one runs twice more, and fails for good
  for (const attempt of [2, 3]) {
    const a = book.lease(job, 'h1', 1, 4000)!;
    assert.deepEqual([a.taskIndex, a.attempt], [1, attempt]);
    end(1, attempt, 'failed', 4000 + attempt);
  }
  assert.equal(book.state(job), 'failed');
  const whole = book.detail(job);
  book.evict(job);
  assert.equal(book.jobs.has('j'), false);
  assert.deepEqual(book.archived.get('j'), { seq: 42, state: 'failed' });
  const back = rebuildJob(new JobBook(), 'j', records, 42)!;
  assert.ok(back, 'rebuilt');
  const again = new JobBook().detail(back);
  // when the job started, and when its frames were handed out, is not journaled: a replay never knew it
  const unstarted = (d: typeof whole) => ({ ...d, startedAt: undefined, frames: d.frames.map((f) => ({ ...f, handedAt: undefined })) });
  assert.deepEqual(unstarted(again), unstarted(whole), 'the same view, read back');
});
