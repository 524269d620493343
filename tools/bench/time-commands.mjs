// Times commands from a plain Node process (node tools/bench/time-commands.mjs SPEC.json): in the
// tsx-loaded benchmark process, a spawn alone costs more than some of the commands measured.
// SPEC: { "runs": N, "commands": [{ "name", "argv": [...], "env": {...} }] }; the commands take
// turns, so that a change of the machine's load falls on all of them. Prints { name: [ms, ...] }.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const spec = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const times = Object.fromEntries(spec.commands.map((c) => [c.name, []]));
for (let run = 0; run < spec.runs; run++) {
  for (const c of spec.commands) {
    const t0 = performance.now();
    const r = spawnSync(c.argv[0], c.argv.slice(1), { env: { ...process.env, ...c.env }, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
    const ms = performance.now() - t0;
    if (r.status !== 0) {
      process.stderr.write(`${c.name}: exit ${r.status}: ${r.stderr}\n`);
      process.exit(1);
    }
    times[c.name].push(ms);
  }
}
process.stdout.write(`${JSON.stringify(times)}\n`);
