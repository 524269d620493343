import { estimateFinish, type Money, type PeerQuote, type PlaceOption } from '../../protocol/index.ts';
import type { LocalSide } from './site-choice.ts';

/*
 * How a `split: true` job's frames are divided between here and its peers (docs/federation.md,
 * "Split jobs"), so that every part finishes at about the same time. Pure: the runtime journals the
 * plan (the `place` record's parts) and split-jobs.ts makes the parts.
 */

/** A part smaller than this is not worth a bundle, a bill and a link's round trips: its candidate is dropped. */
export const MIN_PART_FRAMES = 5;

/** A site that may render part of the job. */
export interface SplitCandidate {
  site: string;
  here?: boolean;
  slots: number;
  frameMs: number;
  /** Before its first frame can start: the transfer and the frames queued ahead there. */
  delayMs: number;
  /** Its quote for the whole job (peers only). */
  price?: Money;
}

export interface SplitPart {
  site: string;
  here?: boolean;
  /** How many of the job's frames it renders. */
  frames: number;
  /** Its estimated finish, from now. */
  finishMs: number;
}

export interface SplitPlan {
  /** At least two parts, or none (the job is not split). */
  parts: SplitPart[];
  /** Candidates that would have had fewer than the minimum, with why. */
  dropped: { site: string; why: string }[];
}

/**
 * The candidates of a choice (site-choice.ts chooseSite): here when a host here can render it, and
 * every peer the choice did not skip (it can render it, and its quote for the whole job fits the
 * job's and the project's budgets; a part costs a share of it, so the parts together cost no more
 * than the dearest of them would for the whole job).
 */
export function splitCandidates(local: LocalSide, answers: readonly PeerQuote[], options: readonly PlaceOption[]): SplitCandidate[] {
  const out: SplitCandidate[] = [];
  if (local.cannot === undefined && local.slots > 0) {
    out.push({ site: local.site, here: true, slots: local.slots, frameMs: local.frameMs, delayMs: Math.ceil((local.framesAhead / local.slots) * local.frameMs) });
  }
  for (const o of options) {
    if (o.here || o.skipped !== undefined) continue;
    const q = answers.find((a) => a.peer === o.site)?.quote;
    if (!q || q.slots === 0) continue;
    out.push({ site: o.site, slots: q.slots, frameMs: q.frameMs, delayMs: q.transferMs + q.queueMs, price: q.price });
  }
  return out;
}

/**
 * Divides `total` frames so that every candidate finishes at about the same time T: candidate c
 * renders (T − its delay) × its rate (slots ÷ frame time) frames, and one whose delay is past T
 * gets none. The one that would get the fewest frames below `minPart` is dropped and the rest
 * planned again, until every part has at least `minPart` frames. Fewer than two parts: no split.
 */
export function planSplit(total: number, candidates: readonly SplitCandidate[], minPart = MIN_PART_FRAMES): SplitPlan {
  const dropped: SplitPlan['dropped'] = [];
  let live = candidates.filter((c) => c.slots > 0 && c.frameMs > 0);
  for (;;) {
    if (live.length < 2 || total < 2 * minPart) return { parts: [], dropped };
    const counts = share(total, live);
    let worst = -1;
    for (let i = 0; i < live.length; i++) if (counts[i]! < minPart && (worst < 0 || counts[i]! < counts[worst]!)) worst = i;
    if (worst < 0) {
      const parts = live.map((c, i) => ({
        site: c.site, ...(c.here ? { here: true } : {}), frames: counts[i]!,
        finishMs: c.delayMs + estimateFinish({ frames: counts[i]!, slots: c.slots, framesAhead: 0, frameMs: c.frameMs, missingBytes: 0 }).finishMs,
      }));
      return { parts, dropped };
    }
    const c = live[worst]!;
    dropped.push({ site: c.site, why: counts[worst] === 0 ? 'it could not start before the others finish' : `its share would be ${counts[worst]} frame${counts[worst] === 1 ? '' : 's'}, under the minimum of ${minPart}` });
    live = live.filter((_, i) => i !== worst);
  }
}

/** Frames per candidate for a common finish T (water-filling over the delays), rounded to whole frames that add up to `total`. */
function share(total: number, cs: readonly SplitCandidate[]): number[] {
  const rate = cs.map((c) => c.slots / c.frameMs);
  const order = cs.map((_, i) => i).sort((a, b) => cs[a]!.delayMs - cs[b]!.delayMs);
  let t = Infinity;
  let sumRate = 0;
  let sumRateDelay = 0;
  for (let k = 0; k < order.length; k++) {
    const i = order[k]!;
    sumRate += rate[i]!;
    sumRateDelay += rate[i]! * cs[i]!.delayMs;
    t = (total + sumRateDelay) / sumRate;
    const next = order[k + 1];
    if (next === undefined || cs[next]!.delayMs >= t) break;
  }
  const exact = cs.map((c, i) => Math.max(0, (t - c.delayMs) * rate[i]!));
  const counts = exact.map((x) => Math.floor(x));
  let left = total - counts.reduce((a, b) => a + b, 0);
  // the frames rounding left over go to the largest remainders (the earliest candidate on a tie)
  const byRemainder = exact.map((x, i) => i).filter((i) => exact[i]! > 0).sort((a, b) => (exact[b]! - counts[b]!) - (exact[a]! - counts[a]!) || cs[a]!.delayMs - cs[b]!.delayMs);
  for (let k = 0; left > 0 && byRemainder.length > 0; k = (k + 1) % byRemainder.length, left--) counts[byRemainder[k]!]! += 1;
  return counts;
}
