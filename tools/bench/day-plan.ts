/*
 * The pure parts of the simulated-day bench (sim-day.ts): the day's jobs drawn from a seeded
 * generator, and each policy's figures and the verdict from what happened. No I/O, no clock.
 */
import { mulberry32 } from '../lib/prng.ts';

/** A policy of the day: every job `site: auto` (with its budget), every job here, every job at v1. */
export const DayPolicy = { Auto: 'auto', Here: 'here', Vendor1: 'v1' } as const;
export type DayPolicy = (typeof DayPolicy)[keyof typeof DayPolicy];

/** A job's urgency: its priority (lower is more urgent) and the budget it brings per frame, in minor units. */
export const DAY_CLASSES = [
  { name: 'rush', priority: 20, share: 0.25, budgetPerFrameMinor: 30 },
  { name: 'normal', priority: 50, share: 0.5, budgetPerFrameMinor: 15 },
  { name: 'low', priority: 80, share: 0.25, budgetPerFrameMinor: 10 },
] as const;

export interface DayPlanOptions {
  seed: number;
  jobs: number;
  /** Jobs arrive over the first `arrivalsMs` of the day (day time, not wall time). */
  arrivalsMs: number;
  minFrames: number;
  maxFrames: number;
}

export interface DayJob {
  index: number;
  /** When it arrives, day ms after the day's start. */
  atMs: number;
  frames: number;
  priority: number;
  urgency: string;
  budgetMinor: number;
}

/** The day's jobs, in the order they arrive: times uniform over the arrivals window, sizes uniform, urgencies by their shares. */
export function planDay(o: DayPlanOptions): DayJob[] {
  if (!(Number.isInteger(o.jobs) && o.jobs >= 1)) throw new Error(`jobs must be a whole number of at least 1, not ${o.jobs}`);
  if (!(Number.isInteger(o.minFrames) && o.minFrames >= 1 && o.maxFrames >= o.minFrames)) throw new Error(`frames: ${o.minFrames}-${o.maxFrames} is not a range of whole numbers from 1`);
  const rnd = mulberry32(o.seed);
  const jobs = Array.from({ length: o.jobs }, () => {
    const atMs = Math.round(rnd() * o.arrivalsMs);
    const frames = o.minFrames + Math.floor(rnd() * (o.maxFrames - o.minFrames + 1));
    const u = rnd();
    let acc = 0;
    const c = DAY_CLASSES.find((k) => (acc += k.share) > u) ?? DAY_CLASSES[DAY_CLASSES.length - 1]!;
    return { atMs, frames, priority: c.priority, urgency: c.name, budgetMinor: frames * c.budgetPerFrameMinor };
  });
  jobs.sort((a, b) => a.atMs - b.atMs);
  return jobs.map((j, index) => ({ index, ...j }));
}

/** What became of one job: where it rendered, when it arrived and was done (wall ms), and the vendor's bill. */
export interface JobOutcome {
  index: number;
  site: string;
  frames: number;
  /** DayJob.urgency. */
  urgency: string;
  arrivedAt: number;
  doneAt: number;
  budgetMinor: number;
  bill?: { currency: string; amountMinor: number };
}

export interface PolicyFigures {
  policy: DayPolicy;
  /** Day ms from the day's start to the last job done. */
  makespanMs: number;
  meanTurnaroundMs: number;
  /** The mean turnaround of the rush jobs alone (NaN when there were none). */
  rushTurnaroundMs: number;
  /** The vendors' bills summed, minor units per currency. */
  cost: Record<string, number>;
  framesBySite: Record<string, number>;
  /** Jobs whose bill is over their budget. */
  overBudget: number;
}

/** A policy's figures in day time: wall ms × scale. */
export function figuresOf(policy: DayPolicy, dayStart: number, scale: number, outcomes: readonly JobOutcome[]): PolicyFigures {
  const cost: Record<string, number> = {};
  const framesBySite: Record<string, number> = {};
  let overBudget = 0;
  for (const o of outcomes) {
    framesBySite[o.site] = (framesBySite[o.site] ?? 0) + o.frames;
    if (o.bill) {
      cost[o.bill.currency] = (cost[o.bill.currency] ?? 0) + o.bill.amountMinor;
      if (o.bill.amountMinor > o.budgetMinor) overBudget += 1;
    }
  }
  const last = outcomes.reduce((m, o) => Math.max(m, o.doneAt), dayStart);
  const mean = (of: readonly JobOutcome[]) => (of.length === 0 ? NaN : of.reduce((n, o) => n + (o.doneAt - o.arrivedAt), 0) / of.length);
  const rush = outcomes.filter((o) => o.urgency === 'rush');
  return { policy, makespanMs: (last - dayStart) * scale, meanTurnaroundMs: (outcomes.length === 0 ? 0 : mean(outcomes)) * scale, rushTurnaroundMs: mean(rush) * scale, cost, framesBySite, overBudget };
}

/**
 * Whether `auto` met the goal: the shortest makespan among the policies that kept every job
 * within its budget, and itself within budget. A policy over budget is no rival, however fast.
 */
export function autoMetGoal(all: readonly PolicyFigures[]): { met: boolean; why: string } {
  const auto = all.find((f) => f.policy === DayPolicy.Auto);
  if (!auto) return { met: false, why: 'auto did not run' };
  if (auto.overBudget > 0) return { met: false, why: `auto put ${auto.overBudget} job(s) over their budget` };
  const rivals = all.filter((f) => f !== auto && f.overBudget === 0);
  const faster = rivals.filter((f) => f.makespanMs < auto.makespanMs);
  if (faster.length > 0) return { met: false, why: `${faster.map((f) => f.policy).join(', ')} finished the day sooner within budget` };
  const over = all.filter((f) => f !== auto && f.overBudget > 0).map((f) => `${f.policy} (${f.overBudget} job(s) over budget)`);
  return { met: true, why: `shortest makespan of the policies within budget${rivals.length > 0 ? ` (${rivals.map((f) => f.policy).join(', ')})` : ''}${over.length > 0 ? `; not a rival: ${over.join(', ')}` : ''}` };
}
