import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { resolve } from 'node:path';

const BARE_LOOP = resolve(import.meta.dirname, 'bare-loop.mjs');

/**
 * N runs of `true` through a bare Node loop with `concurrency` in flight: the platform's own
 * limit, measured in a plain process of its own (bare-loop.mjs: why). Runs/s, and the CPU ms a
 * run cost (the loop and its `true`s).
 */
export async function bareNodeLoop(n: number, concurrency: number): Promise<{ rate: number; cpuMsPerRun: number }> {
  const p = spawn(process.execPath, [BARE_LOOP, String(n), String(concurrency)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  const [code] = (await once(p, 'exit')) as [number | null];
  const [rate, cpuMsPerRun] = out.trim().split(' ').map(Number);
  if (code !== 0 || !(rate! > 0) || !(cpuMsPerRun! >= 0)) throw new Error(`bare-loop.mjs exited ${String(code)}: '${out.trim()}'`);
  return { rate: rate!, cpuMsPerRun: cpuMsPerRun! };
}

/** The same N commands through an external runner reading one line per job on stdin. */
export async function externalRunner(cmd: string, args: string[], n: number): Promise<number> {
  const t0 = performance.now();
  const p = spawn(cmd, args, { stdio: ['pipe', 'ignore', 'inherit'] });
  p.stdin.end(Array.from({ length: n }, (_, i) => `${i}\n`).join(''));
  const [code] = await once(p, 'exit');
  if (code !== 0) throw new Error(`${cmd} exited ${String(code)}`);
  return (n / (performance.now() - t0)) * 1000;
}
