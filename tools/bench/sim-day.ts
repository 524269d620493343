import { mkdir, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import { call } from '../../actors/bus/index.ts';
import { startRegistry } from '../../actors/registry/index.ts';
import { startSimulatedFarm } from '../../actors/render-server/index.ts';
import { startScheduler } from '../../actors/scheduler/index.ts';
import { codecs, formatMoney, PROTOCOL_MAJOR as v, Role, subjects, type JobDetail, type JobSpec, type PackageInfo } from '../../protocol/index.ts';
import { silentLogger } from '../../sites/logger.ts';
import { serveQuoteAsker, serveQuotes } from '../../sites/quotes/index.ts';
import { billOf, type RateCard } from '../../sites/remote-jobs/bill.ts';
import { startFedSites, waitLinkUp, type FedSites } from '../../test/helpers/fed-sites.ts';
import { waitUntil } from '../../test/helpers/farm.ts';
import { autoMetGoal, DAY_CLASSES, DayPolicy, figuresOf, planDay, type DayJob, type JobOutcome, type PolicyFigures } from './day-plan.ts';

/*
 * `--only day`: a simulated day of work for a studio with two vendors (issue 16's benchmark).
 * Three real nats-servers on this machine linked by leaf nodes (test/helpers/fed-sites.ts), at
 * each a real registry, a real scheduler and simulated render hosts (real render servers whose
 * slots render by waiting), the real quote services on each site's link credential. The studio
 * has 4 slots; v1 8 slower slots, cheap; v2 8 faster slots, dearer. The same seeded stream of
 * jobs is run three times, each on fresh sites: every job `site: auto` with its budget, every job
 * here, every job at v1. Frame times and the day are compressed by `scale` (a wall second stands
 * for `scale` seconds of the day); the rate cards are multiplied by it, so quotes and bills are in
 * the day's money.
 *
 * The shortcut: once the studio's scheduler has placed a job at a vendor (state `outsourced`),
 * the bench submits the same job (frames, priority) to that vendor's scheduler as the vendor's
 * intake would, waits for it there, and bills it with the vendor's rate card (sites/remote-jobs/
 * bill.ts `billOf`, on the frames' measured times, as the vendor's returner does). The bundles
 * over the link, the vendor's intake and the returner are not run: simulated slots write no
 * frames to carry back, and three sites' link services would not fit 2 cores beside the farms.
 * A carried job counts done when the vendor's job is done: transfer times are taken as nil (the
 * `outsource` part measures them: seconds, against hours of a day's job).
 */
export interface DayBenchOptions {
  seed: number;
  jobs: number;
  /** A wall second stands for this many seconds of the day. */
  scale: number;
}

const POVRAY: PackageInfo = { name: 'povray', version: '3.7.0.10' };
const MIN = 60_000;
const HOUR = 3_600_000;

/** Each site's simulated hosts, in day time, and each vendor's rate card in the day's money. */
const SITES = [
  { name: 'studio', hosts: 1, slots: 4, frameDayMs: 5 * MIN },
  { name: 'v1', hosts: 2, slots: 4, frameDayMs: 8 * MIN, perCoreHourMinor: 100 },
  { name: 'v2', hosts: 2, slots: 4, frameDayMs: 4 * MIN, perCoreHourMinor: 300 },
] as const;
const CURRENCY = 'EUR';
/** The day's jobs arrive over its first 6 hours, 10 to 70 frames each. */
const ARRIVALS_DAY_MS = 6 * HOUR;
const FRAMES = { min: 10, max: 70 };

const log = silentLogger();

interface DaySite {
  artist: NatsConnection;
  scene: string;
  out: string;
}

/** One policy's day on fresh sites: the outcome of every job. */
async function runDay(policy: DayPolicy, plan: readonly DayJob[], scale: number): Promise<{ figures: PolicyFigures; wallS: number; placedBy: Record<string, number> }> {
  const stops: (() => Promise<unknown>)[] = [];
  const t0 = performance.now();
  try {
    const fed: FedSites = await startFedSites();
    stops.push(() => fed.stop());
    const rates = new Map<string, RateCard>();
    for (const s of SITES) {
      if (!('perCoreHourMinor' in s)) continue;
      // the card in wall time: a wall ms here is `scale` ms of the day
      const card: RateCard = { currency: CURRENCY, perCoreHourMinor: s.perCoreHourMinor * scale, perGbMinor: 0, minimumMinor: 0 };
      rates.set(s.name, card);
      await mkdir(join(fed.site(s.name).dir, 'fed'), { recursive: true });
      await writeFile(join(fed.site(s.name).dir, 'fed', 'rates.json'), JSON.stringify(card));
    }
    await Promise.all([waitLinkUp(fed.site('studio'), fed.site('v1')), waitLinkUp(fed.site('studio'), fed.site('v2'))]);
    const sites = new Map<string, DaySite>();
    await Promise.all(SITES.map(async (s) => {
      const fs = fed.site(s.name);
      const peers = s.name === 'studio' ? ['v1', 'v2'] : ['studio'];
      const [regNc, schedNc, hostsNc, linkNc, artist] = await Promise.all([Role.Registry, Role.Scheduler, Role.RenderServer, Role.SiteLink, Role.Artist].map((r) => fs.connectAs(r)));
      stops.push(...[regNc, schedNc, hostsNc, linkNc, artist].map((c) => () => c!.close()));
      const registry = await startRegistry({ nc: regNc!, site: s.name, log, announceMs: 500 });
      const scheduler = await startScheduler({ nc: schedNc!, site: s.name, log, peers, quoteTimeoutMs: 3_000 });
      const hosts = startSimulatedFarm({ nc: hostsNc!, site: s.name, log, hosts: s.hosts, slots: s.slots, frameMs: Math.round(s.frameDayMs / scale), jitter: 0.2, heartbeatMs: 1_000, spreadMs: 0, hostPrefix: `${s.name}-`, packages: [POVRAY] });
      stops.push(() => scheduler.stop(), () => hosts.stop({ abandon: true }), () => registry.stop());
      await hosts.ready;
      if (s.name === 'studio') {
        const asker = serveQuoteAsker({ site: s.name, nc: linkNc!, peers: () => peers, log });
        stops.push(async () => asker.stop());
      } else {
        const quotes = serveQuotes({ site: s.name, dataDir: fs.dir, nc: linkNc!, peers, log });
        stops.push(async () => quotes.stop());
      }
      const scene = join(fs.dir, 'scenes', 'shot.pov');
      await mkdir(join(fs.dir, 'scenes'), { recursive: true });
      await writeFile(scene, '#version 3.7; camera { location <0,0,-3> look_at 0 } sphere { 0, 1 pigment { rgb 1 } }\n');
      sites.set(s.name, { artist: artist!, scene, out: join(fs.dir, 'out') });
      await waitUntil(`${s.name}'s simulated hosts registered`, async () => {
        const b = await call(artist!, subjects.regList(s.name), codecs.listRequest, { v }, codecs.listReply, { timeoutMs: 1_000 }).catch(() => undefined);
        return b?.hosts.length === s.hosts;
      }, 20_000);
    }));
    const submit = async (site: string, spec: Omit<JobSpec, 'scene' | 'output'> & { name: string }): Promise<string> => {
      const s = sites.get(site)!;
      const r = await call(s.artist, subjects.schedSubmit(site, 'ann'), codecs.submitRequest, { v, spec: { ...spec, scene: s.scene, output: { dir: join(s.out, spec.name) } } }, codecs.submitReply, { timeoutMs: 10_000 });
      return r.jobId;
    };
    const jobAt = async (site: string, jobId: string): Promise<JobDetail> =>
      (await call(sites.get(site)!.artist, subjects.schedQuery(site), codecs.queryRequest, { v, what: 'job', jobId }, codecs.jobReply, { timeoutMs: 5_000 })).job;
    const finished = (site: string, jobId: string, everyMs: number) => waitUntil(`job ${jobId} done at ${site}`, async () => {
      const j = await jobAt(site, jobId).catch(() => undefined);
      if (j?.state === 'failed' || j?.state === 'cancelled') throw new Error(`job ${jobId} at ${site} ${j.state}: ${j.error ?? ''}`);
      return j?.state === 'done' ? j : undefined;
    }, 30 * 60_000, everyMs);
    // every site measures its frame time before the day (a quote uses it; 30 s a frame is assumed before)
    await Promise.all(SITES.map(async (s) => finished(s.name, await submit(s.name, { name: 'warm-up', frames: `1-${s.hosts * s.slots}` }), 100)));

    const placedBy: Record<string, number> = {};
    const dayStart = Date.now();
    const outcomes = await Promise.all(plan.map(async (job): Promise<JobOutcome> => {
      const wait = dayStart + job.atMs / scale - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const spec = { name: `day-${job.index}`, frames: `1-${job.frames}`, priority: job.priority };
      const arrivedAt = Date.now();
      const jobId = await submit('studio', {
        ...spec,
        ...(policy === DayPolicy.Auto ? { site: 'auto', budget: formatMoney({ currency: CURRENCY, amountMinor: job.budgetMinor }) } : {}),
        ...(policy === DayPolicy.Vendor1 ? { site: 'v1' } : {}),
      });
      // placed (here, rendering) or sent out: looked at often, a wall second is `scale` seconds of the day
      const placed = await waitUntil(`job ${jobId} placed`, async () => {
        const j = await jobAt('studio', jobId).catch(() => undefined);
        if (j?.state === 'outsourced') return { at: j.outsourced!.site };
        if (j && (policy === DayPolicy.Here || (policy === DayPolicy.Auto && j.placement && j.placement.peer === undefined))) return { at: 'studio' };
        return undefined;
      }, 60_000, 50);
      placedBy[placed.at] = (placedBy[placed.at] ?? 0) + 1;
      if (placed.at === 'studio') {
        const done = await finished('studio', jobId, 250);
        return { index: job.index, site: 'studio', urgency: job.urgency, frames: job.frames, arrivedAt, doneAt: done.finishedAt!, budgetMinor: job.budgetMinor };
      }
      // the shortcut: the vendor's intake would submit it there; its returner would bill it
      const there = await submit(placed.at, spec);
      const done = await finished(placed.at, there, 250);
      const bill = billOf(done.frames, rates.get(placed.at)!);
      return { index: job.index, site: placed.at, urgency: job.urgency, frames: job.frames, arrivedAt, doneAt: done.finishedAt!, budgetMinor: job.budgetMinor, bill: { currency: bill.currency, amountMinor: bill.totals.amountMinor } };
    }));
    return { figures: figuresOf(policy, dayStart, scale, outcomes), wallS: (performance.now() - t0) / 1000, placedBy };
  } finally {
    for (const s of stops.reverse()) await s().catch(() => {});
  }
}

const hours = (ms: number) => (ms / HOUR).toFixed(1);

export async function dayBench(o: DayBenchOptions, machine: string): Promise<string> {
  const plan = planDay({ seed: o.seed, jobs: o.jobs, arrivalsMs: ARRIVALS_DAY_MS, minFrames: FRAMES.min, maxFrames: FRAMES.max });
  const loadBefore = loadavg()[0]!;
  const runs: Awaited<ReturnType<typeof runDay>>[] = [];
  for (const p of [DayPolicy.Auto, DayPolicy.Here, DayPolicy.Vendor1]) {
    runs.push(await runDay(p, plan, o.scale));
    console.error(`day: ${p} done in ${runs.at(-1)!.wallS.toFixed(0)} s`);
  }
  const figures = runs.map((r) => r.figures);
  const goal = autoMetGoal(figures);
  const frames = plan.reduce((n, j) => n + j.frames, 0);
  const budget = plan.reduce((n, j) => n + j.budgetMinor, 0);
  const byUrgency = (u: string) => plan.filter((j) => j.urgency === u).length;
  const slotsOf = (s: { hosts: number; slots: number }) => s.hosts * s.slots;
  const perFrame = (minor: number) => `${(minor / 100).toFixed(2)} ${CURRENCY}`;
  const vendorFrameMinor = (s: { frameDayMs: number; perCoreHourMinor: number }) => (s.frameDayMs * s.perCoreHourMinor) / HOUR;
  const label = { auto: '`site: auto`, with budgets', here: 'every job here', v1: 'every job at v1' } as const;
  const money = (c: Record<string, number>) => Object.keys(c).length === 0 ? '0' : Object.entries(c).map(([cur, m]) => formatMoney({ currency: cur, amountMinor: m })).join(', ');
  const sitesCol = (f: PolicyFigures) => ['studio', 'v1', 'v2'].map((s) => f.framesBySite[s] ?? 0).join(' / ');
  return [
    `## A simulated day: auto against always here and always vendor 1 (${machine})`,
    '',
    `\`npm run bench -- --only day\` (tools/bench/sim-day.ts): three real nats-servers on this machine linked by leaf nodes, at each site a real registry and scheduler and simulated render hosts (real render servers whose slots render by waiting), and the real quote services. The studio has ${slotsOf(SITES[0])} slots at ${SITES[0].frameDayMs / MIN} min a frame; v1 (slow, cheap) ${slotsOf(SITES[1])} slots at ${SITES[1].frameDayMs / MIN} min, ${formatMoney({ currency: CURRENCY, amountMinor: SITES[1].perCoreHourMinor })} a core-hour; v2 (fast, dearer) ${slotsOf(SITES[2])} slots at ${SITES[2].frameDayMs / MIN} min, ${formatMoney({ currency: CURRENCY, amountMinor: SITES[2].perCoreHourMinor })} a core-hour (frames ±20 %). Time is compressed ${o.scale}×: a wall second is ${o.scale / 60} min of the day (frames of ${SITES.map((s) => `${Math.round(s.frameDayMs / o.scale)} ms`).join(', ')}); the rate cards are multiplied by ${o.scale}, so quotes and bills are in the day's money.`,
    '',
    `The day (seed ${o.seed}): ${o.jobs} jobs arriving over ${hours(ARRIVALS_DAY_MS)} h, ${FRAMES.min}-${FRAMES.max} frames each (${frames} frames in all), ${DAY_CLASSES.map((c) => `${byUrgency(c.name)} ${c.name} (priority ${c.priority}, a budget of ${perFrame(c.budgetPerFrameMinor)} a frame)`).join(', ')}: ${formatMoney({ currency: CURRENCY, amountMinor: budget })} of budgets in all. v1 quotes ~${perFrame(vendorFrameMinor(SITES[1]))} a frame, v2 ~${perFrame(vendorFrameMinor(SITES[2]))}: each job's budget decides which vendors it may go to. The same day runs three times, each on fresh sites after one warm-up job per site (its frame time measured). Load average (1 min) ${loadBefore.toFixed(1)} at the start, ${loadavg()[0]!.toFixed(1)} at the end.`,
    '',
    `The shortcut: a job the studio's scheduler sent to a vendor (\`outsourced\`, by its quotes or its \`site\`) is submitted by the bench to that vendor's scheduler with the same frames and priority, as its intake would, and billed from the frames' measured times with the vendor's rate card (\`billOf\`, as its returner does). The bundles over the link, the vendor's intake and the returner are not run (simulated slots write no frames to carry); transfers count as nil (the \`outsource\` section measures them: seconds, against the hours of a day's job). A job is done when its frames are done where it rendered.`,
    '',
    '| policy | makespan (h) | mean turnaround (h) | rush jobs\' turnaround (h) | cost (vendors\' bills) | jobs over budget | frames studio / v1 / v2 | wall (s) |',
    '|---|---|---|---|---|---|---|---|',
    ...runs.map((r) => `| ${label[r.figures.policy]} | ${hours(r.figures.makespanMs)} | ${hours(r.figures.meanTurnaroundMs)} | ${hours(r.figures.rushTurnaroundMs)} | ${money(r.figures.cost)} | ${r.figures.overBudget} | ${sitesCol(r.figures)} | ${r.wallS.toFixed(0)} |`),
    '',
    `Did \`auto\` meet the goal (the shortest makespan within budget)? **${goal.met ? 'yes' : 'no'}**: ${goal.why}. Where \`auto\` placed the jobs: ${Object.entries(runs[0]!.placedBy).map(([s, n]) => `${s} ${n}`).join(', ')}.`,
    '',
  ].join('\n');
}
