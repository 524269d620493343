import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { checkProgram, checkScene, forgetChecks } from '../../actors/render-slot/input-check.ts';

/*
 * What the checks a slot makes before starting a renderer cost a task (issue 13): the scene
 * visible on this host (checkScene) and the program installed (checkProgram), cold (a scene and
 * a program not seen before) and warm (a job's next task: seen within the last second).
 * Run from tools/bench/main.ts (`npm run bench -- --only checks`).
 */
export interface ChecksOptions {
  tasks: number;
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

async function timeEach(n: number, one: (i: number) => Promise<void>): Promise<number[]> {
  const us: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await one(i);
    us.push((performance.now() - t) * 1000);
  }
  return us.sort((a, b) => a - b);
}

export async function checksBench(o: ChecksOptions, machine: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'rb-bench-checks-'));
  try {
    const scenes = join(dir, 'scenes');
    await mkdir(scenes);
    for (let i = 0; i < o.tasks; i++) await writeFile(join(scenes, `s${i}.pov`), '');
    const path = process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin';
    const rows: string[] = [];
    const row = (name: string, us: number[]) => {
      const mean = us.reduce((a, b) => a + b, 0) / us.length;
      rows.push(`| ${name} | ${mean.toFixed(1)} | ${pct(us, 50).toFixed(1)} | ${pct(us, 99).toFixed(1)} |`);
      console.log(`checks: ${name}: ${mean.toFixed(1)} µs`);
    };
    row('scene, cold (stat + access)', await timeEach(o.tasks, (i) => checkScene(join(scenes, `s${i}.pov`), 'host bench')));
    row('scene, warm (seen < 1 s ago)', await timeEach(o.tasks, () => checkScene(join(scenes, 's0.pov'), 'host bench')));
    // a bare name looked up on PATH (in /usr/bin), forgotten before each lookup
    const dirs = path.split(':').filter((d) => d !== '').length;
    row(`program \`sh\` on PATH, cold (PATH of ${dirs} folders)`, await timeEach(o.tasks, () => {
      forgetChecks();
      return checkProgram('sh', { cwd: scenes, path, where: 'host bench' });
    }));
    row('program, warm (found before)', await timeEach(o.tasks, () => checkProgram('sh', { cwd: scenes, path, where: 'host bench' })));
    return [
      `## Checks before a renderer starts (issue 13): ${machine}`,
      '',
      `${o.tasks} checks each, one after another, on ${tmpdir()} (tools/bench/slot-checks.ts). A slot makes both for every task`,
      '(actors/render-slot/input-check.ts); a job\'s tasks after its first are warm. For scale: a frame of `true`',
      'costs ~8.5 ms a slot (throughput section), a POV-Ray process ~0.6 s to start.',
      '',
      '| check | mean µs | p50 µs | p99 µs |',
      '|---|---|---|---|',
      ...rows,
      '',
    ].join('\n');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
