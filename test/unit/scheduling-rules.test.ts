import { test } from 'node:test';
import assert from 'node:assert/strict';
import { prepareJob, type MatchBody } from '../../protocol/index.ts';
import { JobBook, type Job } from '../../actors/scheduler/index.ts';
import { planDispatch } from '../../actors/scheduler/dispatch.ts';
import { aJobSpec, aTaskResult, anInventory } from '../helpers/builders.ts';

/** Every task of a (small) job as it stands, untouched ones included. */
const allTasks = (job: Job) => Array.from({ length: job.tasks.length }, (_, i) => job.tasks.view(i)!);

// Fair share, memory retries and task-duration chunks: the JobBook and one dispatch round, no I/O.

const add = (book: JobBook, id: string, over: Parameters<typeof aJobSpec>[0] = {}, at = 1000) => {
  const spec = aJobSpec(over);
  return book.add(id, spec, prepareJob(spec), at);
};

/** A registry answer: `hosts` hosts of `slots` idle slots each (`ramMb` of RAM). */
const farm = (hosts: number, slots: number, ramMb = 24_000): MatchBody => ({
  hosts: Array.from({ length: hosts }, (_, h) => ({
    host: `h${h}`,
    serverId: `s${h}`,
    inventory: anInventory({ ramMb }),
    slots: Array.from({ length: slots }, (_, index) => ({ index, state: 'idle' as const })),
    free: slots,
  })),
  closest: [],
  totalHosts: hosts,
});

const round = (book: JobBook, match: MatchBody, now = 2000) => planDispatch(book, book.queue(), () => match, now);
const leasedBy = (book: JobBook, plan: ReturnType<typeof round>) => {
  const n = new Map<string, number>();
  for (const list of plan.byHost.values()) for (const a of list) n.set(book.jobs.get(a.jobId)!.project, (n.get(book.jobs.get(a.jobId)!.project) ?? 0) + 1);
  return Object.fromEntries([...n].sort());
};
/** Ends one running task of the job, done. */
const finishOne = (book: JobBook, job: Job, now: number) => {
  const t = allTasks(job).find((x) => x.state === 'running')!;
  return book.result(aTaskResult({ jobId: job.id, taskIndex: t.index, attempt: t.attempt, host: t.host!, slot: t.slot!, wantNext: false }), now);
};

test('fair share - off until a share is set: the queue goes by priority alone, across projects', () => {
  const book = new JobBook();
  add(book, 'big', { frames: '1-100', priority: 10, project: 'show-a' });
  add(book, 'small', { frames: '1-100', priority: 50, project: 'show-b' });
  assert.deepEqual(leasedBy(book, round(book, farm(2, 4))), { 'show-a': 8 });
});

test('fair share - free slots are split by weight; one huge urgent job cannot starve another show', () => {
  const book = new JobBook();
  book.shares.set('show-a', 3);
  add(book, 'big', { frames: '1-1000', priority: 0, project: 'show-a' });
  add(book, 'small', { frames: '1-100', priority: 90, project: 'show-b' }); // weighs the default 1
  assert.deepEqual(leasedBy(book, round(book, farm(4, 4))), { 'show-a': 12, 'show-b': 4 });
  const uses = book.shareUses();
  assert.deepEqual(uses.map((u) => [u.project, u.weight, u.set, u.share, u.running]), [['show-a', 3, true, 0.75, 12], ['show-b', 1, false, 0.25, 4]]);
});

test('fair share - a project with no work lends its share; when it comes back, slots that free go to it (nothing is killed)', () => {
  const book = new JobBook();
  book.shares.set('show-a', 1);
  book.shares.set('show-b', 1);
  const a = add(book, 'a', { frames: '1-100', project: 'show-a' });
  assert.deepEqual(leasedBy(book, round(book, farm(2, 4))), { 'show-a': 8 }, 'show-b has no work: show-a borrows every slot');
  const b = add(book, 'b', { frames: '1-100', project: 'show-b' });
  assert.equal(round(book, farm(2, 4)).byHost.size, 0, 'no slot is free and none is taken back');
  assert.equal(book.shareReason(a)?.kind, 'share', 'show-a holds all 8 slots, over its half');
  assert.equal(book.shareReason(b), undefined, 'show-b is under its share: it is merely waiting for slots');
  // frame boundaries: each slot that frees goes to the project furthest under its share
  const next: string[] = [];
  for (let i = 0; i < 6; i++) {
    finishOne(book, a, 3000 + i);
    const job = book.forSlot().next().value as Job;
    next.push(job.project);
    book.lease(job, 'h0', 0, 3000 + i);
  }
  assert.deepEqual(next, ['show-b', 'show-b', 'show-b', 'show-b', 'show-a', 'show-a'], 'show-b until both hold 4; then show-a, whose slots freed');
  assert.equal(b.leased, 4);
  assert.equal(a.leased, 4);
});

test('fair share - why: a job whose project holds its share waits with kind share, naming the figures', () => {
  const book = new JobBook();
  book.shares.set('show-a', 1);
  const a1 = add(book, 'a1', { frames: '1-8', project: 'show-a' });
  round(book, farm(1, 4));
  add(book, 'b1', { frames: '1-8', project: 'show-b' });
  const a2 = add(book, 'a2', { frames: '1-8', project: 'show-a' });
  const plan = round(book, farm(1, 4)); // every slot is taken
  assert.equal(a1.leased, 4);
  const why = plan.waiting.get(a2)!;
  assert.equal(why.kind, 'share');
  assert.deepEqual(why.share, { project: 'show-a', running: 4, entitled: 2 });
  assert.match(why.text, /project show-a holds 4 slots, at or over its share \(2 of the 4 busy slots/);
});

test('memory - a task that ran out of memory is retried with 1.5 times as much, only on hosts with that much RAM', () => {
  const book = new JobBook();
  const job = add(book, 'a', { frames: '1-2', memoryMb: 1000, maxAttempts: 5 });
  assert.equal(job.prepared.requirements.ramMb, 1000, 'a host needs at least the memory a task may use');
  const first = book.lease(job, 'h1', 0, 1, 2000)!;
  assert.equal(first.memoryLimitMb, 1000);
  book.result(aTaskResult({ jobId: 'a', taskIndex: 0, attempt: 1, status: 'failed', error: { code: 'RB_OUT_OF_MEMORY', message: 'it used 1100 MB' } }), 2);
  assert.equal(job.tasks.view(0)!.memoryMb, 1500);
  const other = book.lease(job, 'small', 0, 3, 1200)!;
  assert.equal(other.taskIndex, 1, 'a 1200 MB host takes the task that still needs 1000 MB, not the one that needs 1500');
  assert.equal(book.lease(job, 'small', 1, 3, 1200), undefined);
  assert.equal(book.memoryBlocked(job, 1200), 1500, 'why: it needs 1500 MB, more than the biggest free host');
  const again = book.lease(job, 'big', 0, 4, 4000)!;
  assert.deepEqual([again.taskIndex, again.attempt, again.memoryLimitMb], [0, 2, 1500]);
});

test('memory - a job with no memory set that was killed (kernel OOM) gets 1.5 times its peak; a replay raises it the same way', () => {
  const book = new JobBook();
  const job = add(book, 'a', { frames: '1' });
  book.lease(job, 'h1', 0, 1);
  const stats = { wallMs: 10, cpuMs: 10, peakRssKb: 2048 * 1024, bytesWritten: 0 };
  book.result(aTaskResult({ jobId: 'a', taskIndex: 0, attempt: 1, status: 'failed', error: { code: 'RB_OUT_OF_MEMORY', message: 'killed by SIGKILL' }, stats }), 2);
  assert.equal(job.tasks.view(0)!.memoryMb, 3072);
  const replayed = new JobBook();
  const again = add(replayed, 'a', { frames: '1' });
  replayed.restoreRetry(again, 0, 1, job.tasks.view(0)!.error, stats);
  assert.equal(again.tasks.view(0)!.memoryMb, 3072);
  assert.equal(replayed.lease(again, 'h1', 0, 3)!.memoryLimitMb, 3072);
});

test('task duration - the chunk grows from measured frame times so tasks last about the target, and a replay splits the same way', () => {
  const book = new JobBook();
  const job = add(book, 'a', { frames: '1-100', taskDuration: 10 }); // starts one frame per task
  const stats = { wallMs: 1000, cpuMs: 900, peakRssKb: 1, bytesWritten: 1 };
  book.lease(job, 'h1', 0, 1);
  book.lease(job, 'h1', 1, 1);
  book.lease(job, 'h1', 2, 1);
  book.result(aTaskResult({ jobId: 'a', taskIndex: 0, attempt: 1, stats }), 2);
  assert.equal(job.tasks.length, 100, 'one measured task is not enough');
  const r = book.result(aTaskResult({ jobId: 'a', taskIndex: 1, attempt: 1, slot: 1, stats }), 3);
  assert.equal(r.kind, 'accepted');
  const plan = job.tasks.view(1)!.rechunk!;
  assert.deepEqual(plan, { from: 3, keep: [], size: 10 }, '1 s a frame, 10 s a task: 10 frames per task, from the first task not handed out');
  const live = book.detail(job);
  assert.deepEqual(live.counts, { total: 100, queued: 97, running: 1, done: 2, failed: 0 });
  const next = book.lease(job, 'h1', 0, 4)!;
  assert.deepEqual(next.frames, [4, 5, 6, 7, 8, 9, 10, 11, 12, 13]);
  assert.deepEqual(live.frames.map((f) => f.frame), Array.from({ length: 100 }, (_, i) => i + 1), 'every frame once, in order');
  // fast frames shrink nothing below one frame; slow ones: a re-split the other way
  const replayed = new JobBook();
  const again = add(replayed, 'a', { frames: '1-100', taskDuration: 10 });
  replayed.restoreEnded(again, 0, 'done', { outputs: [], stats, finishedAt: 2, host: 'h1', slot: 0, attempt: 1 });
  replayed.restoreEnded(again, 1, 'done', { outputs: [], stats, finishedAt: 3, host: 'h1', slot: 1, attempt: 1 }, plan);
  assert.deepEqual(allTasks(again).map((t) => t.frames), allTasks(job).map((t) => t.frames), 'the same tasks with the same indices');
});

test('task duration - slow frames split big chunks into smaller ones; tasks handed back keep their frames', () => {
  const book = new JobBook();
  const job = add(book, 'a', { frames: '1-40', chunk: 10, taskDuration: 30 });
  assert.equal(job.tasks.length, 4);
  const stats = { wallMs: 60_000, cpuMs: 1, peakRssKb: 1, bytesWritten: 1 }; // 6 s a frame
  book.lease(job, 'h1', 0, 1);
  book.lease(job, 'h1', 1, 1);
  const back = book.lease(job, 'h1', 2, 1)!;
  book.unlease(back.jobId, back.taskIndex, back.attempt); // handed back: queued with an attempt
  book.result(aTaskResult({ jobId: 'a', taskIndex: 0, attempt: 1, stats }), 2);
  book.result(aTaskResult({ jobId: 'a', taskIndex: 1, attempt: 1, slot: 1, stats }), 3);
  assert.deepEqual(job.tasks.view(1)!.rechunk, { from: 3, keep: [], size: 5 });
  assert.deepEqual(allTasks(job).slice(4).map((t) => t.frames), [[31, 32, 33, 34, 35], [36, 37, 38, 39, 40]]);
  assert.deepEqual(job.tasks.view(2)!.frames.length, 10, 'the task handed back is not split');
  assert.equal(book.summary(job).counts.queued, 20);
});
