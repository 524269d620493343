import {
  AUTO_SITE, FarmError, jobBundleId, RemoteState,
  type BillSummary, type PlacementSummary, type JobSpec, type OutsourceSummary, type RemoteCounts, type RemoteUpdate, type WaitReason,
} from '../../protocol/index.ts';
import type { Job, JobBook } from './job-book.ts';

/*
 * The studio's outsourced queue (docs/federation.md, "The studio's outsourced queue"): jobs whose
 * description names a linked site (`site`) never enter the local queue; they wait here for the
 * news the vendor sends back. Pure: the runtime journals each update before applying it, and a
 * replay applies the same updates through the same rules.
 */

/** One outsourced job's state at the studio. */
export interface Outsourced {
  /** The peer it was sent to. */
  peer: string;
  /** Its job bundle's id, derived from the job id: a replayed `outsourced` event writes nothing twice. */
  bundleId: string;
  state: RemoteState;
  remoteJob?: string;
  reason?: string;
  counts?: RemoteCounts;
  /** Frames back in the output folder: frame → file. */
  back: Map<number, string>;
  /** Bundles already applied (an update is applied once per bundle). */
  applied: Set<string>;
  bill?: BillSummary;
  /** Sample thumbnails back (early looks): frame → file in the job's `.rb-samples/`. */
  samples?: Map<number, string>;
  heardAt?: number;
  /** Sent by the site's policy (outsource-policy.ts), not by its description's `site`: why. */
  why?: string;
  /** A chained job: the sites beyond the peer it went through, as the peer's news said. */
  via?: string[];
}

/** What one remote update changed. */
export interface RemoteChange {
  /** False: that bundle was applied before; nothing changed. */
  applied: boolean;
  /** Frames that came back with this update (not back before). */
  newFrames: { frame: number; path: string }[];
  /** The job ended with this update. */
  ended?: 'done' | 'failed';
}

/** States after which the vendor says nothing more about the job's life (frames may still come). */
const TERMINAL: ReadonlySet<RemoteState> = new Set([RemoteState.Done, RemoteState.Failed, RemoteState.Rejected, RemoteState.Cancelled]);

/**
 * A job description that names a site is checked against the site's linked peers at submit:
 * RB_BAD_JOB naming the peers. It may not wait for local jobs (`after`, `afterFrames`) either:
 * the vendor cannot see them.
 */
export function checkOutsource(spec: JobSpec, site: string, peers: readonly string[]): void {
  // `auto` is placed once quoted (site-choice.ts): with no peers, or waiting for local jobs, it stays here
  if (spec.site === undefined || spec.site === AUTO_SITE) return;
  const linked = peers.length === 0 ? 'this site has no linked peers' : `the linked peers are ${peers.join(', ')}`;
  if (spec.site === site) throw new FarmError('RB_BAD_JOB', `site: '${spec.site}' is this site itself; leave site out to render here (${linked})`);
  if (!peers.includes(spec.site)) throw new FarmError('RB_BAD_JOB', `site: '${spec.site}' is not a linked peer of ${site}: ${linked}`);
  for (const field of ['after', 'afterFrames'] as const) {
    if (spec[field] !== undefined) throw new FarmError('RB_BAD_JOB', `${field}: a job sent to ${spec.site} cannot wait for jobs of this farm (the vendor cannot see them); submit it once they are done`);
  }
}

/** Whether a job should go out now: it names a site, has not gone, is not held, and has not ended. */
export function shouldOutsource(book: JobBook, job: Job): boolean {
  return job.spec.site !== undefined && job.spec.site !== AUTO_SITE && job.remote === undefined && !job.held && !book.isFinished(job);
}

/**
 * Moves a job to the outsourced queue: to the site its description names, or to the peer the
 * site's policy chose (`byPolicy`, outsource-policy.ts). Its frames stay queued (counted, not
 * dispatched: the JobBook never dispatches an outsourced job) until the vendor's news moves them.
 */
export function outsource(book: JobBook, job: Job, byPolicy?: { peer: string; why: string }): Outsourced {
  const named = job.spec.site !== undefined && job.spec.site !== AUTO_SITE;
  const peer = named ? job.spec.site : byPolicy?.peer;
  if (peer === undefined) throw new FarmError('RB_BAD_ARGUMENT', `job ${job.id} names no site to send it to`);
  job.remote = { peer, bundleId: jobBundleId(job.id), state: RemoteState.Sent, back: new Map(), applied: new Set(), ...(!named && byPolicy ? { why: byPolicy.why } : {}) };
  job.waiting = undefined;
  job.machine.send({ type: 'job.outsource' });
  book.leaveQueue(job);
  return job.remote;
}

/** The reason a failed outsourced job failed, as its summary's `error` shows it. */
const remoteFailure = (peer: string, what: string) => `RB_REMOTE_FAILED: outsourced to ${peer}, ${what}`;

/**
 * Applies one update from the vendor (already checked to come from the job's own peer). Once per
 * bundle. A terminal state (done, failed, rejected, cancelled) sticks. Frames are recorded unless
 * the studio cancelled the job. The job ends when every frame is back (done), when the vendor
 * rejects, fails or cancels it (failed), or with a final result that lacks frames (failed).
 */
export function applyRemote(book: JobBook, job: Job, u: RemoteUpdate, at: number): RemoteChange {
  const r = job.remote;
  if (!r) throw new FarmError('RB_BAD_ARGUMENT', `job ${job.id} was not outsourced`);
  if (r.applied.has(u.bundleId)) return { applied: false, newFrames: [] };
  r.applied.add(u.bundleId);
  r.heardAt = Math.max(r.heardAt ?? 0, u.at);
  if (u.state !== undefined && !TERMINAL.has(r.state)) r.state = u.state;
  if (u.reason !== undefined) r.reason = u.reason;
  if (u.remoteJob !== undefined) r.remoteJob = u.remoteJob;
  if (u.counts) r.counts = u.counts;
  if (u.bill) {
    r.bill = u.bill;
    book.budgets.spend(job.project, u.bill); // once: the bundle is applied once (live, or on replay)
  }
  if (u.via && u.via.length > 0) r.via = u.via;
  const cancelled = book.state(job) === 'cancelled';
  const newFrames: RemoteChange['newFrames'] = [];
  if (!cancelled) {
    for (const s of u.samples ?? []) if (job.tasks.hasFrame(s.frame)) (r.samples ??= new Map()).set(s.frame, s.path);
    for (const o of u.outputs ?? []) {
      if (!job.tasks.hasFrame(o.frame) || r.back.get(o.frame) === o.path) continue;
      if (!r.back.has(o.frame)) newFrames.push(o);
      r.back.set(o.frame, o.path);
    }
  }
  if (book.isFinished(job)) return { applied: true, newFrames };
  recount(job);
  const total = job.counts.total;
  let failure: string | undefined;
  if (r.back.size >= total) return end(book, job, at, newFrames);
  const why = u.reason ? `: ${u.reason}` : '';
  if (u.state === RemoteState.Rejected) failure = remoteFailure(r.peer, `refused there${why}`);
  else if (u.state === RemoteState.Failed) failure = remoteFailure(r.peer, `failed${why}`);
  else if (u.state === RemoteState.Cancelled) failure = remoteFailure(r.peer, `cancelled there (not by us)${why}`);
  else if (u.final) failure = remoteFailure(r.peer, `its final result brought ${r.back.size} of ${total} frames back`);
  if (failure === undefined) return { applied: true, newFrames };
  return end(book, job, at, newFrames, failure);
}

/** The job's counts from what came back and what the vendor said runs. */
function recount(job: Job, failure = false): void {
  const r = job.remote!;
  const c = job.counts;
  c.done = r.back.size;
  c.failed = failure ? c.total - c.done : 0;
  c.running = failure ? 0 : Math.min(c.total - c.done, r.counts?.running ?? 0);
  c.queued = c.total - c.done - c.failed - c.running;
}

function end(book: JobBook, job: Job, at: number, newFrames: RemoteChange['newFrames'], failure?: string): RemoteChange {
  recount(job, failure !== undefined);
  if (failure !== undefined) job.errors.failure = failure;
  job.startedAt ??= at;
  job.machine.send({ type: 'job.ended', failed: failure !== undefined });
  book.finishIfEnded(job, at);
  return { applied: true, newFrames, ended: failure !== undefined ? 'failed' : 'done' };
}

/** The vendor started it (its first frames run there): the studio's job counts as started. */
export function remoteStarted(job: Job, at: number): boolean {
  const r = job.remote;
  if (!r || job.startedAt !== undefined) return false;
  if (r.state !== RemoteState.Started && r.state !== RemoteState.Progress && r.back.size === 0) return false;
  job.startedAt = at;
  return true;
}

/** The job's outsourced state as its summary shows it. */
export function outsourceSummary(r: Outsourced): OutsourceSummary {
  return {
    site: r.peer,
    bundleId: r.bundleId,
    state: r.state,
    back: r.back.size,
    ...(r.remoteJob !== undefined ? { remoteJob: r.remoteJob } : {}),
    ...(r.reason !== undefined ? { reason: r.reason } : {}),
    ...(r.counts ? { counts: r.counts } : {}),
    ...(r.bill ? { bill: r.bill } : {}),
    ...(r.samples ? { samples: [...r.samples].sort(([a], [b]) => a - b).map(([frame, path]) => ({ frame, path })) } : {}),
    ...(r.heardAt !== undefined ? { heardAt: r.heardAt } : {}),
    ...(r.why !== undefined ? { why: r.why } : {}),
    ...(r.via ? { via: r.via } : {}),
  };
}

/** "outsourced to v1: 3/8 frames back (rendering there)", for `jobs`, `job`, `why` and the monitor. */
export function outsourceReason(job: Job): WaitReason | undefined {
  const r = job.remote;
  if (!r) return undefined;
  const there: Record<RemoteState, string> = {
    sent: `its bundle waits in outgoing/${r.peer}/ or crosses the link; nothing heard yet`,
    accepted: `accepted there${r.remoteJob ? ` as ${r.remoteJob}` : ''}, queued`,
    rejected: 'refused there',
    started: 'rendering there',
    progress: 'rendering there',
    done: 'done there; frames on their way back',
    failed: 'failed there',
    cancelled: 'cancelled there',
  };
  const running = r.counts && r.counts.running > 0 ? `, ${r.counts.running} rendering` : '';
  // an `auto` job's why is its placement ("placed at v2: …"); otherwise the site's policy sent it
  const policy = r.why === undefined ? '' : job.spec.site === AUTO_SITE ? `; ${r.why}` : `; sent by the site's policy: ${r.why}`;
  return { kind: 'outsourced', text: `outsourced to ${[r.peer, ...(r.via ?? [])].join(' → ')}: ${r.back.size}/${job.counts.total} frames back${running} (${there[r.state]})${policy}` };
}

/**
 * Applies where an `auto` job renders (a `place` record, live or replayed): placed at a peer, it
 * is outsourced as if it had said `site: <peer>`; placed here, it joins the queue. A job that
 * ended meanwhile (cancelled while quotes were awaited) only keeps the placement for its views.
 */
export function applyPlacement(book: JobBook, job: Job, p: PlacementSummary): Outsourced | undefined {
  if (job.placement !== undefined) return undefined;
  if (book.isFinished(job) || job.remote) {
    job.placement = p;
    return undefined;
  }
  if (p.peer === undefined) {
    book.placed(job, p);
    return undefined;
  }
  job.placement = p;
  return outsource(book, job, { peer: p.peer, why: p.text });
}
