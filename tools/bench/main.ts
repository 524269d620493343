import { readFile, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { resolve } from 'node:path';
import { throughputBench } from './farm-throughput.ts';
import { recoveryBench } from './scheduler-recovery.ts';

/*
 * npm run bench [-- --only throughput|recovery] [--no-write]
 *   throughput (tools/bench/farm-throughput.ts): --frames N (1000) --slots 2,4
 *   recovery (tools/bench/scheduler-recovery.ts): --jobs N (100) --job-frames N (1000)
 *     --done-frames N (1000; 0 skips the "with history" row) --runs N (3) --cpu-prof DIR
 * Each part run adds its section at the top of docs/benchmarks.md (newest first).
 * With --cpu-prof the restarted schedulers are profiled (the profiler slows them), so nothing is written.
 */
const argv = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] ? argv[i + 1]! : dflt;
};
const PARTS = ['throughput', 'recovery'] as const;
const only = opt('only', '');
if (only && !(PARTS as readonly string[]).includes(only)) {
  console.error(`--only takes one of: ${PARTS.join(', ')}`);
  process.exit(2);
}
const runs = (part: (typeof PARTS)[number]) => !only || only === part;
const cpuProfDir = opt('cpu-prof', '');
const write = !argv.includes('--no-write') && !cpuProfDir;

const machine = `${new Date().toISOString().slice(0, 10)}, ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version}`;
const sections: string[] = [];
if (runs('throughput')) {
  sections.push(await throughputBench({ frames: Number(opt('frames', '1000')), slots: opt('slots', '2,4').split(',').map(Number) }, machine));
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

if (write) {
  const path = resolve(import.meta.dirname, '../../docs/benchmarks.md');
  const head = '# renderbus benchmarks\n\nEach section is one run of `npm run bench` (or of one part of it, `-- --only throughput|recovery`); the newest is first.\n\n';
  const old = await readFile(path, 'utf8').catch(() => '');
  // whatever the head said, the sections start at the first '## '
  const at = old.indexOf('\n## ');
  await writeFile(path, head + sections.join('\n') + (at >= 0 ? '\n' + old.slice(at + 1) : ''));
  console.log(`wrote ${path}`);
} else {
  console.log(`\n${sections.join('\n')}`);
}
process.exit(0);
