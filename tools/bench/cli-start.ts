import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { call } from '../../actors/bus/index.ts';
import { codecs, PROTOCOL_MAJOR, Role, subjects } from '../../protocol/index.ts';
import { waitUntil } from '../lib/wait-until.ts';
import { startBenchNats } from './bench-nats.ts';

/*
 * How long a command takes from spawn to exit: `renderbus --version` (no NATS) and `renderbus
 * jobs` (credential, connect, one sched.query page, print) against a scheduler on loopback, run
 * from dist/ (the build) and from the sources through tsx (RENDERBUS_FROM_SOURCE=1), beside
 * `node -e 0`, Node's own start. Timed by time-commands.mjs, a plain Node process (why: there).
 * Goals (issue 18): --version under 150 ms, jobs under 300 ms.
 */
const CLI = resolve(import.meta.dirname, '../bin/renderbus.js');
const TIMER = resolve(import.meta.dirname, 'time-commands.mjs');
const BUILD = resolve(import.meta.dirname, '../build.mjs');

export interface StartOptions {
  runs: number;
}

export async function startBench(o: StartOptions, machine: string): Promise<string> {
  const built = spawnSync(process.execPath, [BUILD], { stdio: 'inherit' });
  if (built.status !== 0) throw new Error('the build failed');
  const dir = await mkdtemp(join(tmpdir(), 'rb-bench-start-'));
  const site = 'bench';
  const nats = await startBenchNats(dir, site, [
    { role: Role.Scheduler, name: Role.Scheduler },
    { role: Role.Operator, name: 'bench' },
  ]);
  const scheduler = spawn(process.execPath, [CLI, 'scheduler', '--nats', nats.url, '--site', site, '--creds', nats.credsFile(Role.Scheduler)], {
    stdio: 'ignore',
    env: { ...process.env, RENDERBUS_LOG: 'warn' },
  });
  const nc = await nats.connectAs(Role.Operator, 'bench');
  try {
    await waitUntil('the scheduler', async () => (await call(nc, subjects.schedQuery(site), codecs.queryRequest, { v: PROTOCOL_MAJOR, what: 'jobs' }, codecs.queryReply, { timeoutMs: 500 })) && true);
    const jobs = [CLI, 'jobs', '--nats', nats.url, '--site', site, '--creds', nats.credsFile(Role.Operator, 'bench')];
    const fromSource = { RENDERBUS_FROM_SOURCE: '1' };
    const commands = [
      { name: 'node -e 0', argv: [process.execPath, '-e', '0'], env: {} },
      { name: 'renderbus --version, built', argv: [process.execPath, CLI, '--version'], env: {} },
      { name: 'renderbus --version, sources through tsx', argv: [process.execPath, CLI, '--version'], env: fromSource },
      { name: 'renderbus jobs, built', argv: [process.execPath, ...jobs], env: {} },
      { name: 'renderbus jobs, sources through tsx', argv: [process.execPath, ...jobs], env: fromSource },
    ];
    const spec = join(dir, 'spec.json');
    await writeFile(spec, JSON.stringify({ runs: o.runs, commands }));
    const timed = spawnSync(process.execPath, [TIMER, spec], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    if (timed.status !== 0) throw new Error('time-commands.mjs failed');
    const times = JSON.parse(timed.stdout) as Record<string, number[]>;
    const ms = (v: number) => v.toFixed(0);
    const rows = commands.map(({ name }) => {
      const t = [...(times[name] ?? [])].sort((a, b) => a - b);
      return `| ${name} | ${ms(t[Math.floor(t.length / 2)] ?? NaN)} | ${ms(t[0] ?? NaN)} | ${ms(t[t.length - 1] ?? NaN)} |`;
    });
    return [
      `## CLI start (${machine})`,
      '',
      `\`npm run bench -- --only start\`: spawn → exit of each command, ${o.runs} runs each, the commands taking turns, timed from a plain Node process (tools/bench/time-commands.mjs). \`jobs\` asks a scheduler on loopback (no jobs), logging in with an operator's credential. "Built" is dist/ (\`node tools/build.mjs\`: esbuild, typebox bundled in); "sources" is the same checkout with RENDERBUS_FROM_SOURCE=1. Goals: --version under 150 ms, jobs under 300 ms. Times in ms.`,
      '',
      '| command | median | best | worst |',
      '|---|---|---|---|',
      ...rows,
      '',
    ].join('\n');
  } finally {
    await nc.close();
    scheduler.kill('SIGTERM');
    await nats.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
