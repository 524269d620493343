import type { Money } from './budget.ts';

/*
 * How a site estimates when a job would be done there and what it would cost: one rule for the
 * vendor's quote (sites/quotes) and the studio's own estimate (actors/scheduler/site-choice.ts),
 * so the two are compared like with like. Pure.
 */

/** Ms per frame assumed when neither site has measured a frame of the renderer yet. */
export const DEFAULT_FRAME_MS = 30_000;

/**
 * Bytes per second assumed for the link when pricing a transfer: the cold bundle rate measured
 * on these machines (docs/benchmarks.md: 37–49 MB/s), rounded down.
 */
export const LINK_BYTES_PER_S = 30_000_000;

export interface EstimateInput {
  frames: number;
  /** Matching slots in all (0: it cannot render it). */
  slots: number;
  /** Frames queued or running at the job's priority or more urgent. */
  framesAhead: number;
  frameMs: number;
  /** Bytes of the job's files still to cross the link (0 here). */
  missingBytes: number;
}

export interface Estimate {
  transferMs: number;
  queueMs: number;
  renderMs: number;
  finishMs: number;
}

/**
 * transfer + queue + render: the missing bytes at LINK_BYTES_PER_S, the frames ahead spread over
 * the matching slots, then the job's own frames over the slots (a job never gets more slots than
 * frames). Infinity when no slot matches.
 */
export function estimateFinish(i: EstimateInput): Estimate {
  const transferMs = Math.ceil((i.missingBytes / LINK_BYTES_PER_S) * 1000);
  if (i.slots <= 0) return { transferMs, queueMs: Infinity, renderMs: Infinity, finishMs: Infinity };
  const queueMs = Math.ceil((i.framesAhead / i.slots) * i.frameMs);
  const renderMs = Math.ceil(Math.ceil(i.frames / Math.min(i.slots, i.frames)) * i.frameMs);
  return { transferMs, queueMs, renderMs, finishMs: transferMs + queueMs + renderMs };
}

/** A rate card's per-unit prices (sites/remote-jobs/bill.ts RateCard). */
export interface Rates {
  currency: string;
  perCoreHourMinor: number;
  perGbMinor: number;
  minimumMinor: number;
}

/**
 * The price of `frames` frames of `frameMs` each: their time as core-hours at the rate (one core
 * per frame: the bill charges measured CPU time, which is more for a renderer using several
 * cores), at least the minimum. Output bytes are not known before the render and are not priced.
 */
export function quotePrice(frames: number, frameMs: number, rate: Rates): Money {
  const amount = Math.round((frames * frameMs * rate.perCoreHourMinor) / 3_600_000);
  return { currency: rate.currency, amountMinor: Math.max(amount, rate.minimumMinor) };
}

/** "~40 s", "~2 min 10 s", "~3 h 5 min": an estimate for people. */
export function approxDuration(ms: number): string {
  if (!Number.isFinite(ms)) return 'never';
  const s = Math.max(1, Math.round(ms / 1000));
  if (s < 60) return `~${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `~${m} min${s % 60 ? ` ${s % 60} s` : ''}`;
  const h = Math.floor(m / 60);
  return `~${h} h${m % 60 ? ` ${m % 60} min` : ''}`;
}
