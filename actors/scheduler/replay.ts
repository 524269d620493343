import { prepareJob, type CtlRequest, type JournalRecord } from '../../protocol/index.ts';
import type { Job, JobBook } from './job-book.ts';
import { applyPlacement, applyRemote, outsource, shouldOutsource } from './outsource.ts';
import { applySplit } from './split-jobs.ts';

/**
 * Applies a control action other than cancel (live, or replayed from the journal) to a job;
 * returns how many frames were queued again.
 */
export function applyControl(book: JobBook, job: Job, c: { action: CtlRequest['action']; priority?: number; frames?: number[] }): number {
  if (c.action === 'pause' || c.action === 'resume') book.setPaused(job, c.action === 'pause');
  else if (c.action === 'release') {
    book.release(job);
    // a held job that names a site goes out once released (there is no outsource record: see outsource.ts)
    if (shouldOutsource(book, job)) outsource(book, job);
  }
  else if (c.action === 'priority' && c.priority !== undefined) book.setPriority(job, c.priority);
  else if (c.action === 'retry') return book.retry(job, c.frames).reduce((n, t) => n + t.frames.length, 0);
  return 0;
}

/**
 * Applies one journal record to a book, as a restarted scheduler rebuilds its queue (and as a job
 * that left memory is read back). `seq` is the stream sequence of the message holding it. Returns
 * the job a retry queued frames of again (or made unfinished again), if any.
 */
export function applyRecord(book: JobBook, rec: JournalRecord, seq: number): Job | undefined {
  if (rec.kind === 'submit') {
    if (book.jobs.has(rec.jobId) || book.archived.has(rec.jobId)) return undefined;
    const job = book.add(rec.jobId, rec.spec, prepareJob(rec.spec), rec.at, rec.origin);
    job.journalSeq = seq;
    // the submit record says it all: a job naming a site, not held, went out as it was queued
    if (shouldOutsource(book, job)) outsource(book, job);
    return undefined;
  }
  if (rec.kind === 'limit') {
    book.setLimit(rec.name, rec.max, rec.per);
    return undefined;
  }
  if (rec.kind === 'share') {
    book.shares.set(rec.project, rec.weight);
    return undefined;
  }
  if (rec.kind === 'budget') {
    book.budgets.set(rec.project, rec.currency !== undefined && rec.amountMinor !== undefined ? { currency: rec.currency, amountMinor: rec.amountMinor } : undefined);
    return undefined;
  }
  const job = book.jobs.get(rec.jobId);
  if (!job) return undefined;
  if (rec.kind === 'cancel') book.cancel(job, rec.at);
  else if (rec.kind === 'remote') {
    if (job.remote?.peer === rec.peer) applyRemote(book, job, rec.update, rec.at);
  }
  // the site's policy sent it (outsource-policy.ts): as live, unless it ended first
  else if (rec.kind === 'outsource') {
    if (!job.remote && !book.isFinished(job)) outsource(book, job, { peer: rec.peer, why: rec.why });
  }
  // an `auto` job's placement (site-choice.ts): as live
  else if (rec.kind === 'place') {
    const p = { ...(rec.peer !== undefined ? { peer: rec.peer } : {}), text: rec.text, options: rec.options, ...(rec.parts ? { parts: rec.parts } : {}), at: rec.at };
    // a split job's parts are made again from the record, each once (split-jobs.ts)
    if (p.parts && job.placement === undefined) applySplit(book, job, p);
    else applyPlacement(book, job, p);
  }
  else if (rec.kind === 'ctl') {
    const wasFinished = book.isFinished(job);
    return applyControl(book, job, rec) > 0 || (wasFinished && !book.isFinished(job)) ? job : undefined;
  } else if (rec.retry) book.restoreRetry(job, rec.taskIndex, rec.attempt, rec.error, rec.stats, { host: rec.host, slot: rec.slot, startedAt: rec.startedAt, finishedAt: rec.at });
  else {
    book.restoreEnded(job, rec.taskIndex, rec.status, { outputs: rec.outputs, stats: rec.stats, finishedAt: rec.at, host: rec.host, slot: rec.slot, attempt: rec.attempt, ...(rec.error ? { error: rec.error } : {}), ...(rec.startedAt !== undefined ? { startedAt: rec.startedAt } : {}) }, rec.rechunk);
    // this failure failed the whole job (job-errors.ts): so it does again
    if (rec.jobFailed !== undefined && !book.isFinished(job)) book.failJob(job, rec.jobFailed, rec.at);
  }
  return undefined;
}

/** A job rebuilt on its own from its journal records (read back after it left memory); undefined when they hold no submit. */
export function rebuildJob(book: JobBook, jobId: string, records: readonly JournalRecord[], seq: number): Job | undefined {
  for (const rec of records) applyRecord(book, rec, seq);
  book.finishReplay();
  return book.jobs.get(jobId);
}
