import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chunkFrames, expandRuns, parseFrameRuns, parseFrames, prepareJob, type FrameRecord } from '../../protocol/index.ts';
import { JobBook, type Job } from '../../actors/scheduler/index.ts';
import { PreviewOrder, RECENT_DONE_KEPT, TaskTable } from '../../actors/scheduler/task-table.ts';
import { aJobSpec, aTaskResult } from '../helpers/builders.ts';

const add = (book: JobBook, id: string, over: Parameters<typeof aJobSpec>[0] = {}, at = 1000): Job => {
  const spec = aJobSpec(over);
  return book.add(id, spec, prepareJob(spec), at);
};
/** The frame's file where render servers put it (render-slot/output.ts), for the default pattern. */
const out = (frame: number) => `/out/shot/frame_${String(frame).padStart(4, '0')}.png`;

/** The old frame list: every frame expanded, sorted, without duplicates. */
function oldParse(text: string): number[] {
  const all = new Set<number>();
  for (const part of text.split(',')) {
    const m = /^(\d+)(?:-(\d+)(?:x(\d+))?)?$/.exec(part.trim())!;
    const first = Number(m[1]);
    const last = m[2] === undefined ? first : Number(m[2]);
    for (let f = first; f <= last; f += Number(m[3] ?? 1)) all.add(f);
  }
  return [...all].sort((a, b) => a - b);
}

const LISTS = ['1-5', '1-10x3', '10-12, 1,5,11', '0', '1-100,50-150', '1-10,11-20', '5,4,3,2,1', '1-20x2,2-20x2', '7-7', '1-1000x7,3-30', '100-200x10,150-160'];

test('task-table - frame runs hold the same frames as the expanded list did', () => {
  for (const text of LISTS) {
    const runs = parseFrameRuns(text);
    assert.deepEqual(expandRuns(runs), oldParse(text), text);
    assert.deepEqual(parseFrames(text), oldParse(text), text);
    assert.equal(runs.count, oldParse(text).length, text);
    for (let i = 1; i < runs.starts.length; i++) assert.ok(runs.starts[i]! > runs.starts[i - 1]! + runs.lengths[i - 1]!, `${text}: runs apart`);
  }
  assert.equal(parseFrameRuns('1-1000000').starts.length, 1, 'a million frames in one range are one run');
});

test('task-table - tasks hold the frames chunkFrames gave them, and each frame finds its task', () => {
  for (const text of LISTS) {
    for (const chunk of [1, 2, 3, 7, 50]) {
      const frames = oldParse(text);
      const expected = chunkFrames(frames, chunk);
      const t = new TaskTable(parseFrameRuns(text), chunk);
      assert.equal(t.length, expected.length, `${text} chunk ${chunk}`);
      for (let i = 0; i < t.length; i++) {
        assert.deepEqual(t.framesOf(i), expected[i], `${text} chunk ${chunk} task ${i}`);
        for (const f of expected[i]!) assert.equal(t.taskOfFrame(f), i, `frame ${f}`);
      }
      assert.equal(t.taskOfFrame(Math.max(...frames) + 1), undefined);
      assert.deepEqual([...t.framesFrom(undefined)].map((x) => x.frame), frames);
      const mid = frames[Math.floor(frames.length / 2)]!;
      assert.deepEqual([...t.framesFrom(mid)].map((x) => x.frame), frames.filter((f) => f > mid), 'from a cursor: the frames after it');
    }
  }
});

test('task-table - the preview order is first, last and middle, then the rest, as it was listed', () => {
  const old = (n: number) => {
    const first = [...new Set([0, n - 1, Math.floor((n - 1) / 2)])].filter((i) => i >= 0 && i < n);
    const picked = new Set(first);
    return [...first, ...Array.from({ length: n }, (_, i) => i).filter((i) => !picked.has(i))];
  };
  for (let n = 1; n < 40; n++) {
    const o = new PreviewOrder(n);
    assert.deepEqual(Array.from({ length: o.length }, (_, p) => o.at(p)), old(n), `n=${n}`);
  }
});

test('task-table - a million-frame job stores no task until one is touched', () => {
  const book = new JobBook();
  const job = add(book, 'big', { frames: '1-1000000' });
  assert.equal(job.tasks.length, 1_000_000);
  assert.equal(job.tasks.touched, 0);
  assert.deepEqual(book.summary(job).counts, { total: 1_000_000, queued: 1_000_000, running: 0, done: 0, failed: 0 });
  const a = book.lease(job, 'h1', 0, 2000)!;
  assert.deepEqual([a.taskIndex, a.frames], [0, [1]]);
  assert.equal(job.tasks.touched, 1);
  const [first, second] = [...book.frameRecords(job, undefined)].slice(0, 2);
  // handed to an idle slot: started as it arrives
  assert.deepEqual(first, { frame: 1, state: 'running', taskIndex: 0, attempt: 1, host: 'h1', slot: 0, handedAt: 2000, startedAt: 2000 });
  assert.deepEqual(second, { frame: 2, state: 'queued', taskIndex: 1, attempt: 0 });
  // a result for a task never handed out is stale, and leaves it untouched
  assert.equal(book.result(aTaskResult({ jobId: 'big', taskIndex: 500, attempt: 1 }), 3000).kind, 'stale');
  assert.equal(job.tasks.touched, 1);
  assert.equal(book.result(aTaskResult({ jobId: 'big', taskIndex: 1_000_000, attempt: 1 }), 3000).kind, 'unknown');
  book.cancel(job, 4000);
  assert.equal(job.tasks.stateOf(999_999), 'cancelled', 'untouched tasks are cancelled with the job');
  assert.equal(job.tasks.touched, 1);
});

/** Leases and ends every task of a job (done, the usual outputs), in order. */
function renderAll(book: JobBook, job: Job, from = 0, at = 2000): void {
  for (let i = from; i < job.tasks.length; i++) {
    const a = book.lease(job, 'h1', i % 4, at + i)!;
    const r = book.result(aTaskResult({ jobId: job.id, taskIndex: a.taskIndex, attempt: a.attempt, slot: i % 4, outputs: a.frames.map((f) => ({ frame: f, path: out(f) })), stats: { wallMs: 100.5 + i, cpuMs: 90, peakRssKb: 1000, bytesWritten: 10 } }), at + i + 1);
    assert.equal(r.kind, 'accepted');
  }
}

test('task-table - done tasks settle into columns past the latest ones, and read back as they were', () => {
  const n = RECENT_DONE_KEPT + 500;
  const book = new JobBook();
  const job = add(book, 'a', { frames: `1-${n}` });
  // frame records while every done task is still an object
  renderAll(book, job, 0);
  assert.equal(book.state(job), 'done');
  assert.equal(job.tasks.objects, RECENT_DONE_KEPT, 'only the latest done tasks stay objects');
  assert.equal(job.tasks.touched, n);
  const records = [...book.frameRecords(job)];
  assert.equal(records.length, n);
  assert.deepEqual(records[0], { frame: 1, state: 'done', taskIndex: 0, attempt: 1, host: 'h1', slot: 0, startedAt: 2000, finishedAt: 2001, output: out(1), stats: { wallMs: 100.5, cpuMs: 90, peakRssKb: 1000, bytesWritten: 10 } });
  // the same as a book where nothing settles (each record built from its task object)
  const settledOne = records[10]!;
  assert.deepEqual(settledOne, { frame: 11, state: 'done', taskIndex: 10, attempt: 1, host: 'h1', slot: 2, startedAt: 2010, finishedAt: 2011, output: out(11), stats: { wallMs: 110.5, cpuMs: 90, peakRssKb: 1000, bytesWritten: 10 } });
  // a duplicate of a settled task's result is still a duplicate; another attempt's is stale
  assert.equal(book.result(aTaskResult({ jobId: 'a', taskIndex: 10, attempt: 1, slot: 2 }), 9000).kind, 'duplicate');
  assert.equal(book.result(aTaskResult({ jobId: 'a', taskIndex: 10, attempt: 2, slot: 2 }), 9000).kind, 'stale');
  // a retry of a settled frame queues it again, with a fresh attempt
  assert.deepEqual(book.retry(job, [11]).map((t) => t.index), [10]);
  assert.equal(book.state(job), 'rendering');
  const again = book.lease(job, 'h2', 0, 10_000)!;
  assert.deepEqual([again.taskIndex, again.attempt, again.frames], [10, 2, [11]]);
  assert.deepEqual(book.summary(job).counts, { total: n, queued: 0, running: 1, done: n - 1, failed: 0 });
});

test('task-table - a done task with something of its own stays an object (other outputs, raised memory)', () => {
  const book = new JobBook();
  const job = add(book, 'a', { frames: `1-${RECENT_DONE_KEPT + 10}` });
  const a = book.lease(job, 'h1', 0, 2000)!;
  book.result(aTaskResult({ jobId: 'a', taskIndex: a.taskIndex, attempt: 1, outputs: [{ frame: 1, path: '/elsewhere/one.png' }] }), 2001);
  renderAll(book, job, 1);
  assert.equal(job.tasks.peek(0)?.outputs?.[0]?.path, '/elsewhere/one.png', 'kept as an object');
  assert.equal([...book.frameRecords(job)][0]!.output, '/elsewhere/one.png');
});

test('task-table - failed frames, errors and a re-split read as they did', () => {
  const book = new JobBook();
  const job = add(book, 'a', { frames: '1-40', chunk: 10, taskDuration: 10, maxAttempts: 1 });
  const a0 = book.lease(job, 'h1', 0, 1000)!;
  const a1 = book.lease(job, 'h1', 1, 1000)!;
  book.result(aTaskResult({ jobId: 'a', taskIndex: a0.taskIndex, attempt: 1, status: 'failed', error: { code: 'RB_RENDER_FAILED', message: 'boom' } }), 2000);
  book.result(aTaskResult({ jobId: 'a', taskIndex: a1.taskIndex, attempt: 1, slot: 1, stats: { wallMs: 50_000, cpuMs: 1, peakRssKb: 1, bytesWritten: 1 } }), 2000);
  const a2 = book.lease(job, 'h1', 1, 2000)!;
  book.result(aTaskResult({ jobId: 'a', taskIndex: a2.taskIndex, attempt: 1, slot: 1, stats: { wallMs: 50_000, cpuMs: 1, peakRssKb: 1, bytesWritten: 1 } }), 3000);
  // 5 s a frame, 10 s a task: the last task not handed out is split in two
  assert.ok(job.tasks.length > 4, 're-split');
  const records: FrameRecord[] = [...book.frameRecords(job)];
  assert.deepEqual(records.map((r) => r.frame), Array.from({ length: 40 }, (_, i) => i + 1), 'every frame once, in order');
  assert.deepEqual(records.slice(0, 10).map((r) => [r.state, r.error]), Array.from({ length: 10 }, () => ['failed', 'RB_RENDER_FAILED: boom']));
  assert.deepEqual(book.failures(job).map((f) => f.frame), Array.from({ length: 10 }, (_, i) => i + 1));
  const tail = records.slice(30);
  assert.ok(tail.every((r) => r.state === 'queued' && r.taskIndex >= 4), 'the re-split frames belong to the new tasks');
  assert.equal(job.tasks.taskOfFrame(40), tail.at(-1)!.taskIndex);
});
