import { spawn, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startBenchFarm } from './bench-farm.ts';

/*
 * Issue 17's benchmark: the makespan of a Blender job through the farm against GNU parallel
 * running the same Blender command once per frame, and against one Blender process rendering
 * every frame, in one run. The scene is tools/demo/blender-scene.py's (Cycles, its settings baked
 * in the .blend, so every runner renders the same pixels); the farm's job overrides nothing.
 * Goal: the farm at most 1.05× the better of the two.
 */
const MAKE_SCENE = resolve(import.meta.dirname, '../demo/blender-scene.py');

export interface BlenderBenchOptions {
  frames: number;
  slots: number;
  /** Frames per task for the farm's chunked run. */
  chunk: number;
  size: string;
  samples: number;
}

async function run(cmd: string, args: string[], cwd: string, stdin?: string): Promise<number> {
  const t0 = performance.now();
  const p = spawn(cmd, args, { cwd, stdio: [stdin === undefined ? 'ignore' : 'pipe', 'ignore', 'ignore'] });
  if (stdin !== undefined) p.stdin!.end(stdin);
  const [code] = (await once(p, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`${cmd} exited ${String(code)}`);
  return (performance.now() - t0) / 1000;
}

/** Seconds from submit to the job's `done` event, on a fresh farm of `slots` slots. */
async function farmMakespan(scene: string, o: BlenderBenchOptions, chunk: number): Promise<number> {
  const farm = await startBenchFarm({ slots: o.slots });
  try {
    const t0 = performance.now();
    const jobId = await farm.submit({ name: 'blender-bench', scene, frames: `1-${o.frames}`, chunk, output: { dir: join(farm.dir, 'out') } });
    await farm.done(jobId);
    return (performance.now() - t0) / 1000;
  } finally {
    await farm.stop();
  }
}

/** Runs the Blender makespan benchmark; returns its docs/benchmarks.md section. */
export async function blenderBench(o: BlenderBenchOptions, machine: string): Promise<string> {
  const version = spawnSync('blender', ['--version'], { encoding: 'utf8' }).stdout?.match(/Blender (\S+)/)?.[1];
  if (!version) throw new Error('blender is not on PATH (sh tools/bootstrap.sh --test installs it)');
  const dir = await mkdtemp(join(tmpdir(), 'rb-bench-blender-'));
  try {
    const scene = join(dir, 'shot.blend');
    const made = spawnSync('blender', ['-b', '--factory-startup', '--python', MAKE_SCENE, '--', scene, '--frames', String(o.frames), '--size', o.size, '--samples', String(o.samples)], { encoding: 'utf8' });
    if (made.status !== 0) throw new Error(`the scene was not made: ${made.stderr}`);
    const blender = (out: string, ...frames: string[]) => ['-b', '--factory-startup', scene, '-o', join(dir, out, 'f_####'), '-F', 'PNG', '-x', '1', ...frames];
    await mkdir(join(dir, 'parallel'));
    // the same Blender command once per frame, `slots` at a time, one thread each as the farm's slots
    const perFrame = await run('parallel', ['-j', String(o.slots), 'blender', ...blender('parallel', '-t', '1', '-f', '{}')], dir, Array.from({ length: o.frames }, (_, i) => `${i + 1}\n`).join(''));
    // one process for every frame, with every core
    const oneProcess = await run('blender', blender('one', '-t', String(o.slots), '-s', '1', '-e', String(o.frames), '-a'), dir);
    const chunked = await farmMakespan(scene, o, o.chunk);
    const perFrameFarm = await farmMakespan(scene, o, 1);
    const best = Math.min(perFrame, oneProcess);
    const ratio = (s: number) => (s / best).toFixed(2);
    console.log(`blender ${version}: parallel ${perFrame.toFixed(1)} s, one process ${oneProcess.toFixed(1)} s, farm chunk ${o.chunk} ${chunked.toFixed(1)} s (${ratio(chunked)}×), farm chunk 1 ${perFrameFarm.toFixed(1)} s (${ratio(perFrameFarm)}×)`);
    return [
      `## Blender makespan: ${machine}`,
      '',
      `\`npm run bench -- --only blender\`: ${o.frames} frames of tools/demo/blender-scene.py (Cycles, ${o.size}, ${o.samples} samples, Blender ${version}) on ${o.slots} slots. GNU parallel runs \`blender -b … -t 1 -f N\` once per frame, ${o.slots} at a time; one Blender process renders every frame with \`-t ${o.slots}\`; the farm (registry, scheduler, one render server of ${o.slots} slots, as processes) renders the job in chunks, each task one Blender process with one thread. Makespan from start (submit) to the last frame (the job's \`done\` event). Goal: the farm at most 1.05× the better of the two.`,
      '',
      '| runner | makespan | ÷ the better baseline |',
      '|---|---|---|',
      `| GNU parallel, a process per frame | ${perFrame.toFixed(1)} s | ${ratio(perFrame)}× |`,
      `| one Blender process, every frame | ${oneProcess.toFixed(1)} s | ${ratio(oneProcess)}× |`,
      `| farm, chunks of ${o.chunk} | ${chunked.toFixed(1)} s | ${ratio(chunked)}× |`,
      `| farm, chunks of 1 | ${perFrameFarm.toFixed(1)} s | ${ratio(perFrameFarm)}× |`,
      '',
    ].join('\n');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
