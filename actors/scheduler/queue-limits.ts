import { FarmError } from '../../protocol/errors.ts';
import type { JobBook } from './job-book.ts';

/**
 * How much work the scheduler takes in: a submit that would pass one of these is refused, so a
 * flood of submits cannot take the farm down (docs/scheduling.md, "Queue limits").
 */
export interface QueueLimits {
  /** Frames not yet ended (queued or running) on the whole site. */
  siteFrames: number;
  /** Frames not yet ended of one user's jobs (the job's `user`). */
  userFrames: number;
  /** Frames of one job. */
  jobFrames: number;
}

export const DEFAULT_QUEUE_LIMITS: QueueLimits = { siteFrames: 5_000_000, userFrames: 1_000_000, jobFrames: 1_000_000 };

/**
 * 5000000 as "5,000,000". Not toLocaleString: its first call loads ICU's locale data, 17 ms of
 * every command's start when a help text is built at load (docs/benchmarks.md, "CLI start").
 */
export const formatCount = (v: number): string => String(v).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
const n = formatCount;

/** Frames not yet ended, on the site and by user (held and paused jobs count: their frames will run). */
export function queuedFrames(book: JobBook): { site: number; byUser: Map<string, number> } {
  let site = 0;
  const byUser = new Map<string, number>();
  for (const job of book.jobs.values()) {
    if (book.isFinished(job)) continue;
    const left = job.counts.queued + job.counts.running;
    site += left;
    byUser.set(job.user, (byUser.get(job.user) ?? 0) + left);
  }
  return { site, byUser };
}

/** Refuses a job of `frames` frames for `user` that one of the limits does not let in, naming the limit and what is queued. */
export function checkQueueLimits(book: JobBook, user: string, frames: number, limits: QueueLimits): void {
  if (frames > limits.jobFrames) {
    throw new FarmError('RB_QUEUE_FULL', `the job has ${n(frames)} frames; this farm takes at most ${n(limits.jobFrames)} frames in one job (scheduler option --max-job-frames): split it into several jobs`);
  }
  const q = queuedFrames(book);
  const mine = q.byUser.get(user) ?? 0;
  if (mine + frames > limits.userFrames) {
    throw new FarmError('RB_QUEUE_FULL', `user ${user} has ${n(mine)} frames queued or running; ${n(frames)} more would pass the limit of ${n(limits.userFrames)} frames per user (scheduler option --max-user-frames): wait for some to finish, or cancel some`);
  }
  if (q.site + frames > limits.siteFrames) {
    throw new FarmError('RB_QUEUE_FULL', `the site has ${n(q.site)} frames queued or running; ${n(frames)} more would pass its limit of ${n(limits.siteFrames)} frames (scheduler option --max-site-frames): try again once the queue is shorter`);
  }
}

/** The limits, defaults filled in; a value that is not a whole number of at least 1 is refused, naming it. */
export function queueLimits(o: Partial<QueueLimits> = {}): QueueLimits {
  const l = { ...DEFAULT_QUEUE_LIMITS, ...Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) };
  for (const [k, v] of Object.entries(l)) {
    if (!(Number.isInteger(v) && v >= 1)) throw new FarmError('RB_BAD_ARGUMENT', `queue limit ${k} must be a whole number of at least 1, not ${String(v)}`);
  }
  return l;
}
