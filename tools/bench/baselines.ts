import { spawn } from 'node:child_process';
import { once } from 'node:events';

/** N runs of `true` through a bare Node loop with `concurrency` in flight: the platform's own limit. */
export async function bareNodeLoop(n: number, concurrency: number): Promise<number> {
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
  return (n / (performance.now() - t0)) * 1000;
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
