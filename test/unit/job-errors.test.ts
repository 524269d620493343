import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildJob } from '../../tools/cli/job-file.ts';
import { DEFAULT_MAX_TASK_ERRORS, prepareJob, type JournalRecord, type MatchBody, type TaskResult } from '../../protocol/index.ts';
import { JobBook, type Job } from '../../actors/scheduler/index.ts';
import { planDispatch } from '../../actors/scheduler/dispatch.ts';
import { keptAwayHosts, retryWouldChange } from '../../actors/scheduler/job-errors.ts';
import { applyRecord } from '../../actors/scheduler/replay.ts';
import { aJobSpec, aTaskResult, anInventory } from '../helpers/builders.ts';

const add = (book: JobBook, id: string, over: Parameters<typeof aJobSpec>[0] = {}) => {
  const spec = aJobSpec(over);
  return book.add(id, spec, prepareJob(spec), 1000);
};
const failure = (code: string, message: string) => ({ status: 'failed' as const, error: { code, message } });
const PARSE = 'povray exited with code 1: File \'/scenes/shot.pov\' line 3: Parse Error: Expected \'object\', } found instead';

/** Leases the job's next task to host/slot and answers it with `over`; returns the outcome. */
function run(book: JobBook, job: Job, host: string, slot: number, at: number, over: Partial<TaskResult> = {}) {
  const a = book.lease(job, host, slot, at);
  assert.ok(a, `a task of ${job.id} for ${host}/${slot}`);
  return { a, out: book.result(aTaskResult({ jobId: job.id, taskIndex: a.taskIndex, attempt: a.attempt, host, slot, ...over }), at + 1) };
}

/** A registry's answer: these hosts match, each with one idle slot. */
const match = (...hosts: string[]): MatchBody => ({
  hosts: hosts.map((host) => ({ host, serverId: `s-${host}`, inventory: anInventory(), slots: [{ index: 0, state: 'idle' as const }], free: 1 })),
  closest: [],
  totalHosts: hosts.length,
});

test('job-errors - a scene error fails the whole job at once, with the renderer\'s own line; running tasks are stopped', () => {
  const book = new JobBook();
  const job = add(book, 'a', { frames: '1-6' });
  book.lease(job, 'h2', 0, 1); // frame 1 runs on h2 meanwhile
  const { out } = run(book, job, 'h1', 0, 1, failure('RB_SCENE_ERROR', 'File \'/scenes/shot.pov\' line 3: Parse Error: Expected \'object\''));
  assert.equal(out.kind, 'accepted');
  assert.equal(book.state(job), 'failed');
  const s = book.summary(job);
  assert.equal(s.error, 'RB_JOB_FAILED: its scene is broken (h1): RB_SCENE_ERROR: File \'/scenes/shot.pov\' line 3: Parse Error: Expected \'object\'');
  assert.equal(s.retryable, true);
  assert.deepEqual(s.counts, { total: 6, queued: 5, running: 0, done: 0, failed: 1 }, 'frames never rendered wait, queued, for a retry');
  assert.ok(out.kind === 'accepted' && out.stopped?.length === 1 && out.stopped[0]!.host === 'h2', 'the task running on h2 is to be killed');
  assert.equal(book.queue().length, 0, 'nothing of a failed job starts');
  assert.equal(book.lease(job, 'h3', 0, 2), undefined);
  assert.equal(book.isBadHost(job, 'h1'), false, 'a broken scene is not the host\'s fault');
  assert.equal(book.health.list(2).length, 0);
});

test('job-errors - the same renderer error from two hosts is the job\'s: it fails; different errors are the hosts\'', () => {
  const book = new JobBook();
  const job = add(book, 'a', { frames: '1-10' });
  run(book, job, 'h1', 0, 1, failure('RB_RENDER_FAILED', 'disk error on h1'));
  run(book, job, 'h2', 0, 1, failure('RB_RENDER_FAILED', 'GPU lost on h2'));
  run(book, job, 'h1', 0, 2, failure('RB_RENDER_FAILED', PARSE));
  assert.equal(book.state(job), 'rendering', 'one host alone may be broken');
  run(book, job, 'h2', 0, 3, failure('RB_RENDER_FAILED', PARSE));
  assert.equal(book.state(job), 'failed');
  assert.equal(book.summary(job).error, `RB_JOB_FAILED: 2 hosts failed it the same way (h1, h2): RB_RENDER_FAILED: ${PARSE}`);
});

test('job-errors - broken scenes of three jobs make no host sick: their failures were the scenes\'', () => {
  const book = new JobBook();
  for (const id of ['a', 'b', 'c']) {
    const job = add(book, id, { frames: '1-4' });
    run(book, job, 'h1', 0, 1, failure('RB_RENDER_FAILED', `${PARSE} (${id})`));
    run(book, job, 'h2', 0, 1, failure('RB_RENDER_FAILED', `${PARSE} (${id})`));
    assert.equal(book.state(job), 'failed');
  }
  const other = add(book, 'd', { frames: '1', maxTaskErrors: 3 });
  run(book, other, 'h3', 0, 2, failure('RB_SCENE_ERROR', 'Parse Error'));
  assert.deepEqual(book.health.list(3), [], 'h1 and h2 failed three jobs, each the scene\'s fault');
  assert.ok(book.lease(add(book, 'e', { frames: '1' }), 'h1', 0, 3), 'h1 still gets work');
  // h4 failed frames of two jobs (its own fault, maybe); the scene error of a third is not its
  for (const id of ['x', 'y']) run(book, add(book, id, { frames: '1-2' }), 'h4', 0, 4, failure('RB_RENDER_FAILED', `h4 trouble ${id}`));
  const z = add(book, 'z', { frames: '1-2' });
  run(book, z, 'h5', 0, 5, failure('RB_RENDER_FAILED', PARSE));
  const { out } = run(book, z, 'h4', 0, 5, failure('RB_RENDER_FAILED', PARSE));
  assert.equal(book.state(z), 'failed');
  assert.ok(out.kind === 'accepted' && out.sick === undefined);
  assert.equal(book.health.isSick('h4', 6), false);
});

test('job-errors - a job fails once its error budget (maxTaskErrors) is spent, naming the last error; a retry resumes it', () => {
  const book = new JobBook();
  const job = add(book, 'a', { frames: '1-20', maxTaskErrors: 4, maxHostFailures: 100 });
  for (let i = 1; i <= 3; i++) run(book, job, 'h1', 0, i, failure('RB_TIMEOUT', `task killed: time limit (${i})`));
  assert.equal(book.state(job), 'rendering');
  run(book, job, 'h1', 0, 4, failure('RB_TIMEOUT', 'task killed: time limit (4)'));
  assert.equal(book.state(job), 'failed');
  assert.equal(book.summary(job).error, 'RB_JOB_FAILED: 4 failed attempts spent its error budget (maxTaskErrors 4); the last: RB_TIMEOUT: task killed: time limit (4)');
  assert.equal(retryWouldChange(book, job), true);
  const retried = book.retry(job);
  assert.deepEqual(retried.map((t) => t.frames), [[1], [2]], 'frame 1 (its 3 attempts spent) and frame 2, whose failure ended the job');
  assert.equal(book.state(job), 'rendering');
  assert.equal(book.summary(job).error, undefined);
  assert.equal(book.summary(job).counts.queued, 20);
  assert.ok(book.lease(job, 'h1', 0, 5), 'it renders again, with a fresh budget');
  assert.equal(DEFAULT_MAX_TASK_ERRORS, 50);
});

test('job-errors - failures that are not the job\'s spend nothing: a missing program, a host that cannot see the files, a full disk', () => {
  const book = new JobBook();
  const job = add(book, 'a', { frames: '1', maxTaskErrors: 1, maxAttempts: 1 });
  run(book, job, 'h1', 0, 1, failure('RB_RENDERER_MISSING', '\'/nonexistent/x\' is not installed on this host (not found on PATH)'));
  run(book, job, 'h2', 0, 2, failure('RB_INPUT_NOT_FOUND', 'scene /scenes/shot.pov not found'));
  assert.equal(book.state(job), 'rendering');
  assert.equal(job.errors.count, 0);
  const { a } = run(book, job, 'h3', 0, 3);
  assert.equal(a.attempt, 3);
  assert.equal(book.state(job), 'done', 'the third host rendered it: neither failure used its one attempt');
});

test('job-errors - a command job whose program a host lacks: the host stops matching it, and the job waits naming the program and the hosts', () => {
  const book = new JobBook();
  const job = add(book, 'a', { frames: '1-4', renderer: 'command', command: '/nonexistent/x --frame {frame}', maxAttempts: 1 });
  const missing = failure('RB_RENDERER_MISSING', '\'/nonexistent/x\' is not installed on this host (not found on PATH)');
  run(book, job, 'h1', 0, 1, missing);
  run(book, job, 'h2', 0, 1, missing);
  assert.equal(book.matches(job, 'h1', anInventory()), false, 'h1 lacks it');
  assert.equal(book.summary(job).counts.queued, 4, 'both tasks back in the queue, no attempt used');
  const plan = planDispatch(book, [job], () => match('h1', 'h2'), 2);
  assert.equal(plan.byHost.size, 0, 'neither host is given the job again');
  const why = plan.waiting.get(job)!;
  assert.equal(why.kind, 'no-match');
  assert.deepEqual(why.closest, [{ host: 'h1', missing: ['program /nonexistent/x'] }, { host: 'h2', missing: ['program /nonexistent/x'] }]);
  assert.match(why.text, /^its program \/nonexistent\/x is missing on h1, h2 \(RB_RENDERER_MISSING: .*\): install it there .* then renderbus retry a$/);
  assert.equal(planDispatch(book, [job], () => match('h1', 'h3'), 2).byHost.get('h3')?.length, 1, 'a host that has not failed it takes it');
  book.forgetHost('h2'); // it restarted: it may have the program now
  assert.equal(book.matches(job, 'h2', anInventory()), true);
});

test('job-errors - a host that cannot see the files of a job others render goes sick; before any frame is done it only stops matching that job', () => {
  const book = new JobBook();
  const job = add(book, 'a', { frames: '1-4' });
  const blind = failure('RB_INPUT_NOT_FOUND', 'scene /scenes/shot.pov not found');
  let { out } = run(book, job, 'h1', 0, 1, blind);
  assert.ok(out.kind === 'accepted' && out.sick === undefined, 'nobody has rendered it: maybe the path is wrong');
  assert.equal(book.health.isSick('h1', 2), false);
  const why = planDispatch(book, [job], () => match('h1'), 2).waiting.get(job)!;
  assert.equal(why.kind, 'bad-hosts');
  assert.match(why.text, /^h1 cannot see its files \(RB_INPUT_NOT_FOUND: scene \/scenes\/shot.pov not found\): check the scene's path \(\/scenes\/shot.pov\) and the hosts' mounts, then renderbus retry a$/);
  run(book, job, 'h2', 0, 2); // h2 sees it fine
  ({ out } = run(book, job, 'h3', 0, 3, blind));
  assert.ok(out.kind === 'accepted' && out.sick?.host === 'h3', 'h3 cannot see what h2 rendered: its mount is broken');
  assert.equal(book.health.isSick('h3', 4), true);
  assert.equal(book.summary(job).counts.failed, 0);
});

test('job-errors - every free host kept away: the job waits saying which hosts, their last error, and to retry; retry forgives them', () => {
  const book = new JobBook();
  const job = add(book, 'a', { frames: '1-9', maxHostFailures: 1, maxAttempts: 5 });
  run(book, job, 'h1', 0, 1, failure('RB_RENDER_FAILED', 'h1 is out of fonts'));
  run(book, job, 'h2', 0, 1, failure('RB_RENDER_FAILED', 'h2 has no GPU'));
  const why = planDispatch(book, [job], () => match('h1', 'h2'), 2).waiting.get(job)!;
  assert.equal(why.kind, 'bad-hosts');
  assert.deepEqual(why.hosts, ['h1', 'h2']);
  assert.match(why.text, /kept away from it: h1, h2 \(last: RB_RENDER_FAILED: h1 is out of fonts\); fix them \(or the job\), then renderbus retry a/);
  assert.equal(book.summary(job).retryable, true);
  assert.equal(retryWouldChange(book, job), true, 'no frame failed, but hosts are kept away');
  assert.deepEqual(keptAwayHosts(book, job), ['h1', 'h2']);
  assert.deepEqual(book.retry(job), [], 'no frame to queue again');
  assert.deepEqual(keptAwayHosts(book, job), [], 'forgiven');
  assert.equal(planDispatch(book, [job], () => match('h1', 'h2'), 3).byHost.size, 2, 'both hosts get work again');
  assert.equal(retryWouldChange(book, job), false, 'now a retry would change nothing');
});

test('job-errors - replay rebuilds a failed job from the record of the failure that ended it, and a retry after it', () => {
  const book = new JobBook();
  const spec = aJobSpec({ frames: '1-3' });
  const at = 5_000;
  const task = (over: Partial<Extract<JournalRecord, { kind: 'task' }>>): JournalRecord => ({
    v: 1, kind: 'task', jobId: 'a', taskIndex: 0, status: 'failed', attempt: 1, host: 'h1', slot: 0, outputs: [], stats: { wallMs: 1, cpuMs: 1, peakRssKb: 1, bytesWritten: 0 }, at, ...over,
  });
  applyRecord(book, { v: 1, kind: 'submit', jobId: 'a', spec, at: 1000 }, 1);
  applyRecord(book, task({ taskIndex: 1, status: 'done' }), 2);
  const reason = 'RB_JOB_FAILED: its scene is broken (h1): RB_SCENE_ERROR: Parse Error';
  applyRecord(book, task({ error: 'RB_SCENE_ERROR: Parse Error', jobFailed: reason }), 3);
  book.finishReplay();
  const job = book.jobs.get('a')!;
  assert.equal(book.state(job), 'failed');
  assert.equal(book.summary(job).error, reason);
  assert.deepEqual(book.summary(job).counts, { total: 3, queued: 1, running: 0, done: 1, failed: 1 });
  assert.equal(job.finishedAt, at);

  const again = new JobBook();
  for (const [i, rec] of [{ v: 1, kind: 'submit', jobId: 'a', spec, at: 1000 }, task({ taskIndex: 1, status: 'done' }), task({ error: 'RB_SCENE_ERROR: Parse Error', jobFailed: reason }), { v: 1, kind: 'ctl', jobId: 'a', action: 'retry', at: at + 1 }].entries()) {
    applyRecord(again, rec as JournalRecord, i + 1);
  }
  again.finishReplay();
  const retried = again.jobs.get('a')!;
  assert.equal(again.state(retried), 'rendering');
  assert.equal(again.summary(retried).counts.queued, 2);
  assert.equal(again.queue()[0], retried);
});

test('job-errors - maxTaskErrors in a job file is checked like the other numbers', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rb-budget-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'shot.pov'), 'sphere { 0, 1 }\n');
  const build = (maxTaskErrors: unknown) => {
    writeFileSync(join(dir, 'shot.json'), JSON.stringify({ scene: 'shot.pov', frames: '1', maxTaskErrors }));
    return buildJob({ args: ['shot.json'], flags: {}, cwd: dir, defaults: { user: 'a', group: 'g', outputRoot: '/srv/out' }, jobId: 'jtest0001' });
  };
  assert.equal(build(7).spec.maxTaskErrors, 7);
  assert.throws(() => build(0), /\/maxTaskErrors: Expected integer to be greater or equal to 1/);
  assert.throws(() => build(2.5), /\/maxTaskErrors: Expected integer/);
});
