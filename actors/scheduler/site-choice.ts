import {
  approxDuration, DEFAULT_FRAME_MS, estimateFinish, formatMoney,
  type LoadBody, type MatchBody, type Money, type PeerQuote, type PlaceOption, type PlacementSummary,
} from '../../protocol/index.ts';
import type { Job } from './job-book.ts';

/*
 * Where a `site: auto` job renders (docs/federation.md, "Choosing where to render: quotes"): here
 * or at the linked peer whose quote finishes first within the job's budget. Pure: the runtime
 * gathers the local load and the peers' quotes, journals the choice (a `place` record) and
 * applies it (outsource.ts applyPlacement).
 */

/** This site's side of the comparison: its matching slots and queue, with the same rule as a vendor's quote. */
export interface LocalSide {
  site: string;
  /** Matching slots in all, and idle now. */
  slots: number;
  freeSlots: number;
  framesAhead: number;
  frameMs: number;
  /** When no host here can render it: what the closest ones lack (or that the registry did not answer). */
  cannot?: string;
}

export interface ChoiceInput {
  frames: number;
  project: string;
  /** The job's own budget (JobSpec.budget, parsed). */
  budget?: Money;
  local: LocalSide;
  /** Every linked peer's answer: a quote, or why there is none. */
  answers: readonly PeerQuote[];
  /**
   * What is left of the project's budget, when project budgets are kept (another module's
   * business): a quote over it, or in another currency, is skipped like one over the job's.
   */
  projectLeft?: (project: string) => Money | undefined;
}

/**
 * Why an `auto` job stays here without asking anyone, or undefined when peers should be asked: no
 * linked peers; it waits for jobs of this site (`after`, `afterFrames`: a peer cannot see them);
 * it is a peer's job (it would go round).
 */
export function staysHere(job: Job, peers: readonly string[]): string | undefined {
  if (job.origin) return `it came from ${job.origin.site}, and a peer's job is never sent on`;
  if ((job.spec.after?.length ?? 0) > 0 || (job.spec.afterFrames?.length ?? 0) > 0) return 'it waits for jobs of this site (after, afterFrames), which no peer can see';
  if (peers.length === 0) return 'no linked peers';
  return undefined;
}

/**
 * Whether the site's overflow policy (`--outsource-overflow`) may weigh a job: one that names no
 * site, was not placed or sent yet, came from no peer, waits for no job of this site, is neither
 * held nor paused, and has not started here (a frame ran or runs: its frames would render twice).
 */
export function mayOverflow(job: Job): boolean {
  return job.spec.site === undefined && job.placement === undefined && job.remote === undefined && !job.origin
    && (job.spec.after?.length ?? 0) === 0 && (job.spec.afterFrames?.length ?? 0) === 0 && !job.held && !job.paused
    && job.startedAt === undefined && job.runningTasks === 0 && job.counts.done === 0 && job.counts.failed === 0;
}

/** Whether the farm here has room for a job now: a matching slot idle and nothing ahead of it. Then the overflow policy asks nobody. */
export function roomHere(local: LocalSide): boolean {
  return local.cannot === undefined && local.freeSlots > 0 && local.framesAhead === 0;
}

/**
 * The local side from the registry's answer (all matching hosts, busy or not) and the queue's load.
 * The frame time: measured here, else DEFAULT_FRAME_MS.
 */
export function localSide(site: string, match: MatchBody | undefined, load: LoadBody): LocalSide {
  const frameMs = load.frameMs ?? DEFAULT_FRAME_MS;
  if (!match) return { site, slots: 0, freeSlots: 0, framesAhead: load.framesAhead, frameMs, cannot: 'the registry did not answer' };
  const slots = match.hosts.reduce((n, h) => n + h.slots.length, 0);
  const freeSlots = match.hosts.reduce((n, h) => n + h.free, 0);
  const side: LocalSide = { site, slots, freeSlots, framesAhead: load.framesAhead, frameMs };
  if (slots === 0) {
    side.cannot = match.closest.length > 0
      ? `no host here can render it (${match.closest.slice(0, 2).map((c) => `${c.host} ${c.missing.join(', ')}`).join('; ')})`
      : 'no host here can render it (no hosts registered)';
  }
  return side;
}

/**
 * Why a price does not fit a budget, or undefined when it does. Nothing to pay fits any budget: a
 * vendor without a rate card quotes 0 in `XXX` (no currency), as its bills say.
 */
function overBudget(price: Money, budget: Money | undefined, what: string): string | undefined {
  if (!budget || price.amountMinor === 0) return undefined;
  if (price.currency !== budget.currency) return `priced in ${price.currency}, ${what} is in ${budget.currency}`;
  if (price.amountMinor > budget.amountMinor) return `${formatMoney(price)} is over ${what} of ${formatMoney(budget)}`;
  return undefined;
}

/**
 * The choice: each peer's quote and the local estimate weighed; a peer that cannot render it, did
 * not answer, or whose price is over the job's budget (or the project's, or in another currency)
 * is skipped with the reason kept. Of the rest and here, the earliest finish wins; on a tie here
 * wins (nothing crosses, nothing is paid), then the cheaper peer. When nothing can render it, it
 * stays here and waits as any job no host matches.
 */
export function chooseSite(i: ChoiceInput): Omit<PlacementSummary, 'at'> {
  const l = i.local;
  const localEst = estimateFinish({ frames: i.frames, slots: l.slots, framesAhead: l.framesAhead, frameMs: l.frameMs, missingBytes: 0 });
  const here: PlaceOption = { site: l.site, here: true, slots: l.slots, framesAhead: l.framesAhead };
  if (l.cannot !== undefined) here.skipped = l.cannot;
  else here.finishMs = localEst.finishMs;
  const options: PlaceOption[] = [];
  const left = i.projectLeft?.(i.project);
  for (const a of [...i.answers].sort((x, y) => x.peer.localeCompare(y.peer))) {
    const q = a.quote;
    if (!q) {
      options.push({ site: a.peer, skipped: a.error ?? 'no quote' });
      continue;
    }
    const o: PlaceOption = { site: a.peer, finishMs: q.finishMs, price: q.price, slots: q.slots, framesAhead: q.framesAhead, missingBytes: q.missingBytes };
    const skipped = !q.canRender || q.slots === 0
      ? `cannot render it${q.closest && q.closest.length > 0 ? ` (${q.closest.slice(0, 2).map((c) => `${c.host} ${c.missing.join(', ')}`).join('; ')})` : ''}`
      : left !== undefined && left.amountMinor <= 0
        ? `project ${i.project}'s budget is spent: no new job of it goes out`
        : overBudget(q.price, i.budget, 'the budget') ?? overBudget(q.price, left, `what is left of project ${i.project}'s budget`);
    if (skipped !== undefined) {
      delete o.finishMs;
      o.skipped = skipped;
    }
    options.push(o);
  }
  const candidates = [here, ...options].filter((o) => o.skipped === undefined);
  candidates.sort((a, b) => a.finishMs! - b.finishMs! || Number(b.here ?? false) - Number(a.here ?? false) || (a.price?.amountMinor ?? 0) - (b.price?.amountMinor ?? 0));
  const best = candidates[0];
  const all = [here, ...options];
  const describe = (o: PlaceOption) => {
    if (o.here) return o.skipped !== undefined ? `here: ${o.skipped}` : `here: ${approxDuration(o.finishMs!)} (${o.slots} slot${o.slots === 1 ? '' : 's'}, ${o.framesAhead} frames ahead)`;
    if (o.skipped !== undefined) return `${o.site}: ${o.skipped}`;
    return `${o.site}: ${approxDuration(o.finishMs!)}, ${formatMoney(o.price!)}`;
  };
  const rest = (chosen: PlaceOption | undefined) => all.filter((o) => o !== chosen).map(describe);
  if (!best) {
    const text = ['placed here: no site can render it now, so it waits here', ...rest(undefined)].join('; ');
    return { text, options: all };
  }
  const head = best.here
    ? `placed here: finishes in ${approxDuration(best.finishMs!)} (${best.slots} slot${best.slots === 1 ? '' : 's'}, ${best.framesAhead} frames ahead)`
    : `placed at ${best.site}: finishes in ${approxDuration(best.finishMs!)} for ${formatMoney(best.price!)}`;
  return { ...(best.here ? {} : { peer: best.site }), text: [head, ...rest(best)].join('; '), options: all };
}
