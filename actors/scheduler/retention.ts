import { FarmError } from '../../protocol/errors.ts';
import type { Job, JobBook } from './job-book.ts';

/** Which finished jobs the scheduler keeps in memory; the others are read back from the journal when asked for. */
export interface Retention {
  /** The latest finished jobs kept (by the time they finished). */
  keepJobs: number;
  /** Finished jobs kept at most this long after they finished (ms). */
  keepMs: number;
}

export const DEFAULT_RETENTION: Retention = { keepJobs: 1_000, keepMs: 24 * 3600 * 1000 };

/** The rule, defaults filled in; a value that is not a whole number (0 or more) is refused, naming it. */
export function retention(o: Partial<Retention> = {}): Retention {
  const r = { ...DEFAULT_RETENTION, ...Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) };
  for (const [k, v] of Object.entries(r)) {
    if (!(Number.isInteger(v) && v >= 0)) throw new FarmError('RB_BAD_ARGUMENT', `retention ${k} must be a whole number (0 or more), not ${String(v)}`);
  }
  return r;
}

/**
 * The finished jobs that leave memory now: those past the latest `keepJobs` finished, and those
 * finished more than `keepMs` ago. A job stays while an unfinished job waits on it (after,
 * afterFrames), and when its place in the journal is not known (it cannot be read back).
 */
export function jobsToEvict(book: JobBook, now: number, rule: Retention): Job[] {
  const finished: Job[] = [];
  const needed = new Set<Job>();
  for (const job of book.jobs.values()) {
    if (book.isFinished(job)) finished.push(job);
    else for (const dep of [...job.after, ...job.afterFrames]) needed.add(dep);
  }
  if (finished.length === 0) return [];
  finished.sort((a, b) => (b.finishedAt ?? 0) - (a.finishedAt ?? 0) || b.seq - a.seq);
  return finished.filter((job, rank) => (rank >= rule.keepJobs || now - (job.finishedAt ?? now) > rule.keepMs) && !needed.has(job) && job.journalSeq !== undefined && job.leased === 0);
}
