import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Launcher } from '../../actors/render-slot/launcher.ts';
import { runProcess } from '../../actors/render-slot/process.ts';

/*
 * The sandbox benchmark's timing loop (tools/bench/sandbox-cost.ts bundles it with esbuild and
 * runs it in a plain `node`, not in the tsx-loaded benchmark process): commands started the way
 * a render slot starts a renderer, runProcess through the fork server (launcher.pl). SPEC.json:
 * { runs, commands: [{ name, argv, cwd, env }] }; the commands take turns, so that a change of
 * the machine's load falls on all of them. Prints { name: [ms, ...] } (start to exit, as the slot sees it).
 */
interface Command {
  name: string;
  argv: string[];
  cwd: string;
  env: Record<string, string>;
}
const spec = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as { runs: number; commands: Command[] };
const launcher = new Launcher();
const times: Record<string, number[]> = Object.fromEntries(spec.commands.map((c) => [c.name, []]));
const out: string[] = [];
for (let run = 0; run < spec.runs; run++) {
  for (const c of spec.commands) {
    const t0 = performance.now();
    const p = runProcess({ argv: c.argv, cwd: c.cwd, env: c.env, launcher, onOutput: (_s, text) => out.push(text) });
    const exit = await p.exited;
    const ms = performance.now() - t0;
    if (exit.code !== 0) {
      process.stderr.write(`${c.name}: exit ${exit.code ?? exit.signal}: ${out.join('').slice(-2000)}\n`);
      process.exit(1);
    }
    out.length = 0;
    times[c.name]!.push(ms);
  }
}
launcher.close();
process.stdout.write(`${JSON.stringify(times)}\n`);
