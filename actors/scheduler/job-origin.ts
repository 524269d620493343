import { FarmError, originKey, peerPrincipal, PROTOCOL_MAJOR, type IntakeReply, type IntakeRequest, type JobOrigin, type JobSpec, type JobSummary, type SubmitRequest } from '../../protocol/index.ts';
import type { JobBook } from './job-book.ts';

type IntakeBody = Extract<IntakeReply, { ok: true }>['body'];

export interface IntakeDeps {
  book: () => JobBook;
  /** The scheduler's own submit, with the origin to journal and keep on the job. */
  submit(req: SubmitRequest, user: string, origin: JobOrigin): Promise<{ jobId: string; frames: number; tasks: number }>;
  /** The scheduler's own cancel, as an operator would (the peer owns the job, not a user of ours). */
  cancel(jobId: string): Promise<JobSummary>;
}

/**
 * The scheduler's side of `sched.intake.<peer>` (docs/federation.md, "Intake at the vendor"). The
 * peer is the subject's last token, which only the intake's credential may publish: a job is
 * submitted once per origin (a replayed bundle, or an intake that crashed between submitting and
 * recording, gets the job it made), and a peer can cancel only the jobs it sent.
 */
export function intakeRequests(d: IntakeDeps): (req: IntakeRequest, peer: string) => Promise<IntakeBody> {
  // two submits of one origin at once: the second waits for the first and finds its job
  const inFlight = new Map<string, Promise<IntakeBody>>();
  const existing = (origin: JobOrigin): IntakeBody | undefined => {
    const book = d.book();
    const jobId = book.origins.get(originKey(origin));
    if (jobId === undefined) return undefined;
    const job = book.jobs.get(jobId);
    if (job) return { jobId, frames: job.counts.total, tasks: job.prepared.taskCount, existing: true, state: book.state(job) };
    const archived = book.archived.get(jobId);
    return { jobId, frames: 0, tasks: 0, existing: true, state: archived?.state ?? 'unknown' };
  };
  const submit = async (spec: JobSpec, origin: JobOrigin): Promise<IntakeBody> => {
    const had = existing(origin);
    if (had) return had;
    // sending a peer's job on to a third site is chaining, which needs the studio's consent (notes §4.9)
    if (spec.site !== undefined) throw new FarmError('RB_BAD_JOB', `a job from ${origin.site} is rendered here, not sent on to ${spec.site}`);
    const user = peerPrincipal(origin.site);
    const counts = await d.submit({ v: PROTOCOL_MAJOR, spec: { ...spec, user } }, user, origin);
    const job = d.book().jobs.get(counts.jobId);
    return { ...counts, existing: false, state: job ? d.book().state(job) : 'queued' };
  };
  return async (req, peer) => {
    const origin: JobOrigin = { site: peer, job: req.originJob };
    const key = originKey(origin);
    if (req.kind === 'cancel') {
      const had = existing(origin);
      if (!had) throw new FarmError('RB_UNKNOWN_JOB', `no job here came from ${peer}'s job '${req.originJob}'`);
      if (!d.book().jobs.has(had.jobId)) return had; // ended long ago and left memory: nothing to cancel
      const summary = await d.cancel(had.jobId);
      return { ...had, state: summary.state };
    }
    const running = inFlight.get(key);
    if (running) return running.then((b) => ({ ...b, existing: true }));
    const p = submit(req.spec, origin).finally(() => inFlight.delete(key));
    inFlight.set(key, p);
    return p;
  };
}
