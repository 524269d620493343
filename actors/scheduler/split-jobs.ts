import {
  approxDuration, formatFrames, parseFrames, prepareJob, RemoteState,
  type JobSpec, type JobSummary, type PeerQuote, type PlacementSummary, type SplitPartRef, type WaitReason,
} from '../../protocol/index.ts';
import type { Job, JobBook } from './job-book.ts';
import { outsource, type Outsourced } from './outsource.ts';
import type { LocalSide } from './site-choice.ts';
import { MIN_PART_FRAMES, planSplit, splitCandidates, type SplitPlan } from './split-plan.ts';

/*
 * Split jobs (docs/federation.md, "Split jobs"): a `split: true` job whose frames were divided
 * (split-plan.ts) becomes a parent of ordinary jobs, one per part: a local one (no site) and one
 * per peer (`site: <peer>`), each with its frame subset and the parent's output folder, so that
 * outsourcing, bundles, bills, cancel, retention and encryption work per part unchanged. The
 * parent renders nothing; its frames and state are its parts'. Pure: the runtime journals the
 * parts (the `place` record) before they are made, and a replay makes the same ones, each once.
 */

/** The parts of a plan: contiguous frame runs in the plan's order (here first), ids `<parent>-p1`, `-p2`… */
export function splitParts(parent: Job, plan: SplitPlan): SplitPartRef[] {
  const frames = parseFrames(parent.spec.frames);
  let at = 0;
  return plan.parts.map((p, i) => {
    const mine = frames.slice(at, at + p.frames);
    at += p.frames;
    return { jobId: `${parent.id}-p${i + 1}`, site: p.site, ...(p.here ? { here: true } : {}), frames: formatFrames(mine) };
  });
}

/** "split: frames 1-40 here (job P-p1), 41-100 at v2 (job P-p2)", for `job`, `why` and the monitor. */
export function splitText(parts: readonly SplitPartRef[]): string {
  return `split: ${parts.map((p, i) => `${i === 0 ? 'frames ' : ''}${p.frames} ${p.here ? 'here' : `at ${p.site}`} (job ${p.jobId})`).join(', ')}`;
}

/**
 * A `split: true` job's choice (site-choice.ts chooseSite) made a split when at least two sites can
 * each take a part of MIN_PART_FRAMES or more: then it names the parts, no single peer, and its
 * text starts with the split; otherwise the choice stands and its text says why it was not split.
 * A job without `split` is returned as it is.
 */
export function splitChoice(parent: Job, choice: Omit<PlacementSummary, 'at'>, local: LocalSide, answers: readonly PeerQuote[]): Omit<PlacementSummary, 'at'> {
  if (parent.spec.split !== true) return choice;
  const plan = planSplit(parent.counts.total, splitCandidates(local, answers, choice.options));
  const dropped = plan.dropped.map((d) => `${d.site} left out: ${d.why}`);
  if (plan.parts.length < 2) {
    const why = parent.counts.total < 2 * MIN_PART_FRAMES ? `${parent.counts.total} frames make no two parts of ${MIN_PART_FRAMES}` : 'fewer than two sites can take a part';
    return { ...choice, text: `${choice.text}; not split: ${[why, ...dropped].join(', ')}` };
  }
  const parts = splitParts(parent, plan);
  const finish = Math.max(...plan.parts.map((p) => p.finishMs));
  return { text: [`${splitText(parts)}; all finish in ${approxDuration(finish)}`, ...dropped, `weighed whole: ${choice.text}`].join('; '), options: choice.options, parts };
}

/**
 * A part's description: the parent's, with its frames, its site (none here), and the parent's
 * output folder; without what belongs to the parent alone: `split` (a part is not split again),
 * `budget` (weighed at the split), `hold` (the parent was released), `notify` (the parent tells
 * its client once, not once per part).
 */
export function partSpec(parent: Job, part: SplitPartRef): JobSpec {
  const { split: _split, budget: _budget, hold: _hold, notify: _notify, site: _site, ...rest } = parent.spec;
  return {
    ...rest,
    name: `${parent.name} (frames ${part.frames})`,
    frames: part.frames,
    ...(part.here ? {} : { site: part.site }),
    output: { ...parent.spec.output, dir: parent.prepared.outputDir },
  };
}

/**
 * Makes a placement's parts (live, or replayed from its `place` record): each an ordinary job,
 * the peers' ones outsourced as if they had named the site. A part already in the book is not
 * made twice. The parent leaves the queue. Returns the parts made now, and those outsourced.
 */
export function applySplit(book: JobBook, parent: Job, p: PlacementSummary): { made: Job[]; sent: Outsourced[] } {
  const refs = p.parts ?? [];
  parent.placement = p;
  parent.parts = refs.map((r) => r.jobId);
  parent.waiting = undefined;
  book.leaveQueue(parent);
  const made: Job[] = [];
  const sent: Outsourced[] = [];
  if (book.isFinished(parent)) return { made, sent }; // cancelled while its quotes were awaited
  for (const ref of refs) {
    if (book.jobs.has(ref.jobId) || book.archived.has(ref.jobId)) continue;
    const spec = partSpec(parent, ref);
    const part = book.add(ref.jobId, spec, prepareJob(spec), p.at);
    part.partOf = parent.id;
    made.push(part);
    if (!ref.here) sent.push(outsource(book, part));
  }
  return { made, sent };
}

/** The parent's parts still in memory, in their order. */
export function partsOf(book: JobBook, parent: Job): Job[] {
  return (parent.parts ?? []).map((id) => book.jobs.get(id)).filter((j): j is Job => j !== undefined);
}

/** What changed a parent when it was brought up to date with its parts. */
export type ParentChange = 'started' | 'done' | 'failed' | undefined;

/**
 * A parent from its parts: its frame counts are theirs; it started when one did; it is done when
 * every part is, and failed when one failed or was cancelled on its own (its reason kept). A
 * cancelled parent stays cancelled.
 */
export function syncParent(book: JobBook, parent: Job, at: number): ParentChange {
  const parts = partsOf(book, parent);
  if (parts.length === 0 || book.isFinished(parent)) return undefined;
  const c = parent.counts;
  c.done = 0;
  c.failed = 0;
  c.running = 0;
  for (const part of parts) {
    c.done += part.counts.done;
    c.failed += part.counts.failed;
    c.running += part.counts.running;
  }
  c.queued = Math.max(0, c.total - c.done - c.failed - c.running);
  const broken = parts.find((part) => ['failed', 'cancelled'].includes(book.state(part)));
  if (broken) {
    const state = book.state(broken);
    parent.errors.failure = `RB_JOB_FAILED: part ${broken.id} (frames ${broken.spec.frames} ${broken.remote ? `at ${broken.remote.peer}` : 'here'}) ${state}${broken.errors.failure ? `: ${broken.errors.failure}` : ''}`;
    return end(book, parent, at, true);
  }
  if (parts.length === (parent.parts ?? []).length && parts.every((part) => book.state(part) === 'done')) return end(book, parent, at, false);
  const started = parts.some((part) => part.startedAt !== undefined || part.remote?.state === RemoteState.Started || part.remote?.state === RemoteState.Progress);
  if (started && parent.startedAt === undefined) {
    parent.startedAt = Math.min(...parts.map((part) => part.startedAt ?? at));
    parent.machine.send({ type: 'job.started' });
    return 'started';
  }
  return undefined;
}

function end(book: JobBook, parent: Job, at: number, failed: boolean): ParentChange {
  parent.startedAt ??= at;
  parent.queuedTasks = 0;
  parent.machine.send({ type: 'job.ended', failed });
  book.finishIfEnded(parent, at);
  return failed ? 'failed' : 'done';
}

/** The parent's wait reason: its parts and how far each is. */
export function splitReason(book: JobBook, parent: Job): WaitReason {
  const parts = partsOf(book, parent).map((p) => `${p.id} ${p.counts.done}/${p.counts.total} ${p.remote ? `at ${p.remote.peer}` : 'here'} (${book.state(p)})`);
  return { kind: 'split', text: `split into ${parts.length} parts: ${parts.join(', ')}` };
}

/** The parent's parts as its summary shows them. */
export function partsSummary(book: JobBook, parent: Job): NonNullable<JobSummary['parts']> {
  const refs = parent.placement?.parts ?? [];
  return refs.map((r) => {
    const part = book.jobs.get(r.jobId);
    const counts = part ? { total: part.counts.total, queued: part.counts.queued, running: part.counts.running, done: part.counts.done, failed: part.counts.failed } : { total: 0, queued: 0, running: 0, done: 0, failed: 0 };
    const state = part ? book.state(part) : book.archived.get(r.jobId)?.state ?? 'done';
    return { jobId: r.jobId, site: r.site, ...(r.here ? { here: true } : {}), frames: r.frames, state, counts };
  });
}
