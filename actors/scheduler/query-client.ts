import type { NatsConnection } from '@nats-io/transport-node';
import {
  FarmError, PROTOCOL_MAJOR, codecs, subjects,
  type ErrorCode, type JobBody, type JobDetail, type JobsBody, type JobSummary, type QueryRequest,
} from '../../protocol/index.ts';
import { call } from '../bus/index.ts';

type JobsRequest = Extract<QueryRequest, { what: 'jobs' }>;
type JobRequest = Extract<QueryRequest, { what: 'job' }>;
/** Asks the scheduler for one page of `jobs`, or of one job's view. */
export type JobsPageRequest = (req: JobsRequest) => Promise<JobsBody>;
export type JobPageRequest = (req: JobRequest) => Promise<JobBody>;

/** A whole job's view, and whether it was read back from the journal (it had left the scheduler's memory). */
export interface WholeJob {
  job: JobDetail;
  archived: boolean;
}

/**
 * Every job the scheduler lists, in its order, asking `sched.query` one page after another (5,000
 * jobs do not fit one reply). A job that moved in the order between two pages (it ended, say) may
 * come twice: the first is kept. `limit` caps the jobs per page (the scheduler caps them anyway at
 * what fits one message).
 */
export async function pageAllJobs(page: JobsPageRequest, limit?: number): Promise<JobSummary[]> {
  const jobs: JobSummary[] = [];
  const seen = new Set<string>();
  let after: string | undefined;
  for (;;) {
    const req: JobsRequest = { v: PROTOCOL_MAJOR, what: 'jobs' };
    if (after !== undefined) req.after = after;
    if (limit !== undefined) req.limit = limit;
    const body = await page(req);
    for (const j of body.jobs) {
      if (seen.has(j.jobId)) continue;
      seen.add(j.jobId);
      jobs.push(j);
    }
    // a scheduler older than paging sends no `more`: everything came in one reply
    if (body.more !== true) return jobs;
    if (body.next === undefined || body.next === after) throw new FarmError('RB_REMOTE_UNKNOWN', `the scheduler says more jobs follow, but gives no new cursor after '${after ?? 'the start'}'`);
    after = body.next;
  }
}

/** A job's whole view (every frame), asking for its frames one page after another. */
export async function pageWholeJob(page: JobPageRequest, jobId: string, limit?: number): Promise<WholeJob> {
  let whole: JobDetail | undefined;
  let archived = false;
  let afterFrame: number | undefined;
  for (;;) {
    const req: JobRequest = { v: PROTOCOL_MAJOR, what: 'job', jobId };
    if (afterFrame !== undefined) req.afterFrame = afterFrame;
    if (limit !== undefined) req.limit = limit;
    const body = await page(req);
    archived ||= body.archived === true;
    if (whole) whole.frames.push(...body.job.frames);
    else whole = { ...body.job, frames: [...body.job.frames] };
    if (body.more !== true) return { job: whole, archived };
    const last = body.job.frames.at(-1)?.frame;
    // a page that does not move the cursor would be asked for again and again
    if (last === undefined || (afterFrame !== undefined && last <= afterFrame)) {
      throw new FarmError('RB_REMOTE_UNKNOWN', `the scheduler says more frames of job ${jobId} follow, but its page ${last === undefined ? 'was empty' : `ended at frame ${last}, not after ${afterFrame}`}`);
    }
    afterFrame = last;
  }
}

/** Every job, through `call` (actors; the CLI goes through its own `ask`, for its errors). */
export function listAllJobs(nc: NatsConnection, site: string, o: { timeoutMs: number; unavailable?: ErrorCode }): Promise<JobSummary[]> {
  const subject = subjects.schedQuery(site);
  return pageAllJobs((req) => call(nc, subject, codecs.queryRequest, req, codecs.jobsReply, { timeoutMs: o.timeoutMs, unavailable: o.unavailable ?? 'RB_SCHEDULER_UNAVAILABLE' }));
}

/** One job's whole view, through `call`. */
export function wholeJob(nc: NatsConnection, site: string, jobId: string, o: { timeoutMs: number; unavailable?: ErrorCode }): Promise<WholeJob> {
  const subject = subjects.schedQuery(site);
  return pageWholeJob((req) => call(nc, subject, codecs.queryRequest, req, codecs.jobReply, { timeoutMs: o.timeoutMs, unavailable: o.unavailable ?? 'RB_SCHEDULER_UNAVAILABLE' }), jobId);
}
