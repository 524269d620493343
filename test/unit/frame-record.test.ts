import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_FRAME_ATTEMPTS, PROTOCOL_MAJOR, prepareJob, type HeldLease, type JournalRecord, type TaskResult } from '../../protocol/index.ts';
import { JobBook } from '../../actors/scheduler/index.ts';
import { applyRecord } from '../../actors/scheduler/replay.ts';
import { aJobSpec, aTaskResult } from '../helpers/builders.ts';

const add = (book: JobBook, id: string, over: Parameters<typeof aJobSpec>[0] = {}) => {
  const spec = aJobSpec(over);
  return book.add(id, spec, prepareJob(spec), 1000);
};
const held = (jobId: string, taskIndex: number, attempt: number, over: Partial<HeldLease> = {}): HeldLease => ({
  taskId: `${jobId}.${taskIndex}`, jobId, taskIndex, attempt, slot: 0, state: 'running', ...over,
});
const failed = (jobId: string, taskIndex: number, attempt: number, over: Partial<TaskResult> = {}) =>
  aTaskResult({ jobId, taskIndex, attempt, status: 'failed', outputs: [], error: { code: 'RB_RENDER_FAILED', message: `boom ${attempt}` }, ...over });

test('frame-record - a task handed to a busy slot is in hand, not running, until its slot says it started it; it is timed from then', () => {
  const book = new JobBook();
  const job = add(book, 'a', { frames: '1-4' });
  book.lease(job, 'h1', 0, 2000); // an idle slot starts it as it arrives
  book.lease(job, 'h1', 0, 2000); // held in hand behind the first
  assert.deepEqual(book.summary(job).counts, { total: 4, queued: 2, running: 1, done: 0, failed: 0, inHand: 1 });
  let [first, second] = [...book.frameRecords(job)];
  assert.deepEqual([first!.startedAt, first!.handedAt, first!.inHand], [2000, 2000, undefined]);
  assert.deepEqual([second!.startedAt, second!.handedAt, second!.inHand], [undefined, 2000, true], 'a task in hand has no start time');
  // the first ends, and its result says the slot started the one it held (want 1): it runs from now
  book.result(aTaskResult({ jobId: 'a', taskIndex: 0, attempt: 1, want: 1 }), 3000);
  assert.equal(book.heldStarted('h1', 0, 3000)?.id, 'a');
  assert.equal(book.heldStarted('h1', 0, 3100), undefined, 'said once');
  assert.deepEqual(book.summary(job).counts, { total: 4, queued: 2, running: 1, done: 1, failed: 0 });
  [, second] = [...book.frameRecords(job)];
  assert.deepEqual([second!.startedAt, second!.inHand], [3000, undefined]);
  // a lease report tells the real start of a task its slot started without a result saying so
  book.lease(job, 'h1', 0, 3200);
  assert.equal(book.summary(job).counts.inHand, 1);
  const out = book.renew('h1', [held('a', 1, 1), held('a', 2, 1, { startedAt: 3300 })], 3400);
  assert.deepEqual(out.started.map((j) => j.id), ['a']);
  assert.equal([...book.frameRecords(job)][2]!.startedAt, 3300);
  assert.deepEqual(book.renew('h1', [held('a', 1, 1), held('a', 2, 1, { startedAt: 3300 })], 3500).started, [], 'the same report again changes nothing');
  // a held task whose slot says it still holds it is in hand again (a start inferred too early)
  book.renew('h1', [held('a', 1, 1), held('a', 2, 1, { state: 'held' })], 3600);
  assert.deepEqual([...book.frameRecords(job)].slice(2, 3).map((r) => [r.startedAt, r.inHand]), [[undefined, true]]);
  // a result without any word of its start: it started its wall time before it ended
  book.result(aTaskResult({ jobId: 'a', taskIndex: 2, attempt: 1, stats: { wallMs: 600, cpuMs: 1, peakRssKb: 1, bytesWritten: 1 } }), 4000);
  assert.equal([...book.frameRecords(job)][2]!.startedAt, 3400);
});

test('frame-record - a start time is never before the hand-out nor after now; a lost task in hand leaves the count', () => {
  const book = new JobBook();
  const job = add(book, 'a', { frames: '1-4' });
  book.lease(job, 'h1', 0, 1000);
  book.lease(job, 'h1', 0, 2000);
  book.lease(job, 'h1', 1, 1000);
  book.lease(job, 'h1', 1, 2000);
  book.renew('h1', [held('a', 1, 1, { startedAt: 1500 })], 2500);
  book.renew('h1', [held('a', 1, 1, { startedAt: 1500 }), held('a', 3, 1, { slot: 1, startedAt: 9000 })], 2500);
  const records = [...book.frameRecords(job)];
  assert.deepEqual([records[1]!.startedAt, records[3]!.startedAt], [2000, 2500]);
  const book2 = new JobBook();
  const job2 = add(book2, 'b', { frames: '1-2' });
  book2.lease(job2, 'h1', 0, 2000);
  book2.lease(job2, 'h1', 0, 2000);
  assert.equal(book2.summary(job2).counts.inHand, 1);
  book2.releaseHost('h1');
  assert.deepEqual(book2.summary(job2).counts, { total: 2, queued: 2, running: 0, done: 0, failed: 0 });
});

test('frame-record - the tasks a paused job holds in hand are listed to be asked back; a returned one is queued with no attempt used', () => {
  const book = new JobBook();
  const job = add(book, 'a', { frames: '1-2' });
  book.lease(job, 'h1', 0, 2000);
  book.lease(job, 'h1', 0, 2000);
  book.setPaused(job, true);
  assert.deepEqual(book.inHand(job).map((t) => t.index), [1]);
  const back = book.result(aTaskResult({ jobId: 'a', taskIndex: 1, attempt: 1, status: 'returned', outputs: [] }), 2200);
  assert.equal(back.kind, 'returned');
  assert.deepEqual(book.summary(job).counts, { total: 2, queued: 1, running: 1, done: 0, failed: 0 });
  assert.equal(book.queue().length, 0, 'a paused job hands nothing out');
  book.setPaused(job, false);
  const again = book.lease(job, 'h2', 0, 3000)!;
  assert.deepEqual([again.taskIndex, again.attempt], [1, 2]);
  assert.equal(job.tasks.peek(1)!.failures, 0, 'handing back used no attempt');
});

test('frame-record - each failed attempt stays in the record (host, slot, error, times), the last MAX_FRAME_ATTEMPTS of them', () => {
  const book = new JobBook();
  const job = add(book, 'a', { frames: '1', maxAttempts: MAX_FRAME_ATTEMPTS + 5, maxHostFailures: 100 });
  for (let i = 1; i <= 2; i++) {
    const a = book.lease(job, `h${i}`, i, 1000 * i + 100)!; // an idle slot: started as it arrives
    assert.equal(book.result(failed('a', 0, a.attempt, { host: `h${i}`, slot: i }), 1000 * i + 500).kind, 'accepted');
  }
  const a3 = book.lease(job, 'h3', 0, 5000)!;
  book.result(aTaskResult({ jobId: 'a', taskIndex: 0, attempt: a3.attempt, host: 'h3', stats: { wallMs: 300, cpuMs: 1, peakRssKb: 1, bytesWritten: 1 } }), 5400);
  const [r] = [...book.frameRecords(job)];
  assert.equal(r!.state, 'done');
  assert.deepEqual(r!.attempts, [
    { attempt: 1, host: 'h1', slot: 1, error: 'RB_RENDER_FAILED: boom 1', startedAt: 1100, finishedAt: 1500 },
    { attempt: 2, host: 'h2', slot: 2, error: 'RB_RENDER_FAILED: boom 2', startedAt: 2100, finishedAt: 2500 },
  ]);
  assert.deepEqual([r!.host, r!.startedAt, r!.finishedAt], ['h3', 5000, 5400]);
  // bounded: a frame failing again and again keeps its latest attempts
  const book2 = new JobBook();
  const job2 = add(book2, 'b', { frames: '1', maxAttempts: MAX_FRAME_ATTEMPTS + 5, maxHostFailures: 100 });
  for (let i = 1; i <= MAX_FRAME_ATTEMPTS + 3; i++) {
    const a = book2.lease(job2, 'h1', 0, 1000 * i)!;
    book2.result(failed('b', 0, a.attempt), 1000 * i + 10);
  }
  const [r2] = [...book2.frameRecords(job2)];
  assert.equal(r2!.attempts!.length, MAX_FRAME_ATTEMPTS);
  assert.deepEqual([r2!.attempts![0]!.attempt, r2!.attempts!.at(-1)!.attempt], [4, MAX_FRAME_ATTEMPTS + 3]);
});

test('frame-record - failed attempts and start times are rebuilt from the journal', () => {
  const spec = aJobSpec({ frames: '1-2' });
  const task = (taskIndex: number, attempt: number, over: Partial<Extract<JournalRecord, { kind: 'task' }>>): JournalRecord => ({
    v: PROTOCOL_MAJOR, kind: 'task', jobId: 'a', taskIndex, status: 'failed', attempt, host: 'h1', slot: 0, outputs: [],
    stats: { wallMs: 1, cpuMs: 1, peakRssKb: 1, bytesWritten: 1 }, at: 0, ...over,
  });
  const records: JournalRecord[] = [
    { v: PROTOCOL_MAJOR, kind: 'submit', jobId: 'a', spec, at: 1000 },
    task(0, 1, { retry: true, error: 'RB_RENDER_FAILED: one', host: 'h1', slot: 2, startedAt: 1100, at: 1200 }),
    task(0, 2, { retry: true, error: 'RB_RENDER_FAILED: two', host: 'h2', slot: 0, startedAt: 1300, at: 1400 }),
    task(0, 3, { status: 'done', host: 'h3', slot: 1, startedAt: 1500, at: 1600, outputs: [{ frame: 1, path: '/out/1.png' }] }),
    task(1, 1, { error: 'RB_RENDER_FAILED: last', host: 'h4', slot: 0, startedAt: 1700, at: 1800 }),
  ];
  const book = new JobBook();
  records.forEach((rec, i) => applyRecord(book, rec, i + 1));
  book.finishReplay();
  const [one, two] = [...book.frameRecords(book.jobs.get('a')!)];
  assert.deepEqual(one!.attempts, [
    { attempt: 1, host: 'h1', slot: 2, error: 'RB_RENDER_FAILED: one', startedAt: 1100, finishedAt: 1200 },
    { attempt: 2, host: 'h2', slot: 0, error: 'RB_RENDER_FAILED: two', startedAt: 1300, finishedAt: 1400 },
  ]);
  assert.deepEqual([one!.state, one!.startedAt, one!.finishedAt], ['done', 1500, 1600]);
  assert.deepEqual(two!.attempts, [{ attempt: 1, host: 'h4', slot: 0, error: 'RB_RENDER_FAILED: last', startedAt: 1700, finishedAt: 1800 }]);
});
