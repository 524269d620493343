import { spawnSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { call } from '../../actors/bus/index.ts';
import { codecs, decodeAny, PROTOCOL_MAJOR, subjects } from '../../protocol/index.ts';
import { startBenchFarm } from './bench-farm.ts';
import { bareNodeLoop, externalRunner } from './baselines.ts';
import { waitUntil } from '../lib/wait-until.ts';
import { BENCH_PROCESS, costsBetween, type Costs } from './farm-costs.ts';
// @ts-expect-error: a plain .mjs module, shared with tools/bin/renderbus.js
import { buildIsCurrent } from '../build-state.mjs';

/*
 * N trivial frames (`true` through the command adapter) through the whole farm, the
 * registry, scheduler and one render server each a separate process, against a bare
 * Node spawn loop, GNU parallel and xargs at the same concurrency. Also the dispatch
 * latency: how long a slot stands idle between tasks (the render server's `waitMs`), and where the
 * time goes: CPU per task of each process, and the messages the nats-server carried per task.
 * Run from tools/bench/main.ts (`npm run bench`), which writes docs/benchmarks.md.
 */
export interface ThroughputOptions {
  /** Frames per run. */
  frames: number;
  /** One run per slot count. */
  slots: number[];
  /** Write a CPU profile of each actor process here (the profiler slows them: figures not for the docs). */
  cpuProfDir?: string;
}

interface FarmRun { fps: number; p50: number; p99: number; wallS: number; costs: Costs }

const ROOT = resolve(import.meta.dirname, '../..');

/** The actor processes must run the build (dist/), as a farm does, not the sources through tsx. */
function ensureBuild(): void {
  const r = spawnSync(process.execPath, [join(ROOT, 'tools/build.mjs')], { stdio: 'inherit' });
  if (r.status !== 0 || !(buildIsCurrent(ROOT) as boolean)) throw new Error('tools/build.mjs failed: the farm would run through tsx, and measure that');
}

/** One run of n frames on a farm of its own: one nats-server, or a cluster of `cluster`. */
export async function farmRun(n: number, slots: number, o: { cluster?: number; cpuProfDir?: string } = {}): Promise<FarmRun> {
  const farm = await startBenchFarm({ slots, ...o });
  const { nc, site, dir } = farm;
  try {
    // kept as they come and decoded after the run: the bench's own work competes with the farm's for the cores
    let started: Uint8Array[] = [];
    nc.subscribe(subjects.allFrameEvents(site, 'started'), { callback: (_e, m) => void started.push(m.data) });
    const scene = join(dir, 'none.scene');
    await writeFile(scene, '');
    // a one-frame job first: a starting scheduler dispatches nothing during its adoption window
    // (docs/architecture.md, "Re-adoption"), which is start-up, not throughput
    const warm = await farm.submit({ name: 'warm-up', scene, renderer: 'command', command: 'true', frames: '1', output: { dir: join(dir, 'warm') } });
    await waitUntil('the warm-up job', async () => {
      const b = await call(nc, subjects.schedQuery(site), codecs.queryRequest, { v: PROTOCOL_MAJOR, what: 'job', jobId: warm }, codecs.queryReply, { timeoutMs: 500 });
      return 'job' in b && b.job.state === 'done' ? true : undefined;
    });
    started = [];
    const before = await farm.costs();
    const t0 = performance.now();
    const jobId = await farm.submit({ name: 'bench', scene, renderer: 'command', command: 'true', frames: `1-${n}`, output: { dir: join(dir, 'out') } });
    const done = farm.done(jobId);
    await Promise.race([done, sleep(600_000)]);
    const wall = performance.now() - t0;
    const after = await farm.costs();
    await sleep(200); // the last started events
    const waits: number[] = [];
    for (const data of started) {
      const w = (decodeAny(data) as { waitMs?: number }).waitMs;
      if (typeof w === 'number') waits.push(w);
    }
    // the first task of each slot waited for the submit itself: count only slot-to-slot gaps
    const gaps = waits.slice(slots).sort((a, b) => a - b);
    const q = (p: number) => gaps[Math.min(gaps.length - 1, Math.floor(p * gaps.length))] ?? NaN;
    return { fps: (n / wall) * 1000, p50: q(0.5), p99: q(0.99), wallS: wall / 1000, costs: costsBetween(before, after, n) };
  } finally {
    await farm.stop();
  }
}

/** Runs the throughput benchmark; returns its docs/benchmarks.md section. */
export async function throughputBench(o: ThroughputOptions, machine: string): Promise<string> {
  const N = o.frames;
  const rows: string[] = [];
  const latency: string[] = [];
  const costs: { slots: number; costs: Costs; loopCpuMs: number }[] = [];
  ensureBuild();
  const loadAtStart = loadavg()[0]!;
  for (const s of o.slots) {
    const farm = await farmRun(N, s, o.cpuProfDir ? { cpuProfDir: o.cpuProfDir } : {});
    const { rate: node, cpuMsPerRun: loopCpuMs } = await bareNodeLoop(N, s);
    costs.push({ slots: s, costs: farm.costs, loopCpuMs });
    const parallel = await externalRunner('parallel', ['-j', String(s), 'true'], N).catch(() => NaN);
    const xargs = await externalRunner('xargs', ['-P', String(s), '-n', '1', 'true'], N);
    const r = (x: number) => (Number.isFinite(x) ? (farm.fps / x).toFixed(2) : 'n/a');
    const f = (x: number) => (Number.isFinite(x) ? x.toFixed(0) : 'n/a');
    rows.push(`| ${N} | ${s} | ${f(farm.fps)} | ${f(node)} | ${f(parallel)} | ${f(xargs)} | ${r(node)}× | ${r(parallel)}× | ${r(xargs)}× |`);
    latency.push(`| ${s} | ${farm.p50.toFixed(2)} | ${farm.p99.toFixed(2)} |`);
    console.log(`S=${s}: farm ${f(farm.fps)}/s (${farm.wallS.toFixed(1)} s), node loop ${f(node)}/s, parallel ${f(parallel)}/s, xargs ${f(xargs)}/s; dispatch p50 ${farm.p50.toFixed(2)} ms p99 ${farm.p99.toFixed(2)} ms`);
    console.log(`S=${s}: ${costLine(farm.costs)}; bare loop ${loopCpuMs.toFixed(2)} CPU ms a run`);
  }
  const loadAtEnd = loadavg()[0]!;
  const names = [...new Set(costs.flatMap((c) => [...c.costs.cpuMsPerTask.keys()]))];
  const cpuOf = (c: Costs, name: string) => c.cpuMsPerTask.get(name) ?? NaN;
  // the bench's own listener is not the farm's: it stands for a monitor, and is shown apart
  const farmCpu = (c: Costs) => [...c.cpuMsPerTask].filter(([n]) => n !== BENCH_PROCESS).reduce((a, [, ms]) => a + ms, 0);
  return [
    `## Farm throughput: ${machine}`,
    '',
    `\`npm run bench\`: ${N} frames of \`true\` through the command adapter; registry, scheduler and one render server as separate processes (the build in dist/, as \`renderbus\` runs it) with a nats-server on loopback. Baselines run the same ${N} commands at the same concurrency; the bare Node loop in a plain \`node\` process of its own (tools/bench/bare-loop.mjs: in the tsx-loaded bench process every spawn cost several times more, and sections before 2026-12-03 overstate the farm's ratio to it, 0.64–0.87×). Load average (1 min) ${loadAtStart.toFixed(1)} at the start, ${loadAtEnd.toFixed(1)} at the end: frames/s follow the machine's load, the CPU per task below much less.`,
    '',
    '| frames | slots | farm frames/s | bare Node loop | GNU parallel | xargs | farm ÷ Node | farm ÷ parallel | farm ÷ xargs |',
    '|---|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
    'Dispatch latency: how long a slot stands idle between the end of one task\'s delivery and the arrival of its next task (the render server\'s `waitMs`), in ms.',
    '',
    '| slots | p50 | p99 |',
    '|---|---|---|',
    ...latency,
    '',
    'Where the time goes: CPU ms per task (one frame) of each process over the timed job (/proc: user + system; the renderers are the `true` processes the fork server reaped; the bench is the operator listening to every `started` event, as a monitor would), against the bare loop\'s CPU per run (the loop and its `true`s). With the cores busy, frames/s can be at most cores × 1000 ÷ CPU ms a task, so "loop ÷ farm" is the ratio the farm could reach where the CPU is the limit. Messages per task: what the nats-server took in (published) and sent out (delivered), from its /varz counters.',
    '',
    `| slots | ${names.join(' | ')} | farm (without the bench) | bare loop | loop ÷ farm | messages in | messages out |`,
    `|---|${names.map(() => '---|').join('')}---|---|---|---|---|`,
    ...costs.map(({ slots, costs: c, loopCpuMs }) => `| ${slots} | ${names.map((n) => cpuOf(c, n).toFixed(2)).join(' | ')} | ${farmCpu(c).toFixed(2)} | ${loopCpuMs.toFixed(2)} | ${(loopCpuMs / farmCpu(c)).toFixed(2)}× | ${c.msgsPerTask?.in.toFixed(1) ?? 'n/a'} | ${c.msgsPerTask?.out.toFixed(1) ?? 'n/a'} |`),
    '',
  ].join('\n');
}

function costLine(c: Costs): string {
  const cpu = [...c.cpuMsPerTask].map(([name, ms]) => `${name} ${ms.toFixed(2)}`).join(', ');
  const msgs = c.msgsPerTask ? `; messages a task: ${c.msgsPerTask.in.toFixed(1)} in, ${c.msgsPerTask.out.toFixed(1)} out` : '';
  return `CPU ms a task: ${cpu}${msgs}`;
}
