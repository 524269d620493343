// The farm benchmark's baseline: N runs of `true`, C at a time, from a bare Node loop. A plain
// process of its own (node tools/bench/bare-loop.mjs N C), because in the tsx-loaded benchmark
// process every spawn costs several times more (tsx's hooks thread and a larger address space
// to fork), which made the farm look nearer the platform's limit than it is. Prints runs/s.
import { spawn } from 'node:child_process';
import { once } from 'node:events';

const [n, concurrency] = process.argv.slice(2).map(Number);
if (!Number.isInteger(n) || !Number.isInteger(concurrency) || n < 1 || concurrency < 1) {
  process.stderr.write('usage: node tools/bench/bare-loop.mjs RUNS CONCURRENCY (whole numbers, at least 1)\n');
  process.exit(2);
}
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
process.stdout.write(`${(n / (performance.now() - t0)) * 1000}\n`);
