import type { Job } from './job-book.ts';
import { TaskState, type Rechunk } from './task-table.ts';

/*
 * How a job's tasks are cut after submission: taskDuration re-splits the tasks not handed out
 * yet, and afterFrames lets a task start only once the frames it waits for are done. Pure
 * functions of one job (and the jobs it waits on).
 */

/**
 * taskDuration: from the frame time measured so far, the chunk that makes a task last about
 * the target; a re-split of the tasks not handed out yet when that chunk is 1.5 times off the
 * present one or more (either way) and the split would change their number.
 */
export function planRechunk(job: Job): Rechunk | undefined {
  if (job.timedTasks < 2 || job.timedFrames === 0) return undefined;
  const perFrameMs = job.timedMs / job.timedFrames;
  const ideal = Math.max(1, Math.min(10_000, Math.round((job.spec.taskDuration! * 1000) / Math.max(perFrameMs, 1))));
  if (ideal < job.chunkSize * 1.5 && ideal * 1.5 > job.chunkSize) return undefined;
  const { untouched, keep } = untouchedTail(job, job.cursor, []);
  let frames = 0;
  for (const i of untouched) frames += job.tasks.frameCountOf(i);
  if (untouched.length === 0 || Math.ceil(frames / ideal) === untouched.length) return undefined; // nothing would change
  return { from: job.cursor, keep, size: ideal };
}

/** Tasks at order positions `from` on never handed out (queued, no attempt, not handed back), and the others (`keep`). */
function untouchedTail(job: Job, from: number, keepGiven: readonly number[]): { untouched: number[]; keep: number[] } {
  const kept = new Set(keepGiven);
  const requeued = new Set(job.requeued);
  const untouched: number[] = [];
  const keep: number[] = [];
  const tasks = job.tasks;
  const length = job.order ? job.order.length : tasks.length;
  for (let p = from; p < length; p++) {
    const i = job.order ? job.order.at(p) : p;
    if (tasks.frameCountOf(i) === 0) continue; // split before
    if (kept.has(i) || tasks.stateOf(i) !== TaskState.Queued || (tasks.peek(i)?.attempt ?? 0) > 0 || requeued.has(i)) keep.push(i);
    else untouched.push(i);
  }
  return { untouched, keep };
}

/** Applies a re-split (live, or replayed from the journal): the untouched tasks give their frames to new tasks of `size` frames. */
export function applyRechunk(job: Job, plan: Rechunk): void {
  const { untouched } = untouchedTail(job, plan.from, plan.keep);
  const tasks = job.tasks;
  // their frames as runs of consecutive frames, cut into tasks of `size` (as chunkFrames cuts)
  const spans = untouched.map((i) => ({ first: tasks.firstFrameOf(i), count: tasks.frameCountOf(i) })).sort((a, b) => a.first - b.first);
  const runs: { first: number; count: number }[] = [];
  for (const sp of spans) {
    const last = runs.at(-1);
    if (last && last.first + last.count === sp.first) last.count += sp.count;
    else runs.push({ ...sp });
  }
  const chunks: { first: number; count: number }[] = [];
  for (const r of runs) for (let k = 0; k < r.count; k += plan.size) chunks.push({ first: r.first + k, count: Math.min(plan.size, r.count - k) });
  for (const index of tasks.resplit(untouched, chunks)) job.order?.push(index);
  job.queuedTasks += chunks.length - untouched.length;
  job.chunkSize = plan.size;
}

/** Whether every frame of the task may start: each job it runs after frame by frame has that frame done (or does not have it). */
export function framesReady(job: Job, index: number): boolean {
  if (job.afterFrames.length === 0) return true;
  const first = job.tasks.firstFrameOf(index);
  const n = job.tasks.frameCountOf(index);
  for (const dep of job.afterFrames) {
    for (let f = first; f < first + n; f++) {
      const t = dep.tasks.taskOfFrame(f);
      if (t !== undefined && dep.tasks.stateOf(t) !== TaskState.Done) return false;
    }
  }
  return true;
}

