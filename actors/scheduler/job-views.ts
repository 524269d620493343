import type { FrameRecord, JobSummary } from '../../protocol/index.ts';
import type { Job, JobBook } from './job-book.ts';
import { retryWouldChange } from './job-errors.ts';
import { outsourceSummary } from './outsource.ts';
import { partsOf, partsSummary } from './split-jobs.ts';
import { TaskState, type Task } from './task-table.ts';

/* What a job looks like from outside: its summary, its frames one by one, its failures. */

/** One job as `renderbus jobs` lists it. */
export function jobSummary(book: JobBook, job: Job): JobSummary {
  const c = job.counts;
  const s: JobSummary = {
    jobId: job.id,
    name: job.name,
    user: job.user,
    group: job.group,
    project: job.project,
    priority: job.prepared.priority,
    state: book.state(job),
    // the book counts every leased frame as running; those their slots hold in hand are shown apart
    counts: { total: c.total, queued: c.queued, running: Math.max(0, c.running - job.inHandFrames), done: c.done, failed: c.failed, ...(job.inHandFrames > 0 ? { inHand: job.inHandFrames } : {}) },
    submittedAt: job.submittedAt,
    outputDir: job.prepared.outputDir,
  };
  if (job.startedAt !== undefined) s.startedAt = job.startedAt;
  if (job.finishedAt !== undefined) s.finishedAt = job.finishedAt;
  const why = book.isFinished(job) ? undefined : book.whyWaiting(job);
  if (why) {
    s.waiting = why.text;
    s.why = why;
  }
  if (job.errors.failure !== undefined) s.error = job.errors.failure;
  if (job.remote) s.outsourced = outsourceSummary(job.remote);
  else if (retryWouldChange(book, job)) s.retryable = true; // an outsourced job is sent again, not retried
  const eta = jobEta(book, job);
  if (eta !== undefined) s.etaMs = eta;
  if (job.origin) s.origin = job.origin;
  if (job.placement) s.placement = job.placement;
  if (job.parts) s.parts = partsSummary(book, job);
  if (job.partOf !== undefined) s.partOf = job.partOf;
  return s;
}

/** The job's frames from after frame `after` on (all when undefined), ascending, each as its task has it. */
export function* frameRecords(job: Job, after?: number): Generator<FrameRecord> {
  if (job.remote) {
    yield* remoteFrameRecords(job, after);
    return;
  }
  let settled: Task | undefined; // a settled task read back once for all its frames
  for (const { frame, task } of job.tasks.framesFrom(after)) {
    let t = job.tasks.peek(task);
    if (!t && job.tasks.stateOf(task) === TaskState.Done) t = settled?.index === task ? settled : (settled = job.tasks.view(task));
    if (!t) {
      yield { frame, state: job.tasks.stateOf(task), taskIndex: task, attempt: 0 };
      continue;
    }
    const r: FrameRecord = { frame, state: t.state, taskIndex: t.index, attempt: t.attempt };
    if (t.host !== undefined) r.host = t.host;
    if (t.slot !== undefined) r.slot = t.slot;
    if (t.handedAt !== undefined) r.handedAt = t.handedAt;
    if (t.startedAt !== undefined) r.startedAt = t.startedAt;
    else if (t.state === TaskState.Running) r.inHand = true;
    if (t.finishedAt !== undefined) r.finishedAt = t.finishedAt;
    const out = t.outputs?.find((o) => o.frame === frame);
    if (out) r.output = out.path;
    if (t.error !== undefined) r.error = t.error;
    if (t.stats) r.stats = t.stats;
    if (t.attempts && t.attempts.length > 0) r.attempts = t.attempts.map((a) => ({ ...a }));
    yield r;
  }
}

/** A job's frames as the book shows them: a split job's are its parts' (contiguous runs of its frames, in order). */
export function* bookFrameRecords(book: JobBook, job: Job, after?: number): Generator<FrameRecord> {
  if (!job.parts) {
    yield* frameRecords(job, after);
    return;
  }
  for (const part of partsOf(book, job)) yield* frameRecords(part, after);
}

/** A job's failed frames; a split job's are its parts'. */
export function bookFailures(book: JobBook, job: Job): { frame: number; error: string }[] {
  return job.parts ? partsOf(book, job).flatMap((part) => jobFailures(part)) : jobFailures(job);
}

/** An outsourced job's frames: back (done, with their file), or as the job stands (queued at the vendor, failed, cancelled). */
function* remoteFrameRecords(job: Job, after?: number): Generator<FrameRecord> {
  const r = job.remote!;
  const state = job.machine.getSnapshot().value;
  const notBack = state === 'failed' ? TaskState.Failed : state === 'cancelled' ? TaskState.Cancelled : TaskState.Queued;
  for (const { frame, task } of job.tasks.framesFrom(after)) {
    const output = r.back.get(frame);
    yield output !== undefined
      ? { frame, state: TaskState.Done, taskIndex: task, attempt: 1, output, ...(r.heardAt !== undefined ? { finishedAt: r.heardAt } : {}) }
      : { frame, state: notBack, taskIndex: task, attempt: 0, ...(state === 'failed' && job.errors.failure ? { error: job.errors.failure } : {}) };
  }
}

/** The frames that failed for good, with their errors, in frame order. */
export function jobFailures(job: Job): { frame: number; error: string }[] {
  if (job.remote) return [...frameRecords(job)].filter((f) => f.state === TaskState.Failed).map((f) => ({ frame: f.frame, error: f.error ?? 'failed' }));
  const failed = [...job.tasks.touchedTasks()].filter((t) => t.state === TaskState.Failed).sort((a, b) => a.frames[0]! - b.frames[0]!);
  return failed.flatMap((t) => t.frames.map((frame) => ({ frame, error: t.error ?? 'failed' })));
}

/** Milliseconds left, from the measured task times and the tasks left over the slots running them (tasks in hand wait on a slot). */
function jobEta(book: JobBook, job: Job): number | undefined {
  if (job.timedTasks === 0 || book.isFinished(job)) return undefined;
  const perTask = job.timedMs / job.timedTasks;
  const left = job.queuedTasks + job.runningTasks;
  return Math.round((perTask * left) / Math.max(1, job.runningTasks - job.inHandTasks));
}

