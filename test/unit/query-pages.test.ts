import { test } from 'node:test';
import assert from 'node:assert/strict';
import { codecs, encodeAny, MAX_PAYLOAD, prepareJob, PROTOCOL_MAJOR, type JobBody, type JobsBody } from '../../protocol/index.ts';
import { JobBook, pageAllJobs, pageWholeJob } from '../../actors/scheduler/index.ts';
import { jobPage, jobsPage } from '../../actors/scheduler/query-pages.ts';
import { aJobSpec, aTaskResult } from '../helpers/builders.ts';

/** What the scheduler's query handler gives a page: one message, less its envelope. */
const BUDGET = MAX_PAYLOAD - 1_024;
const bytes = (v: unknown) => encodeAny(v).length;
/** A page as it goes on the wire: the reply envelope around the body. */
const wire = (body: JobsBody | JobBody) => codecs.queryReply.encode({ v: PROTOCOL_MAJOR, ok: true, body }).length;

test('query-pages - a 60,000-frame job view comes whole through pages that each fit one message', async () => {
  const book = new JobBook();
  // failures of their own on many hosts, more than a job's error budget: the job goes on (job-errors.ts)
  const spec = aJobSpec({ frames: '1-60000', maxTaskErrors: 100_000, output: { dir: '/a/rather/long/output/directory/for/this/shot/so/records/are/not/tiny' } });
  const job = book.add('big', spec, prepareJob(spec), 1000);
  // some frames ended, with outputs, stats and errors, so that records are of every size
  for (let i = 0; i < 3000; i++) {
    const a = book.lease(job, `render-host-${i % 50}`, i % 8, 2000 + i)!;
    const failed = i % 10 === 0;
    book.result(aTaskResult({ jobId: 'big', taskIndex: a.taskIndex, attempt: 1, host: `render-host-${i % 50}`, slot: i % 8, status: failed ? 'failed' : 'done', outputs: failed ? [] : [{ frame: a.frames[0]!, path: `/elsewhere/${a.frames[0]}.exr` }], ...(failed ? { error: { code: 'RB_RENDER_FAILED', message: `${'x'.repeat(200)} ${i}` } } : {}) }), 3000 + i);
  }
  const pages: number[] = [];
  const whole = await pageWholeJob(async (req) => {
    const body = jobPage(book, job, req.afterFrame, { budget: BUDGET, sizeOf: bytes, sizeOfHead: (head) => bytes({ job: head, more: true, archived: true }) });
    pages.push(wire(body));
    return body;
  }, 'big');
  assert.ok(pages.length > 1, `paged (${pages.length} pages)`);
  for (const size of pages) assert.ok(size <= MAX_PAYLOAD, `a page of ${size} bytes`);
  assert.deepEqual(whole.job.frames, book.detail(job).frames, 'every frame once, in order, as the whole view has them');
  assert.equal(whole.archived, false);
  assert.ok(wire({ job: book.detail(job) }) > MAX_PAYLOAD, 'the whole view would not have fit one message');
});

test('query-pages - 5,000 jobs are listed whole through pages that each fit one message, in the scheduler\'s order', async () => {
  const book = new JobBook();
  for (let i = 0; i < 5000; i++) {
    const spec = aJobSpec({ name: `shot-${i}-${'n'.repeat(100)}`, priority: i % 7, hold: true, user: `user${i % 13}` });
    book.add(`job-${i}`, spec, prepareJob(spec), 1000 + i);
  }
  const pages: number[] = [];
  const jobs = await pageAllJobs(async (req) => {
    const body = jobsPage(book, req.after, { budget: BUDGET, fixed: bytes({ jobs: [], more: true, next: 'e'.padEnd(24, '9') }), sizeOf: bytes });
    pages.push(wire(body));
    return body;
  });
  assert.ok(pages.length > 1, `paged (${pages.length} pages)`);
  for (const size of pages) assert.ok(size <= MAX_PAYLOAD, `a page of ${size} bytes`);
  assert.deepEqual(jobs.map((j) => j.jobId), book.list().map((j) => j.id));
});

test('query-pages - a page after a cursor goes on where the last one ended, whatever happened to that job', () => {
  const book = new JobBook();
  const add = (id: string, priority: number) => {
    const spec = aJobSpec({ priority, hold: true });
    return book.add(id, spec, prepareJob(spec), 1000);
  };
  for (const [id, p] of [['a', 5], ['b', 1], ['c', 9], ['d', 5]] as const) add(id, p);
  const small = { budget: BUDGET, fixed: 0, sizeOf: bytes, limit: 2 };
  const first = jobsPage(book, undefined, small);
  assert.deepEqual([first.jobs.map((j) => j.jobId), first.more], [['b', 'a'], true]);
  // the last job listed is cancelled (it moves to the ended jobs) before the next page is asked for
  book.cancel(book.jobs.get('a')!, 2000);
  const second = jobsPage(book, first.next, small);
  assert.deepEqual(second.jobs.map((j) => j.jobId), ['d', 'c'], 'the jobs after it in the order, none skipped');
  const third = jobsPage(book, second.next, small);
  assert.deepEqual([third.jobs.map((j) => j.jobId), third.more], [['a'], undefined], 'then the ended ones');
  assert.throws(() => jobsPage(book, 'nonsense', small), /not a jobs cursor/);
});

test('query-pages - a pager refuses a page that does not move on, rather than asking forever', async () => {
  const book = new JobBook();
  const spec = aJobSpec({ frames: '1-10' });
  const job = book.add('j', spec, prepareJob(spec), 1000);
  const stuck = { ...book.detail(job), frames: [] };
  await assert.rejects(pageWholeJob(async () => ({ job: stuck, more: true }), 'j'), /page was empty/);
  await assert.rejects(pageAllJobs(async () => ({ jobs: [], more: true })), /no new cursor/);
});
