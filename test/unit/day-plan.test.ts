import { test } from 'node:test';
import assert from 'node:assert/strict';
import { autoMetGoal, DayPolicy, figuresOf, planDay, type JobOutcome, type PolicyFigures } from '../../tools/bench/day-plan.ts';
import { mulberry32 as seeded } from '../../tools/lib/prng.ts';

const PLAN = { seed: 16, jobs: 40, arrivalsMs: 6 * 3_600_000, minFrames: 10, maxFrames: 70 };

test('day-plan - the same seed draws the same day; another seed another', () => {
  assert.deepEqual(planDay(PLAN), planDay(PLAN));
  assert.notDeepEqual(planDay(PLAN), planDay({ ...PLAN, seed: 17 }));
  // mulberry32's first draws for seed 1 (the same on every machine)
  const r = seeded(1);
  assert.deepEqual([r(), r()].map((x) => x.toFixed(6)), ['0.627074', '0.002736']);
});

test('day-plan - jobs arrive in order within the window, sizes in range, each urgency with its priority and budget', () => {
  const day = planDay(PLAN);
  assert.equal(day.length, 40);
  day.forEach((j, i) => {
    assert.equal(j.index, i);
    if (i > 0) assert.ok(j.atMs >= day[i - 1]!.atMs, 'in arrival order');
    assert.ok(j.atMs >= 0 && j.atMs <= PLAN.arrivalsMs);
    assert.ok(Number.isInteger(j.frames) && j.frames >= 10 && j.frames <= 70);
    const perFrame = { rush: [20, 30], normal: [50, 15], low: [80, 10] }[j.urgency]!;
    assert.deepEqual([j.priority, j.budgetMinor], [perFrame[0], j.frames * perFrame[1]!], j.urgency);
  });
  assert.deepEqual(new Set(day.map((j) => j.urgency)), new Set(['rush', 'normal', 'low']));
  assert.throws(() => planDay({ ...PLAN, minFrames: 0 }), /frames: 0-70/);
});

test('day-plan - figures in day time: makespan to the last job, mean turnaround (and the rush jobs\'), bills per currency, frames per site, jobs over budget', () => {
  const out: JobOutcome[] = [
    { index: 0, site: 'studio', urgency: 'rush', frames: 10, arrivedAt: 1_000, doneAt: 3_000, budgetMinor: 100 },
    { index: 1, site: 'v1', urgency: 'normal', frames: 20, arrivedAt: 1_500, doneAt: 5_000, budgetMinor: 300, bill: { currency: 'EUR', amountMinor: 250 } },
    { index: 2, site: 'v2', urgency: 'rush', frames: 5, arrivedAt: 2_000, doneAt: 4_000, budgetMinor: 100, bill: { currency: 'EUR', amountMinor: 101 } },
  ];
  const f = figuresOf(DayPolicy.Auto, 1_000, 600, out);
  assert.equal(f.makespanMs, 4_000 * 600);
  assert.equal(f.meanTurnaroundMs, ((2_000 + 3_500 + 2_000) / 3) * 600);
  assert.equal(f.rushTurnaroundMs, 2_000 * 600);
  assert.deepEqual(f.cost, { EUR: 351 });
  assert.deepEqual(f.framesBySite, { studio: 10, v1: 20, v2: 5 });
  assert.equal(f.overBudget, 1);
});

test('day-plan - auto meets the goal only with the shortest makespan among the policies within budget', () => {
  const fig = (policy: DayPolicy, makespanMs: number, overBudget = 0): PolicyFigures => ({ policy, makespanMs, meanTurnaroundMs: 0, rushTurnaroundMs: 0, cost: {}, framesBySite: {}, overBudget });
  const met = autoMetGoal([fig(DayPolicy.Auto, 10), fig(DayPolicy.Here, 20), fig(DayPolicy.Vendor1, 5, 3)]);
  assert.equal(met.met, true, 'v1 is faster but over budget: no rival');
  assert.match(met.why, /within budget \(here\); not a rival: v1 \(3 job\(s\) over budget\)/);
  assert.deepEqual(autoMetGoal([fig(DayPolicy.Auto, 10), fig(DayPolicy.Here, 9), fig(DayPolicy.Vendor1, 5, 3)]), { met: false, why: 'here finished the day sooner within budget' });
  assert.equal(autoMetGoal([fig(DayPolicy.Auto, 1, 1), fig(DayPolicy.Here, 20)]).met, false, 'auto over budget');
});
