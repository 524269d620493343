import { test } from 'node:test';
import assert from 'node:assert/strict';
import { prepareJob } from '../../protocol/index.ts';
import { JobBook } from '../../actors/scheduler/index.ts';
import { aJobSpec, aTaskResult, anInventory } from '../helpers/builders.ts';

const add = (book: JobBook, id: string, over: Parameters<typeof aJobSpec>[0] = {}) => {
  const spec = aJobSpec(over);
  return book.add(id, spec, prepareJob(spec), 1000);
};

test('job-book - queues by priority, FIFO within a priority', () => {
  const book = new JobBook();
  add(book, 'a', { priority: 50 });
  add(book, 'b', { priority: 10 });
  add(book, 'c', { priority: 50 });
  add(book, 'd', { priority: 10 });
  assert.deepEqual(book.queue().map((j) => j.id), ['b', 'd', 'a', 'c']);
});

test('job-book - leases tasks with growing attempts and ends the job when every frame is done', () => {
  const book = new JobBook();
  const job = add(book, 'a', { frames: '1-2' });
  const a1 = book.lease(job, 'h1', 0, 2000)!;
  const a2 = book.lease(job, 'h1', 1, 2000)!;
  assert.deepEqual([a1.frames, a2.frames, a1.attempt], [[1], [2], 1]);
  assert.equal(book.lease(job, 'h1', 2, 2000), undefined);
  assert.equal(book.state(job), 'rendering');
  assert.ok(book.isLeased('h1', 0));
  assert.equal(book.result(aTaskResult({ jobId: 'a', taskIndex: 0, attempt: 1 }), 3000).kind, 'accepted');
  assert.equal(book.isLeased('h1', 0), false);
  assert.equal(book.state(job), 'rendering');
  book.result(aTaskResult({ jobId: 'a', taskIndex: 1, attempt: 1, slot: 1 }), 3000);
  assert.equal(book.state(job), 'done');
  assert.equal(job.finishedAt, 3000);
  assert.deepEqual(book.summary(job).counts, { total: 2, queued: 0, running: 0, done: 2, failed: 0 });
  assert.equal(book.queue().length, 0);
});

test('job-book - a result of an older attempt is ignored', () => {
  const book = new JobBook();
  const job = add(book, 'a', { frames: '1' });
  book.lease(job, 'h1', 0, 1);
  book.releaseHost('h1'); // host lost: task back in the queue
  const again = book.lease(job, 'h2', 0, 2)!;
  assert.equal(again.attempt, 2);
  assert.equal(book.result(aTaskResult({ jobId: 'a', taskIndex: 0, attempt: 1 }), 3).kind, 'stale');
  assert.equal(book.state(job), 'rendering');
  assert.equal(book.result(aTaskResult({ jobId: 'a', taskIndex: 0, attempt: 2, host: 'h2' }), 4).kind, 'accepted');
  assert.equal(book.state(job), 'done');
  assert.equal(book.result(aTaskResult({ jobId: 'a', taskIndex: 0, attempt: 2, host: 'h2' }), 5).kind, 'stale', 'a duplicate is stale too');
});

test('job-book - a failed task is retried up to maxAttempts, then the job fails naming the frames', () => {
  const book = new JobBook();
  const job = add(book, 'a', { frames: '1-2', maxAttempts: 2 });
  const failure = { status: 'failed' as const, error: { code: 'RB_RENDER_FAILED', message: 'Parse Error' } };
  book.lease(job, 'h1', 0, 1);
  book.lease(job, 'h1', 1, 1);
  book.result(aTaskResult({ jobId: 'a', taskIndex: 1, attempt: 1, slot: 1 }), 2);
  assert.equal(book.result(aTaskResult({ jobId: 'a', taskIndex: 0, attempt: 1, ...failure }), 2).kind, 'accepted');
  assert.equal(book.summary(job).counts.queued, 1, 'retried');
  const retry = book.lease(job, 'h1', 0, 3)!;
  assert.equal(retry.attempt, 2);
  book.result(aTaskResult({ jobId: 'a', taskIndex: 0, attempt: 2, ...failure }), 4);
  assert.equal(book.state(job), 'failed');
  assert.deepEqual(book.failures(job), [{ frame: 1, error: 'RB_RENDER_FAILED: Parse Error' }]);
});

test('job-book - a late result of a task requeued after a lost assignment still counts', () => {
  const book = new JobBook();
  const job = add(book, 'a', { frames: '1' });
  const a = book.lease(job, 'h1', 0, 1)!;
  book.unlease(a.jobId, a.taskIndex, a.attempt);
  assert.equal(book.summary(job).counts.queued, 1);
  assert.equal(book.result(aTaskResult({ jobId: 'a', taskIndex: 0, attempt: 1 }), 2).kind, 'accepted');
  assert.equal(book.state(job), 'done');
  assert.equal(book.lease(job, 'h1', 0, 3), undefined, 'nothing left to lease');
});

test('job-book - cancel drops queued tasks and returns the running ones', () => {
  const book = new JobBook();
  const job = add(book, 'a', { frames: '1-3' });
  book.lease(job, 'h1', 0, 1);
  const running = book.cancel(job, 5);
  assert.deepEqual(running.map((t) => t.frames), [[1]]);
  assert.equal(book.state(job), 'cancelled');
  assert.deepEqual(book.summary(job).counts, { total: 3, queued: 0, running: 0, done: 0, failed: 0 });
  assert.equal(book.isLeased('h1', 0), false);
  assert.equal(book.result(aTaskResult({ jobId: 'a', taskIndex: 0, attempt: 1 }), 6).kind, 'stale');
});

test('job-book - host matching is cached per job and forgotten with the host', () => {
  const book = new JobBook();
  const job = add(book, 'a', { requirements: { packages: ['povray@3.8.*'] } });
  assert.equal(book.matches(job, 'h1', anInventory()), false);
  assert.equal(book.matches(job, 'h1', anInventory({ packages: [{ name: 'povray', version: '3.8.1' }] })), false, 'cached');
  book.forgetHost('h1');
  assert.equal(book.matches(job, 'h1', anInventory({ packages: [{ name: 'povray', version: '3.8.1' }] })), true);
});

test('job-book - journal replay restores ended tasks without dispatching them', () => {
  const book = new JobBook();
  const job = add(book, 'a', { frames: '1-3' });
  book.restoreEnded(job, 1, 'done', { outputs: [{ frame: 2, path: '/o/2.png' }], attempt: 1, finishedAt: 9 });
  assert.deepEqual(book.summary(job).counts, { total: 3, queued: 2, running: 0, done: 1, failed: 0 });
  assert.deepEqual([book.lease(job, 'h', 0, 10)!.frames, book.lease(job, 'h', 1, 10)!.frames], [[1], [3]]);
  assert.equal(book.lease(job, 'h', 2, 10), undefined);
});

test('job-book - a slot may hold a second lease (a task in hand); each result releases its own', () => {
  const book = new JobBook();
  const job = add(book, 'a', { frames: '1-3' });
  const a = book.lease(job, 'h1', 0, 1)!;
  const b = book.lease(job, 'h1', 0, 1)!; // in hand
  assert.equal(book.leasesOn('h1', 0), 2);
  book.result(aTaskResult({ jobId: 'a', taskIndex: a.taskIndex, attempt: 1 }), 2);
  assert.equal(book.leasesOn('h1', 0), 1);
  assert.ok(book.isLeased('h1', 0));
  book.releaseHost('h1'); // both leases of a lost host go back to the queue
  assert.equal(book.leasesOn('h1', 0), 0);
  assert.equal(book.summary(job).counts.queued, 2);
  assert.equal(book.lease(job, 'h2', 0, 3)!.taskIndex, b.taskIndex, 'the held task is queued again first');
});
