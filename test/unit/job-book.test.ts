import { test } from 'node:test';
import assert from 'node:assert/strict';
import { prepareJob, type HeldLease } from '../../protocol/index.ts';
import { JobBook } from '../../actors/scheduler/index.ts';
import { waitingReason } from '../../actors/scheduler/dispatch.ts';
import { LEASE_REPORT_GRACE_MS, LEASE_UNLISTED_LIMIT, previewOrder } from '../../actors/scheduler/job-book.ts';
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
  assert.equal(book.result(aTaskResult({ jobId: 'a', taskIndex: 0, attempt: 2, host: 'h2' }), 5).kind, 'duplicate', 'the same result again is a duplicate (its acknowledgement was lost)');
  assert.equal(book.result(aTaskResult({ jobId: 'a', taskIndex: 0, attempt: 1 }), 6).kind, 'stale', 'still stale once the task is done');
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
  book.finishReplay();
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

test('job-book - a job taken in hand behind another job\'s frame has not started: it starts, and is announced once, when its slot starts it', () => {
  const book = new JobBook();
  const first = add(book, 'first', { frames: '1' });
  const second = add(book, 'second', { frames: '1-2' });
  const a = book.lease(first, 'h1', 0, 100)!;
  assert.deepEqual(book.takeFirstStarts(), [first]);
  book.lease(second, 'h1', 0, 100); // in hand: the slot renders first's frame
  assert.equal(second.startedAt, undefined);
  assert.deepEqual(book.takeFirstStarts(), []);
  book.result(aTaskResult({ jobId: 'first', taskIndex: a.taskIndex, attempt: 1 }), 400);
  assert.equal(book.heldStarted('h1', 0, 400), second);
  assert.equal(second.startedAt, 400);
  book.lease(second, 'h1', 1, 500);
  assert.deepEqual(book.takeFirstStarts(), [second], 'announced once, though two of its tasks started');
  assert.equal(second.startedAt, 400);
});

const held = (taskIndex: number, attempt: number, over: Partial<HeldLease> = {}): HeldLease => ({ taskId: `a.${taskIndex}`, jobId: 'a', taskIndex, attempt, slot: 0, state: 'running', ...over });

test('job-book - lease reports renew leases; a lease left out of two reports after its grace goes back to the queue', () => {
  const book = new JobBook();
  const job = add(book, 'a', { frames: '1-2' });
  book.lease(job, 'h1', 0, 0);
  book.lease(job, 'h1', 1, 0);
  // too early to miss anything: the assignment may still be on its way
  assert.deepEqual(book.renew('h1', [], LEASE_REPORT_GRACE_MS - 1).lost, []);
  for (let i = 1; i < LEASE_UNLISTED_LIMIT; i++) assert.deepEqual(book.renew('h1', [held(0, 1)], LEASE_REPORT_GRACE_MS + i).lost, []);
  const out = book.renew('h1', [held(0, 1)], LEASE_REPORT_GRACE_MS + 10);
  assert.deepEqual(out.lost.map((j) => j.id), ['a'], 'task 1 was never listed');
  assert.equal(job.tasks.view(1)!.state, 'queued');
  assert.equal(job.tasks.view(0)!.state, 'running', 'task 0 was listed every time');
  assert.deepEqual(book.summary(job).counts, { total: 2, queued: 1, running: 1, done: 0, failed: 0 });
});

test('job-book - a restarted scheduler re-adopts the running tasks a host reports, and names leases that are not the host\'s any more', () => {
  const book = new JobBook();
  const job = add(book, 'a', { frames: '1-3' });
  book.restoreEnded(job, 2, 'done', { attempt: 1, host: 'h1', slot: 0, outputs: [], finishedAt: 5 });
  book.finishReplay();
  const out = book.renew('h1', [held(0, 4, { slot: 1 }), held(1, 2, { state: 'held' }), held(2, 1, { state: 'running' }), { ...held(0, 1), jobId: 'gone', taskId: 'gone.0' }], 10);
  assert.deepEqual(out.adopted.map((t) => t.index), [0, 1]);
  assert.deepEqual(out.foreign.map((h) => h.taskId), ['a.2', 'gone.0'], 'an ended task and an unknown job');
  assert.equal(job.tasks.view(0)!.attempt, 4);
  assert.equal(book.leasesOn('h1', 1), 1);
  assert.equal(book.state(job), 'rendering');
  assert.equal(book.lease(job, 'h2', 0, 11), undefined, 'nothing left to hand out');
  assert.equal(book.result(aTaskResult({ jobId: 'a', taskIndex: 0, attempt: 4, slot: 1 }), 12).kind, 'accepted');
  assert.equal(book.result(aTaskResult({ jobId: 'a', taskIndex: 1, attempt: 2 }), 12).kind, 'accepted');
  assert.equal(book.state(job), 'done');
});

test('job-book - a result for a queued task is taken from the holder of its latest lease only; a forged or older one is not', () => {
  const book = new JobBook();
  const job = add(book, 'a', { frames: '1-2' });
  assert.equal(book.result(aTaskResult({ jobId: 'a', taskIndex: 1, attempt: 1, host: 'h9' }), 0).kind, 'stale', 'never handed out: a forged result');
  book.lease(job, 'h1', 0, 0); // attempt 1
  book.releaseHost('h1'); // its lease expired: queued again
  assert.equal(book.result(aTaskResult({ jobId: 'a', taskIndex: 0, attempt: 1, host: 'h2' }), 1).kind, 'stale', 'not from the host it was leased to');
  assert.equal(book.result(aTaskResult({ jobId: 'a', taskIndex: 0, attempt: 1, host: 'h1' }), 1).kind, 'accepted', 'the lease expired, but the frame was rendered');
  assert.deepEqual(book.summary(job).counts, { total: 2, queued: 1, running: 0, done: 1, failed: 0 });
  const job2 = add(book, 'b', { frames: '1' });
  book.lease(job2, 'h1', 0, 0);
  book.releaseHost('h1');
  book.lease(job2, 'h2', 0, 0);
  assert.equal(book.result(aTaskResult({ jobId: 'b', taskIndex: 0, attempt: 1, host: 'h1' }), 2).kind, 'stale', 'attempt 2 runs on h2');
  assert.equal(book.result(aTaskResult({ jobId: 'b', taskIndex: 0, attempt: 2, host: 'h3' }), 2).kind, 'stale', 'the right attempt from the wrong host');
  assert.equal(book.result(aTaskResult({ jobId: 'b', taskIndex: 0, attempt: 2, host: 'h2' }), 2).kind, 'accepted');
});

test('job-book - a task handed back is queued again without using up an attempt; losing hosts does not either', () => {
  const book = new JobBook();
  const job = add(book, 'a', { frames: '1', maxAttempts: 1 });
  book.lease(job, 'h1', 0, 0);
  assert.equal(book.result(aTaskResult({ jobId: 'a', taskIndex: 0, attempt: 1, status: 'returned' }), 1).kind, 'returned');
  assert.deepEqual(book.summary(job).counts, { total: 1, queued: 1, running: 0, done: 0, failed: 0 });
  book.lease(job, 'h2', 0, 2);
  book.releaseHost('h2');
  const a3 = book.lease(job, 'h3', 0, 3)!;
  assert.equal(a3.attempt, 3);
  assert.equal(book.result(aTaskResult({ jobId: 'a', taskIndex: 0, attempt: 3, host: 'h3', status: 'failed', error: { code: 'RB_RENDER_FAILED', message: 'x' } }), 4).kind, 'accepted');
  assert.equal(book.state(job), 'failed', 'one failure is the one attempt maxAttempts allows');
});

test('job-book - replayed retries count toward maxAttempts', () => {
  const book = new JobBook();
  const job = add(book, 'a', { frames: '1', maxAttempts: 2 });
  book.restoreRetry(job, 0, 1, 'RB_RENDER_FAILED: x');
  book.restoreRetry(job, 0, 1, 'RB_RENDER_FAILED: x'); // the same record twice counts once
  const a = book.lease(job, 'h1', 0, 0)!;
  assert.equal(a.attempt, 2);
  book.result(aTaskResult({ jobId: 'a', taskIndex: 0, attempt: 2, status: 'failed', error: { code: 'RB_RENDER_FAILED', message: 'x' } }), 1);
  assert.equal(book.state(job), 'failed');
});

test('job-book - a replay ends jobs whose frames all ended, and a replayed cancel keeps the frames done before it', () => {
  const book = new JobBook();
  const done = add(book, 'a', { frames: '1-2' });
  const cancelled = add(book, 'b', { frames: '1-3' });
  book.restoreEnded(done, 0, 'done', { attempt: 1, outputs: [], finishedAt: 1005 });
  book.restoreEnded(done, 1, 'failed', { attempt: 3, outputs: [], finishedAt: 1007, error: 'x' });
  book.restoreEnded(cancelled, 0, 'done', { attempt: 1, outputs: [], finishedAt: 6 });
  book.cancel(cancelled, 8);
  book.finishReplay();
  assert.equal(book.state(done), 'failed');
  assert.equal(done.finishedAt, 1007);
  assert.deepEqual(book.summary(done).counts, { total: 2, queued: 0, running: 0, done: 1, failed: 1 });
  assert.equal(book.state(cancelled), 'cancelled');
  assert.equal(book.summary(cancelled).counts.done, 1);
  assert.deepEqual(book.queue(), []);
});

test('job-book - a held job waits until released; a paused one starts nothing new until resumed', () => {
  const book = new JobBook();
  const held = add(book, 'h', { frames: '1-2', hold: true });
  const paused = add(book, 'p', { frames: '1-3' });
  assert.equal(book.state(held), 'held');
  book.lease(paused, 'h1', 0, 1);
  book.setPaused(paused, true);
  assert.equal(book.state(paused), 'paused');
  assert.deepEqual(book.queue(), [], 'nothing may start');
  assert.equal(book.result(aTaskResult({ jobId: 'p', taskIndex: 0, attempt: 1 }), 2).kind, 'accepted', 'a running frame finishes');
  book.release(held);
  book.setPaused(paused, false);
  assert.deepEqual(book.queue().map((j) => j.id), ['h', 'p']);
  assert.equal(book.state(paused), 'rendering');
});

test('job-book - a new priority moves a job in the queue', () => {
  const book = new JobBook();
  add(book, 'a', { priority: 50 });
  const b = add(book, 'b', { priority: 50 });
  book.setPriority(b, 10);
  assert.deepEqual(book.queue().map((j) => j.id), ['b', 'a']);
  assert.equal(book.summary(b).priority, 10);
});

test('job-book - retry queues failed frames, or chosen ended ones, with fresh attempts; the job renders again', () => {
  const book = new JobBook();
  const job = add(book, 'a', { frames: '1-3', maxAttempts: 1 });
  for (const i of [0, 1, 2]) book.lease(job, 'h1', i, 1);
  const fail = { status: 'failed' as const, error: { code: 'RB_RENDER_FAILED', message: 'x' } };
  book.result(aTaskResult({ jobId: 'a', taskIndex: 0, attempt: 1, slot: 0 }), 2);
  book.result(aTaskResult({ jobId: 'a', taskIndex: 1, attempt: 1, slot: 1, ...fail }), 2);
  book.result(aTaskResult({ jobId: 'a', taskIndex: 2, attempt: 1, slot: 2 }), 2);
  assert.equal(book.state(job), 'failed');
  assert.deepEqual(book.retry(job).map((t) => t.index), [1]);
  assert.equal(book.state(job), 'rendering');
  assert.deepEqual(book.summary(job).counts, { total: 3, queued: 1, running: 0, done: 2, failed: 0 });
  assert.equal(job.finishedAt, undefined);
  const again = book.lease(job, 'h1', 0, 3)!;
  assert.equal(again.attempt, 2);
  book.result(aTaskResult({ jobId: 'a', taskIndex: 1, attempt: 2 }), 4);
  assert.equal(book.state(job), 'done', 'the retried frame may fail again: maxAttempts counts afresh');
  assert.deepEqual(book.retry(job, [3]).map((t) => t.index), [2], 'a chosen frame that was done is rendered again');
  assert.deepEqual(book.summary(job).counts, { total: 3, queued: 1, running: 0, done: 2, failed: 0 });
});

test('job-book - a job that runs after others waits until they are done, and says why', () => {
  const book = new JobBook();
  const render = add(book, 'render', { name: 'render', frames: '1' });
  const comp = add(book, 'comp', { frames: '1', after: ['render'] });
  assert.deepEqual(book.queue().map((j) => j.id), ['render']);
  assert.match(book.summary(comp).waiting!, /waiting for job render \(render\) to finish \(queued\)/);
  book.lease(render, 'h1', 0, 1);
  book.result(aTaskResult({ jobId: 'render', taskIndex: 0, attempt: 1 }), 2);
  assert.deepEqual(book.queue().map((j) => j.id), ['comp'], 'it starts once the render is done');
  assert.equal(book.summary(comp).waiting, undefined);
});

test('job-book - a failed dependency is reported on the waiting job, which starts once it is retried and done', () => {
  const book = new JobBook();
  const render = add(book, 'render', { name: 'render', frames: '1', maxAttempts: 1 });
  const comp = add(book, 'comp', { frames: '1', after: ['render'] });
  book.lease(render, 'h1', 0, 1);
  book.result(aTaskResult({ jobId: 'render', taskIndex: 0, attempt: 1, status: 'failed', error: { code: 'RB_RENDER_FAILED', message: 'x' } }), 2);
  assert.match(book.summary(comp).waiting!, /render \(render\), which it runs after, failed: retry or cancel one of them/);
  assert.deepEqual(book.queue(), []);
  book.retry(render);
  book.lease(render, 'h1', 0, 3);
  book.result(aTaskResult({ jobId: 'render', taskIndex: 0, attempt: 2 }), 4);
  assert.deepEqual(book.queue().map((j) => j.id), ['comp']);
});

test('job-book - held and paused jobs say so when asked why they wait', () => {
  const book = new JobBook();
  const held = add(book, 'h', { hold: true });
  const paused = add(book, 'p');
  book.setPaused(paused, true);
  assert.match(book.summary(held).waiting!, /^held: it starts once released \(renderbus release h\)/);
  assert.match(book.summary(paused).waiting!, /^paused/);
});

test('job-book - a host that fails maxHostFailures tasks of a job gets no more of them; a retry forgives it', () => {
  const book = new JobBook();
  const job = add(book, 'a', { frames: '1-4', maxHostFailures: 2, maxAttempts: 1 });
  const inv = anInventory();
  const fail = { status: 'failed' as const, error: { code: 'RB_RENDER_FAILED', message: 'x' } };
  assert.equal(book.matches(job, 'h1', inv), true);
  book.lease(job, 'h1', 0, 1);
  book.lease(job, 'h1', 1, 1);
  book.result(aTaskResult({ jobId: 'a', taskIndex: 0, attempt: 1, slot: 0, ...fail }), 2);
  assert.equal(book.isBadHost(job, 'h1'), false, 'one failure is not enough');
  book.result(aTaskResult({ jobId: 'a', taskIndex: 1, attempt: 1, slot: 1, ...fail }), 2);
  assert.equal(book.isBadHost(job, 'h1'), true);
  assert.equal(book.matches(job, 'h1', inv), false, 'kept away from this job');
  assert.equal(book.matches(job, 'h2', inv), true);
  assert.deepEqual(book.badHosts(job), ['h1']);
  assert.match(waitingReason({ hosts: [{ host: 'h1', serverId: 's', inventory: inv, slots: [], free: 1 }], closest: [], totalHosts: 1 }, book.badHosts(job)).text, /failed too many of its frames and are kept away from it \(h1\)/);
  assert.equal(book.retry(job).length, 2, 'the two failed frames');
  assert.equal(book.isBadHost(job, 'h1'), false);
});

test('job-book - a time limit travels with each assignment', () => {
  const book = new JobBook();
  const job = add(book, 'a', { frames: '1', timeLimit: 1.5 });
  assert.equal(book.lease(job, 'h1', 0, 1)!.timeLimitMs, 1500);
  assert.equal(book.lease(add(book, 'b', { frames: '1' }), 'h1', 1, 1)!.timeLimitMs, undefined);
});

test('job-book - "all slots busy" says who holds them: more urgent jobs, earlier ones of its priority, less urgent ones that started first', () => {
  const book = new JobBook();
  const urgent = add(book, 'u', { priority: 10, frames: '1-2' });
  const early = add(book, 'e', { priority: 50, frames: '1' });
  const mine = add(book, 'm', { priority: 50, frames: '1' });
  const lazy = add(book, 'l', { priority: 90, frames: '1' });
  book.lease(urgent, 'h1', 0, 1);
  book.lease(urgent, 'h1', 1, 1);
  book.lease(early, 'h1', 2, 1);
  book.lease(lazy, 'h1', 3, 1);
  assert.deepEqual(book.busyBreakdown(mine), { moreUrgent: 2, samePriority: 1, lessUrgent: 1 });
  const why = waitingReason({ hosts: [], closest: [], totalHosts: 1 }, [], () => book.busyBreakdown(mine));
  assert.equal(why.kind, 'busy');
  assert.match(why.text, /all matching slots are busy: 2 with more urgent jobs, 1 with jobs of its priority submitted earlier, 1 with less urgent jobs that started first/);
  assert.deepEqual(waitingReason({ hosts: [], closest: [{ host: 'n1', missing: ['blender@4.*'] }], totalHosts: 1 }), { kind: 'no-match', closest: [{ host: 'n1', missing: ['blender@4.*'] }], text: 'no host matches the requirements (n1 blender@4.*)' });
});

test('job-book - limits: never more running tasks than a limit allows; a per-host limit counts a host once; an unset limit lets nothing run', () => {
  const book = new JobBook();
  const maya = add(book, 'm', { frames: '1-6', limits: ['maya'] });
  assert.equal(book.lease(maya, 'h1', 0, 1), undefined, 'maya is not set on this farm');
  assert.match(book.summary(maya).why!.text, /limit maya is not set on this farm/);
  book.setLimit('maya', 2);
  assert.ok(book.lease(maya, 'h1', 0, 1));
  assert.ok(book.lease(maya, 'h2', 0, 1));
  assert.equal(book.lease(maya, 'h3', 0, 1), undefined, '2/2 in use');
  assert.deepEqual(book.summary(maya).why, { kind: 'limit', limit: { name: 'maya', inUse: 2, max: 2 }, text: 'limit maya at 2/2' });
  book.result(aTaskResult({ jobId: 'm', taskIndex: 0, attempt: 1 }), 2);
  assert.ok(book.lease(maya, 'h3', 0, 3), 'a licence came free');

  const nuke = add(book, 'n', { frames: '1-6', limits: ['nuke'] });
  book.setLimit('nuke', 1, 'host');
  assert.ok(book.lease(nuke, 'h1', 0, 1));
  assert.ok(book.lease(nuke, 'h1', 1, 1), 'the same host again: the licence is the machine\'s');
  assert.equal(book.lease(nuke, 'h2', 0, 1), undefined, 'another host would be a second licence');
  assert.deepEqual(book.limits.uses(), [{ name: 'maya', max: 2, per: 'task', inUse: 2 }, { name: 'nuke', max: 1, per: 'host', inUse: 1 }]);
  book.setLimit('nuke', undefined);
  assert.deepEqual(book.limits.uses().map((l) => l.name), ['maya']);
});

test('job-book - preview first: the first, last and middle frames go out before the rest', () => {
  assert.deepEqual(previewOrder(7), [0, 6, 3, 1, 2, 4, 5]);
  assert.deepEqual(previewOrder(2), [0, 1]);
  assert.deepEqual(previewOrder(1), [0]);
  const book = new JobBook();
  const job = add(book, 'a', { frames: '1-5', previewFirst: true });
  const frames = Array.from({ length: 5 }, (_, slot) => book.lease(job, 'h1', slot, 1)!.frames[0]);
  assert.deepEqual(frames, [1, 5, 3, 2, 4]);
});

test('job-book - a host that fails frames of several jobs goes sick: no job gets it until it is cleared', () => {
  const book = new JobBook();
  const fail = { status: 'failed' as const, error: { code: 'RB_RENDER_FAILED', message: 'x' } };
  const jobs = ['a', 'b', 'c'].map((id) => add(book, id, { frames: '1-2', maxAttempts: 3 }));
  let sick;
  for (const [i, job] of jobs.entries()) {
    book.lease(job, 'h1', i, 1);
    const out = book.result(aTaskResult({ jobId: job.id, taskIndex: 0, attempt: 1, slot: i, ...fail }), 2);
    if (out.kind === 'accepted' && out.sick) sick = out.sick;
  }
  assert.deepEqual(sick?.jobs, ['a', 'b', 'c']);
  const other = add(book, 'd', { frames: '1' });
  assert.equal(book.lease(other, 'h1', 0, 3), undefined, 'no work for a sick host');
  assert.ok(book.lease(other, 'h2', 0, 3), 'other hosts go on');
  const why = waitingReason({ hosts: [{ host: 'h1', serverId: 's', inventory: anInventory(), slots: [], free: 1 }], closest: [], totalHosts: 2 }, [], undefined, ['h1']);
  assert.equal(why.kind, 'sick-hosts');
  assert.match(why.text, /sick .*h1 \(renderbus sick <host> --clear once fixed\)/);
  assert.equal(book.health.clear('h1'), true);
  assert.ok(book.lease(jobs[0]!, 'h1', 0, 4));
});

test('job-book - frame by frame: frame N starts once frame N of the job it follows is done; frames that job lacks do not wait', () => {
  const book = new JobBook();
  const render = add(book, 'render', { name: 'render', frames: '1-3', maxAttempts: 1 });
  const comp = add(book, 'comp', { frames: '1-4', afterFrames: ['render'] });
  assert.deepEqual(book.lease(comp, 'h1', 0, 1)!.frames, [4], 'frame 4 has nothing to wait for');
  assert.equal(book.lease(comp, 'h1', 1, 1), undefined);
  assert.match(book.summary(comp).why!.text, /waiting for frames of job render \(render\) to be done, frame by frame/);
  const r2 = book.lease(render, 'h2', 0, 1)!; // frame 1
  const r1 = book.lease(render, 'h2', 1, 1)!; // frame 2
  book.result(aTaskResult({ jobId: 'render', taskIndex: r1.taskIndex, attempt: 1, host: 'h2', slot: 1 }), 2);
  assert.deepEqual(book.lease(comp, 'h1', 1, 3)!.frames, [2], 'frame 2 of the render is done: frame 2 of the comp starts, ahead of frame 1');
  book.result(aTaskResult({ jobId: 'render', taskIndex: r2.taskIndex, attempt: 1, host: 'h2', slot: 0 }), 4);
  assert.deepEqual(book.lease(comp, 'h1', 2, 5)!.frames, [1], 'the frame passed over is taken once ready');
  const r3 = book.lease(render, 'h2', 0, 6)!;
  book.result(aTaskResult({ jobId: 'render', taskIndex: r3.taskIndex, attempt: 1, host: 'h2', slot: 0, status: 'failed', error: { code: 'RB_RENDER_FAILED', message: 'x' } }), 7);
  assert.match(book.summary(comp).why!.text, /whose frames it waits for one by one, failed: retry or cancel one of them/);
  assert.equal(book.lease(comp, 'h1', 3, 8), undefined);
});

test('job-book - a stale attempt\'s result from the same host and slot is ignored, running or queued', () => {
  const book = new JobBook();
  const job = add(book, 'a', { frames: '1' });
  book.lease(job, 'h1', 0, 1);
  book.releaseHost('h1'); // the host restarted: attempt 1 is lost
  const again = book.lease(job, 'h1', 0, 2)!; // and the same slot gets the task again
  assert.equal(again.attempt, 2);
  assert.equal(book.result(aTaskResult({ jobId: 'a', taskIndex: 0, attempt: 1, host: 'h1', slot: 0 }), 3).kind, 'stale', 'attempt 1 from the slot now running attempt 2');
  assert.equal(book.state(job), 'rendering');
  book.unlease('a', 0, 2); // attempt 2 never reached the slot: queued again
  assert.equal(book.result(aTaskResult({ jobId: 'a', taskIndex: 0, attempt: 1, host: 'h1', slot: 0 }), 4).kind, 'stale', 'attempt 1 from the slot, the task queued after attempt 2');
  assert.equal(book.summary(job).counts.queued, 1);
  assert.equal(book.result(aTaskResult({ jobId: 'a', taskIndex: 0, attempt: 2, host: 'h1', slot: 0 }), 5).kind, 'accepted', 'the latest attempt\'s late result counts');
});

test('job-book - "hosts are sick" only when every free matching host not kept away is sick', () => {
  const hosts = (...names: string[]) => names.map((host) => ({ host, serverId: 's', inventory: anInventory(), slots: [], free: 1 }));
  const some = waitingReason({ hosts: hosts('h1', 'h2'), closest: [], totalHosts: 2 }, [], undefined, ['h1']);
  assert.equal(some.kind, 'busy', 'h2 is well: the job waits for a slot, not for a cure');
  assert.doesNotMatch(some.text, /sick/);
  const all = waitingReason({ hosts: hosts('h1', 'h2'), closest: [], totalHosts: 2 }, ['h2'], undefined, ['h1']);
  assert.equal(all.kind, 'sick-hosts', 'h2 is kept away, h1 is sick');
  assert.deepEqual(all.hosts, ['h1']);
});
