// The farm benchmark's baseline: N runs of `true`, C at a time, from a bare Node loop. A plain
// process of its own (node tools/bench/bare-loop.mjs N C), because in the tsx-loaded benchmark
// process every spawn costs several times more (tsx's hooks thread and a larger address space
// to fork), which made the farm look nearer the platform's limit than it is. Prints runs/s and
// the CPU ms a run cost (this process and the `true`s it reaped, from /proc: the load of the
// machine does not change it much, unlike runs/s).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';

/** CPU ms of this process and of its reaped children so far (USER_HZ = 100). */
const cpuMs = () => {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
  return (f[11] + f[12] + f[13] + f[14]) * 10;
};

const [n, concurrency] = process.argv.slice(2).map(Number);
if (!Number.isInteger(n) || !Number.isInteger(concurrency) || n < 1 || concurrency < 1) {
  process.stderr.write('usage: node tools/bench/bare-loop.mjs RUNS CONCURRENCY (whole numbers, at least 1)\n');
  process.exit(2);
}
const cpu0 = cpuMs();
const t0 = performance.now();
let started = 0;
const worker = async () => {
  while (started < n) {
    started += 1;
    const p = spawn('true', [], { stdio: 'ignore' });
    await once(p, 'exit');
  }
};
await Promise.all(Array.from({ length: concurrency }, worker));
const wall = performance.now() - t0;
process.stdout.write(`${(n / wall) * 1000} ${(cpuMs() - cpu0) / n}\n`);
