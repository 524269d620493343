import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { call } from '../../actors/bus/index.ts';
import { listAllHosts } from '../../actors/registry/index.ts';
import { codecs, decodeAny, PROTOCOL_MAJOR, Role, subjects } from '../../protocol/index.ts';
import { startBenchNats } from './bench-nats.ts';
import { bareNodeLoop, externalRunner } from './baselines.ts';
import { waitUntil } from '../lib/wait-until.ts';

/*
 * N trivial frames (`true` through the command adapter) through the whole farm, the
 * registry, scheduler and one render server each a separate process, against a bare
 * Node spawn loop, GNU parallel and xargs at the same concurrency. Also the dispatch
 * latency: how long a slot stands idle between tasks (the render server's `waitMs`).
 * Run from tools/bench/main.ts (`npm run bench`), which writes docs/benchmarks.md.
 */
const CLI = resolve(import.meta.dirname, '../bin/renderbus.js');
/** The operator the benchmark submits as. */
const USER = 'bench';

export interface ThroughputOptions {
  /** Frames per run. */
  frames: number;
  /** One run per slot count. */
  slots: number[];
}

interface FarmRun { fps: number; p50: number; p99: number; wallS: number }


async function farmRun(n: number, slots: number): Promise<FarmRun> {
  const dir = await mkdtemp(join(tmpdir(), 'rb-bench-'));
  const site = 'bench';
  const host = 'bench';
  // each actor with its own credential, the benchmark as an operator (it submits and follows events)
  const nats = await startBenchNats(dir, site, [
    { role: Role.Registry, name: Role.Registry },
    { role: Role.Scheduler, name: Role.Scheduler },
    { role: Role.RenderServer, name: host },
    { role: Role.Operator, name: USER },
  ]);
  const procs: ChildProcess[] = [];
  const actor = (creds: string, ...args: string[]) => {
    const p = spawn(process.execPath, [CLI, ...args, '--nats', nats.url, '--site', site, '--creds', creds], { stdio: 'ignore', env: { ...process.env, RENDERBUS_LOG: 'warn' } });
    procs.push(p);
  };
  const nc = await nats.connectAs(Role.Operator, USER);
  try {
    actor(nats.credsFile(Role.Registry), 'registry');
    actor(nats.credsFile(Role.Scheduler), 'scheduler');
    actor(nats.credsFile(Role.RenderServer, host), 'render-server', '--host', host, '--slots', String(slots));
    await waitUntil('the render server to register', async () => {
      const b = await listAllHosts(nc, site, { timeoutMs: 500 });
      return b.hosts.length === 1 ? true : undefined;
    });
    await waitUntil('the scheduler', async () => (await call(nc, subjects.schedQuery(site), codecs.queryRequest, { v: PROTOCOL_MAJOR, what: 'jobs' }, codecs.queryReply, { timeoutMs: 500 })) && true);
    const waits: number[] = [];
    nc.subscribe(subjects.allFrameEvents(site, 'started'), {
      callback: (_e, m) => {
        const w = (decodeAny(m.data) as { waitMs?: number }).waitMs;
        if (typeof w === 'number') waits.push(w);
      },
    });
    const scene = join(dir, 'none.scene');
    await writeFile(scene, '');
    // a one-frame job first: a starting scheduler dispatches nothing during its adoption window
    // (docs/architecture.md, "Re-adoption"), which is start-up, not throughput
    const warm = await call(nc, subjects.schedSubmit(site, USER), codecs.submitRequest, { v: PROTOCOL_MAJOR, spec: { name: 'warm-up', scene, renderer: 'command', command: 'true', frames: '1', output: { dir: join(dir, 'warm') } } }, codecs.submitReply);
    await waitUntil('the warm-up job', async () => {
      const b = await call(nc, subjects.schedQuery(site), codecs.queryRequest, { v: PROTOCOL_MAJOR, what: 'job', jobId: warm.jobId }, codecs.queryReply, { timeoutMs: 500 });
      return 'job' in b && b.job.state === 'done' ? true : undefined;
    });
    waits.length = 0;
    const t0 = performance.now();
    const { jobId } = await call(nc, subjects.schedSubmit(site, USER), codecs.submitRequest, { v: PROTOCOL_MAJOR, spec: { name: 'bench', scene, renderer: 'command', command: 'true', frames: `1-${n}`, output: { dir: join(dir, 'out') } } }, codecs.submitReply);
    const done = new Promise<void>((res) => nc.subscribe(subjects.jobEvent(site, jobId, 'done'), { max: 1, callback: () => res() }));
    await Promise.race([done, sleep(600_000)]);
    const wall = performance.now() - t0;
    await sleep(200); // the last started events
    // the first task of each slot waited for the submit itself: count only slot-to-slot gaps
    const gaps = waits.slice(slots).sort((a, b) => a - b);
    const q = (p: number) => gaps[Math.min(gaps.length - 1, Math.floor(p * gaps.length))] ?? NaN;
    return { fps: (n / wall) * 1000, p50: q(0.5), p99: q(0.99), wallS: wall / 1000 };
  } finally {
    for (const p of procs) p.kill('SIGTERM');
    await Promise.all(procs.map((p) => new Promise((r) => (p.exitCode !== null ? r(null) : p.once('exit', r)))));
    await nc.close();
    await nats.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/** Runs the throughput benchmark; returns its docs/benchmarks.md section. */
export async function throughputBench(o: ThroughputOptions, machine: string): Promise<string> {
  const N = o.frames;
  const rows: string[] = [];
  const latency: string[] = [];
  for (const s of o.slots) {
    const farm = await farmRun(N, s);
    const node = await bareNodeLoop(N, s);
    const parallel = await externalRunner('parallel', ['-j', String(s), 'true'], N).catch(() => NaN);
    const xargs = await externalRunner('xargs', ['-P', String(s), '-n', '1', 'true'], N);
    const r = (x: number) => (Number.isFinite(x) ? (farm.fps / x).toFixed(2) : 'n/a');
    const f = (x: number) => (Number.isFinite(x) ? x.toFixed(0) : 'n/a');
    rows.push(`| ${N} | ${s} | ${f(farm.fps)} | ${f(node)} | ${f(parallel)} | ${f(xargs)} | ${r(node)}× | ${r(parallel)}× | ${r(xargs)}× |`);
    latency.push(`| ${s} | ${farm.p50.toFixed(2)} | ${farm.p99.toFixed(2)} |`);
    console.log(`S=${s}: farm ${f(farm.fps)}/s (${farm.wallS.toFixed(1)} s), node loop ${f(node)}/s, parallel ${f(parallel)}/s, xargs ${f(xargs)}/s; dispatch p50 ${farm.p50.toFixed(2)} ms p99 ${farm.p99.toFixed(2)} ms`);
  }
  return [
    `## Farm throughput: ${machine}`,
    '',
    `\`npm run bench\`: ${N} frames of \`true\` through the command adapter; registry, scheduler and one render server as separate processes with a nats-server on loopback. Baselines run the same ${N} commands at the same concurrency; the bare Node loop in a plain \`node\` process of its own (tools/bench/bare-loop.mjs: in the tsx-loaded bench process every spawn cost several times more, and sections before 2026-12-03 overstate the farm's ratio to it, 0.64–0.87×).`,
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
  ].join('\n');
}
