import { AUTO_SITE, type WaitReason } from '../../protocol/index.ts';
import type { Job, JobBook } from './job-book.ts';
import { programOf } from './job-errors.ts';
import { framesReady } from './rechunk.ts';
import { outsourceReason } from './outsource.ts';
import { splitReason } from './split-jobs.ts';
import { TaskState } from './task-table.ts';

/* Why a job starts nothing new, for people (`text`) and for tools (`kind` and details). */

/** Why an unfinished job starts nothing new, most fundamental first; undefined when nothing holds it back. */
export function whyWaiting(book: JobBook, job: Job): WaitReason | undefined {
  if (job.remote) return outsourceReason(job);
  if (job.parts) return splitReason(book, job);
  if (job.held) return { kind: 'held', text: `held: it starts once released (renderbus release ${job.id})` };
  if (job.paused) return { kind: 'paused', text: `paused: running frames finish, no new ones start (renderbus resume ${job.id})` };
  if (job.quoting !== undefined) return { kind: 'quotes', text: job.quoting };
  if (job.spec.site === AUTO_SITE && job.placement === undefined) return job.waiting?.kind === 'quotes' ? job.waiting : { kind: 'quotes', text: 'site: auto: waiting to ask the linked peers for quotes' };
  const dep = dependencyReason(book, job) ?? frameDependencyReason(book, job);
  if (dep) return dep;
  const limit = job.spec.limits && job.queuedTasks > 0 ? book.limitBlocking(job) : undefined;
  if (limit) {
    const text = limit.max === undefined
      ? `limit ${limit.name} is not set on this farm, so none of its tasks may run (renderbus limit ${limit.name} <max>)`
      : `limit ${limit.name} at ${limit.inUse}/${limit.max}${book.limits.per(limit.name) === 'host' ? ' hosts' : ''}`;
    return { kind: 'limit', limit, text };
  }
  return job.waiting;
}

/**
 * Fair share: why a job that got no slot waits, when its project already holds its share of
 * the busy slots (or more) while another project with work waits: slots that free go there first.
 */
export function shareReason(book: JobBook, job: Job): WaitReason | undefined {
  if (!book.shares.enabled) return undefined;
  const uses = book.shareUses();
  const mine = uses.find((u) => u.project === job.project);
  if (!mine || !uses.some((u) => u.project !== job.project && u.share > 0)) return undefined;
  const entitled = Math.round(mine.share * book.busySlots * 10) / 10;
  if (mine.running < entitled) return undefined;
  return {
    kind: 'share',
    share: { project: job.project, running: mine.running, entitled },
    text: `its project ${job.project} holds ${mine.running} slots, at or over its share (${entitled} of the ${book.busySlots} busy slots, weight ${mine.weight}); slots that free go first to projects under their share`,
  };
}

/** Why a job that waits for others does not start; undefined when it does not wait. */
export function dependencyReason(book: JobBook, job: Job): WaitReason | undefined {
  const dep = book.blockedBy(job);
  if (!dep) return undefined;
  const state = book.state(dep);
  const text = state === 'failed' || state === 'cancelled'
    ? `job ${dep.id} (${dep.name}), which it runs after, ${state === 'failed' ? 'failed' : 'was cancelled'}: retry or cancel one of them`
    : `waiting for job ${dep.id} (${dep.name}) to finish (${state})`;
  return { kind: 'after', job: dep.id, jobState: state, text };
}

/** Frame by frame: why none of its queued frames may start, when that is so. */
function frameDependencyReason(book: JobBook, job: Job): WaitReason | undefined {
  if (job.afterFrames.length === 0 || job.queuedTasks === 0) return undefined;
  for (let i = 0; i < job.tasks.length; i++) if (job.tasks.stateOf(i) === TaskState.Queued && framesReady(job, i)) return undefined;
  const ended = job.afterFrames.find((d) => ['failed', 'cancelled'].includes(book.state(d)));
  const dep = ended ?? job.afterFrames.find((d) => !book.isFinished(d)) ?? job.afterFrames[0]!;
  const state = book.state(dep);
  const text = ended
    ? `job ${dep.id} (${dep.name}), whose frames it waits for one by one, ${state === 'failed' ? 'failed' : 'was cancelled'}: retry or cancel one of them`
    : `waiting for frames of job ${dep.id} (${dep.name}) to be done, frame by frame (${state})`;
  return { kind: 'after', job: dep.id, jobState: state, text };
}

/** The slots running other jobs' tasks, by how their jobs rank against this one. */
export function busyBreakdown(book: JobBook, job: Job): NonNullable<WaitReason['busy']> {
  const b = { moreUrgent: 0, samePriority: 0, lessUrgent: 0 };
  for (const other of book.leasedJobs()) {
    if (other === job) continue;
    const d = other.prepared.priority - job.prepared.priority;
    if (d < 0) b.moreUrgent += other.leased;
    else if (d === 0 && other.seq < job.seq) b.samePriority += other.leased;
    else b.lessUrgent += other.leased;
  }
  return b;
}


/**
 * Why a job waits when every free host that matches it is kept away from it: hosts that lack its
 * program, cannot see its files, or failed too many of its frames. Says which, with what the hosts
 * said, and what to do. Undefined when some free matching host may take it.
 */
export function keptAwayReason(book: JobBook, job: Job, freeHosts: readonly string[]): WaitReason | undefined {
  if (freeHosts.length === 0 || !freeHosts.every((h) => book.keptAway(job, h))) return undefined;
  const retry = `renderbus retry ${job.id}`;
  const lacking = freeHosts.filter((h) => job.errors.cannot.get(h)?.code === 'RB_RENDERER_MISSING');
  if (lacking.length > 0) {
    const program = programOf(job.spec, job.prepared.renderer);
    const said = job.errors.cannot.get(lacking[0]!)!.error;
    return {
      kind: 'no-match',
      closest: lacking.slice(0, 3).map((host) => ({ host, missing: [`program ${program}`] })),
      text: `its program ${program} is missing on ${names(lacking)} (${said}): install it there (or fix the job's command), then ${retry}`,
    };
  }
  const blind = freeHosts.filter((h) => job.errors.cannot.get(h)?.code === 'RB_INPUT_NOT_FOUND');
  if (blind.length > 0) {
    const said = job.errors.cannot.get(blind[0]!)!.error;
    return {
      kind: 'bad-hosts',
      hosts: blind,
      text: `${names(blind)} cannot see its files (${said}): check the scene's path (${job.spec.scene}) and the hosts' mounts, then ${retry}`,
    };
  }
  const bad = freeHosts.filter((h) => book.isBadHost(job, h));
  const last = job.errors.lastByHost.get(bad[0]!);
  return {
    kind: 'bad-hosts',
    hosts: bad,
    text: `the free hosts that match failed too many of its frames and are kept away from it: ${names(bad)}${last ? ` (last: ${last})` : ''}; fix them (or the job), then ${retry}, or wait for other hosts`,
  };
}

/** Up to three host names, and how many more. */
function names(hosts: readonly string[]): string {
  return hosts.length <= 3 ? hosts.join(', ') : `${hosts.slice(0, 3).join(', ')} and ${hosts.length - 3} more`;
}
