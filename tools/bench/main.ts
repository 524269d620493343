import { readFile, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { resolve } from 'node:path';
import { casBench } from './cas-put.ts';
import { fsyncBench } from './delivery-fsync.ts';
import { throughputBench } from './farm-throughput.ts';
import { clusterBench } from './cluster-throughput.ts';
import { memoryBench } from './scheduler-memory.ts';
import { recoveryBench } from './scheduler-recovery.ts';
import { scaleBench, type ScaleOptions } from './scheduler-scale.ts';
import { checksBench } from './slot-checks.ts';
import { bundleBench } from './bundle-io.ts';
import { transferBench } from './transfer.ts';
import { startBench } from './cli-start.ts';
import { outsourceBench } from './outsource-e2e.ts';
import { sandboxBench } from './sandbox-cost.ts';
import { cryptoBench } from './result-crypto.ts';
import { dayBench } from './sim-day.ts';
import { blenderBench } from './blender-makespan.ts';
import { failoverBench } from './failover.ts';

/*
 * npm run bench [-- --only throughput|cluster|recovery|memory|scale|fsync|checks|cas|bundles|transfer|start|outsource|sandbox|crypto|day|blender|failover] [--no-write]
 *   memory (tools/bench/scheduler-memory.ts): --memory-frames N (1000000) --memory-chunks 1,10 --memory-done N (1000000: every task)
 *   fsync (tools/bench/delivery-fsync.ts): --fsync-frames N (1000) --fsync-dir DIR (the OS temp dir)
 *   checks (tools/bench/slot-checks.ts): --check-tasks N (5000)
 *   cas (tools/bench/cas-put.ts): --cas-mb N (256) --cas-dir DIR (the OS temp dir)
 *   bundles (tools/bench/bundle-io.ts): --bundle-mb N (256) --bundle-dir DIR (/var/tmp; not /tmp, which bundle paths may not use) --bundle-runs N (3)
 *   transfer (tools/bench/transfer.ts): --transfer-mb N (256) --transfer-dir DIR (/var/tmp) --cut-s N (5); needs rsync
 *   throughput (tools/bench/farm-throughput.ts): --frames N (1000) --slots 2,4 --cpu-prof DIR (each actor process)
 *   cluster (tools/bench/cluster-throughput.ts): --frames N (1000) --slots S (2) --runs N (2): the
 *     throughput farm on a NATS cluster of three against one server; the cluster's start time
 *   start (tools/bench/cli-start.ts): --start-runs N (20)
 *   outsource (tools/bench/outsource-e2e.ts): --outsource-runs N (5) --outsource-dir DIR (/var/tmp)
 *   crypto (tools/bench/result-crypto.ts): --crypto-mb N (64) --crypto-runs N (3) --crypto-dir DIR (/var/tmp)
 *   sandbox (tools/bench/sandbox-cost.ts): --sandbox-runs N (300) --sandbox-files N (10000) --sandbox-frames N (10) --sandbox-dir DIR (/var/tmp)
 *   failover (tools/bench/failover.ts): --failover-kills N (10); ~1 min
 *   blender (tools/bench/blender-makespan.ts): --blender-frames N (24) --blender-slots N (2) --blender-chunk N (12)
 *     --blender-size WxH (320x240) --blender-samples N (16); needs blender and GNU parallel; ~3 min
 *   day (tools/bench/sim-day.ts): --day-seed N (16) --day-jobs N (16) --day-scale N (600: a wall second is 10 min of the day); ~4 min
 *   recovery (tools/bench/scheduler-recovery.ts): --jobs N (100) --job-frames N (1000)
 *     --done-frames N (1000; 0 skips the "with history" row) --runs N (3) --cpu-prof DIR
 *   scale (tools/bench/scheduler-scale.ts), only with --only scale (minutes, and GBs of memory):
 *     --hosts N (10000) --slots N (16) --frames N (1000000) --jobs N (1000) --chunk N (1, frames a task) --frame-ms N (8000)
 *     --seconds N (60, the sustained window) --jitter F (0.5: frames last frame-ms × (1 ± F))
 *     --sim-procs N (one per 2500 hosts) --heartbeat S (10) --submit-concurrency N (1)
 *     --sim-nice N (19) --cpu-prof DIR (the scheduler; with --cpu-prof-all every process);
 *     --small: 20 hosts × 4 slots, 20 jobs, 4000 frames of 100 ms, 3 s (flags still override it)
 * Each part run adds its section at the top of docs/benchmarks.md (newest first).
 * With --cpu-prof the schedulers are profiled (the profiler slows them), so nothing is written.
 */
const argv = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] ? argv[i + 1]! : dflt;
};
const PARTS = ['throughput', 'cluster', 'recovery', 'memory', 'scale', 'fsync', 'checks', 'cas', 'bundles', 'transfer', 'start', 'outsource', 'sandbox', 'crypto', 'day', 'blender', 'failover'] as const;
const only = opt('only', '');
if (only && !(PARTS as readonly string[]).includes(only)) {
  console.error(`--only takes one of: ${PARTS.join(', ')}`);
  process.exit(2);
}
// scale runs only when asked for: it takes minutes and several GB
const runs = (part: (typeof PARTS)[number]) => (!only && part !== 'scale') || only === part;
const cpuProfDir = opt('cpu-prof', '');
const write = !argv.includes('--no-write') && !cpuProfDir;

const machine = `${new Date().toISOString().slice(0, 10)}, ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version}`;
const sections: string[] = [];
if (runs('throughput')) {
  sections.push(await throughputBench({ frames: Number(opt('frames', '1000')), slots: opt('slots', '2,4').split(',').map(Number), ...(cpuProfDir ? { cpuProfDir: resolve(cpuProfDir) } : {}) }, machine));
}
if (runs('cluster')) {
  sections.push(await clusterBench({ frames: Number(opt('frames', '1000')), slots: Number(opt('slots', '2').split(',')[0]), runs: Number(opt('runs', '2')) }, machine));
}
if (runs('recovery')) {
  sections.push(await recoveryBench({
    jobs: Number(opt('jobs', '100')),
    framesPerJob: Number(opt('job-frames', '1000')),
    doneFramesPerJob: Number(opt('done-frames', '1000')),
    runs: Number(opt('runs', '3')),
    ...(cpuProfDir ? { cpuProfDir: resolve(cpuProfDir) } : {}),
  }, machine));
}
if (runs('memory')) {
  sections.push(memoryBench({
    frames: Number(opt('memory-frames', '1000000')),
    chunks: opt('memory-chunks', '1,10').split(',').map(Number),
    doneTasks: Number(opt('memory-done', '1000000')),
  }, machine));
}
if (runs('fsync')) {
  sections.push(await fsyncBench({ frames: Number(opt('fsync-frames', '1000')), ...(opt('fsync-dir', '') ? { dir: resolve(opt('fsync-dir', '')) } : {}) }, machine));
}
if (runs('checks')) {
  sections.push(await checksBench({ tasks: Number(opt('check-tasks', '5000')) }, machine));
}
if (runs('cas')) {
  sections.push(await casBench({ mb: Number(opt('cas-mb', '256')), ...(opt('cas-dir', '') ? { dir: resolve(opt('cas-dir', '')) } : {}) }, machine));
}
if (runs('bundles')) {
  sections.push(await bundleBench({ mb: Number(opt('bundle-mb', '256')), dir: resolve(opt('bundle-dir', '/var/tmp')), runs: Number(opt('bundle-runs', '3')) }, machine));
}
if (runs('transfer')) {
  sections.push(await transferBench({ mb: Number(opt('transfer-mb', '256')), dir: resolve(opt('transfer-dir', '/var/tmp')), cutS: Number(opt('cut-s', '5')) }, machine));
}
if (runs('start')) {
  sections.push(await startBench({ runs: Number(opt('start-runs', '20')) }, machine));
}
if (runs('outsource')) {
  sections.push(await outsourceBench({ runs: Number(opt('outsource-runs', '5')), dir: resolve(opt('outsource-dir', '/var/tmp')) }, machine));
}
if (runs('sandbox')) {
  sections.push(await sandboxBench({
    runs: Number(opt('sandbox-runs', '300')),
    files: Number(opt('sandbox-files', '10000')),
    frames: Number(opt('sandbox-frames', '10')),
    dir: resolve(opt('sandbox-dir', '/var/tmp')),
  }, machine));
}
if (runs('crypto')) {
  sections.push(await cryptoBench({ mb: Number(opt('crypto-mb', '64')), runs: Number(opt('crypto-runs', '3')), dir: resolve(opt('crypto-dir', '/var/tmp')) }, machine));
}
if (runs('day')) {
  const d = { seed: Number(opt('day-seed', '16')), jobs: Number(opt('day-jobs', '16')), scale: Number(opt('day-scale', '600')) };
  if (!Object.values(d).every((x) => Number.isInteger(x) && x >= 1)) {
    console.error(`day: --day-seed, --day-jobs and --day-scale must be whole numbers of at least 1 (${JSON.stringify(d)})`);
    process.exit(2);
  }
  sections.push(await dayBench(d, machine));
}
if (runs('blender')) {
  const b = { frames: Number(opt('blender-frames', '24')), slots: Number(opt('blender-slots', '2')), chunk: Number(opt('blender-chunk', '12')), size: opt('blender-size', '320x240'), samples: Number(opt('blender-samples', '16')) };
  if (![b.frames, b.slots, b.chunk, b.samples].every((n) => Number.isInteger(n) && n >= 1) || !/^[1-9]\d*x[1-9]\d*$/.test(b.size)) {
    console.error(`blender: --blender-frames, --blender-slots, --blender-chunk and --blender-samples must be whole numbers of at least 1, --blender-size WIDTHxHEIGHT (${JSON.stringify(b)})`);
    process.exit(2);
  }
  sections.push(await blenderBench(b, machine));
}
if (runs('failover')) {
  const kills = Number(opt('failover-kills', '10'));
  if (!Number.isInteger(kills) || kills < 1) {
    console.error(`failover: --failover-kills must be a whole number of at least 1 (${String(kills)})`);
    process.exit(2);
  }
  sections.push(await failoverBench({ kills }, machine));
}
if (runs('scale')) {
  const small = argv.includes('--small');
  const num = (name: string, dflt: number, smallDflt: number) => Number(opt(name, String(small ? smallDflt : dflt)));
  const o: ScaleOptions = {
    hosts: num('hosts', 10_000, 20),
    slots: num('slots', 16, 4),
    frames: num('frames', 1_000_000, 4_000),
    jobs: num('jobs', 1_000, 20),
    chunk: num('chunk', 1, 1),
    frameMs: num('frame-ms', 8_000, 100),
    seconds: num('seconds', 60, 3),
    jitter: Number(opt('jitter', '0.5')),
    heartbeatS: num('heartbeat', 10, 1),
    submitConcurrency: num('submit-concurrency', 1, 1),
    simNice: num('sim-nice', 19, 19),
    ...(opt('sim-procs', '') ? { simProcs: Number(opt('sim-procs', '')) } : {}),
    ...(cpuProfDir ? { cpuProfDir: resolve(cpuProfDir), cpuProfAll: argv.includes('--cpu-prof-all') } : {}),
  };
  const bad = Object.entries(o).filter(([k, v]) => typeof v === 'number' && (k === 'jitter' ? !(v >= 0 && v <= 1) : !(Number.isInteger(v) && v >= (k === 'frameMs' || k === 'simNice' ? 0 : 1))));
  if (bad.length > 0) {
    console.error(`scale: ${bad.map(([k, v]) => `${k} ${String(v)}`).join(', ')}: each must be a whole number (at least 1; frame-ms and sim-nice 0), jitter from 0 to 1`);
    process.exit(2);
  }
  if (o.frames < o.jobs) {
    console.error(`scale: --frames (${o.frames}) must be at least --jobs (${o.jobs})`);
    process.exit(2);
  }
  sections.push(await scaleBench(o, machine));
}

if (write) {
  const path = resolve(import.meta.dirname, '../../docs/benchmarks.md');
  const head = '# renderbus benchmarks\n\nEach section is one run of `npm run bench` (or of one part of it, `-- --only throughput|cluster|recovery|memory|scale|fsync|checks|cas|bundles|transfer|start|outsource|sandbox|crypto|day|blender|failover`); the newest is first.\n\n';
  const old = await readFile(path, 'utf8').catch(() => '');
  // whatever the head said, the sections start at the first '## '
  const at = old.indexOf('\n## ');
  await writeFile(path, head + sections.join('\n') + (at >= 0 ? '\n' + old.slice(at + 1) : ''));
  console.log(`wrote ${path}`);
} else {
  console.log(`\n${sections.join('\n')}`);
}
process.exit(0);
