import { FarmError, type FrameRecord, type JobBody, type JobsBody, type JobSummary } from '../../protocol/index.ts';
import type { Job, JobBook } from './job-book.ts';

/** What one page may hold: `budget` bytes in all, `fixed` of them for the reply around the list, `sizeOf` an entry's bytes. */
export interface PageBudget<T> {
  budget: number;
  fixed: number;
  sizeOf: (entry: T) => number;
  limit?: number;
}

/**
 * Where a job stands in `jobs`' order (active jobs in queue order, then ended ones, newest
 * first) as a cursor: `a<priority>.<seq>` or `e<seq>`. The next page lists the jobs after it by
 * that order, whatever happened to the job itself (ended, or left memory) in between.
 */
export function jobCursor(book: JobBook, job: Job): string {
  return book.isFinished(job) ? `e${job.seq}` : `a${job.prepared.priority}.${job.seq}`;
}

type Rank = [group: number, priority: number, seq: number];

function rankOf(cursor: string): Rank {
  const m = /^(?:a(\d+)\.(\d+)|e(\d+))$/.exec(cursor);
  if (!m) throw new FarmError('RB_BAD_ARGUMENT', `'${cursor}' is not a jobs cursor (send the 'next' of the previous page as 'after')`);
  return m[3] !== undefined ? [1, 0, -Number(m[3])] : [0, Number(m[1]), Number(m[2])];
}

function compareRank(a: Rank, b: Rank): number {
  return a[0] - b[0] || a[1] - b[1] || a[2] - b[2];
}

/** Takes entries while they fit the page: at least one, or an error naming the entry too large for any page. */
function fit<T>(entries: Iterable<T>, o: PageBudget<T>, what: (e: T) => string): { taken: T[]; more: boolean } {
  const taken: T[] = [];
  let used = o.fixed;
  for (const e of entries) {
    if (taken.length >= (o.limit ?? Infinity)) return { taken, more: true };
    const size = o.sizeOf(e);
    if (used + size > o.budget) {
      if (taken.length === 0) throw new FarmError('RB_REMOTE_UNKNOWN', `${what(e)} is ${size} bytes, more than one reply carries (${o.budget - o.fixed})`);
      return { taken, more: true };
    }
    used += size;
    taken.push(e);
  }
  return { taken, more: false };
}

/** One page of `jobs`: the jobs after cursor `after` (from the first when undefined). */
export function jobsPage(book: JobBook, after: string | undefined, o: PageBudget<JobSummary>): JobsBody {
  const from = after === undefined ? undefined : rankOf(after);
  const jobs = book.list();
  const start = from === undefined ? 0 : jobs.findIndex((j) => compareRank(rankOf(jobCursor(book, j)), from) > 0);
  const rest = start < 0 ? [] : jobs.slice(start);
  const summaries = (function* () {
    for (const j of rest) yield book.summary(j);
  })();
  const { taken, more } = fit(summaries, o, (s) => `job ${s.jobId}'s summary`);
  if (!more) return { jobs: taken };
  return { jobs: taken, more: true, next: jobCursor(book, rest[taken.length - 1]!) };
}

/** One page of a job's view: its summary and spec, with its frames after frame `afterFrame` that fit. */
export function jobPage(book: JobBook, job: Job, afterFrame: number | undefined, o: Omit<PageBudget<FrameRecord>, 'fixed'> & { sizeOfHead: (head: JobBody['job']) => number }): JobBody {
  const head = { ...book.summary(job), spec: job.spec, frames: [] as FrameRecord[] };
  const fixed = o.sizeOfHead(head);
  const { taken, more } = fit(book.frameRecords(job, afterFrame), { ...o, fixed }, (r) => `frame ${r.frame}'s record`);
  head.frames = taken;
  return more ? { job: head, more: true } : { job: head };
}
