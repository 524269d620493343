import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { call } from '../../actors/bus/index.ts';
import { startSimulatedFarm } from '../../actors/render-server/index.ts';
import { ANY_HOST, codecs, PROTOCOL_MAJOR, Role, subjects } from '../../protocol/index.ts';
import { silentLogger } from '../../sites/logger.ts';
import { waitUntil } from '../lib/wait-until.ts';
import { startBenchNats } from './bench-nats.ts';

const CLI = resolve(import.meta.dirname, '../bin/renderbus.js');

export interface FailoverBenchOptions {
  /** How many times the leading scheduler is killed. */
  kills: number;
}

/** A `renderbus scheduler` process, and what it has said on stdout so far. */
interface Candidate {
  proc: ChildProcess;
  said: () => string;
}

/**
 * Scheduler failover (issue 18): two `renderbus scheduler` processes, a registry process and 4
 * simulated hosts × 2 slots rendering one long job; the leader is killed with SIGKILL `kills`
 * times, the killed process started again as the standby each time. Measured: kill → the next
 * `dispatched` frame event (the new leader serving), and SIGTERM → the standby leading.
 */
export async function failoverBench(o: FailoverBenchOptions, machine: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'rb-bench-failover-'));
  const site = 'bench';
  const nats = await startBenchNats(dir, site, [
    { role: Role.Registry, name: Role.Registry },
    { role: Role.Scheduler, name: Role.Scheduler },
    { role: Role.RenderServer, name: ANY_HOST },
    { role: Role.Operator, name: 'bench' },
  ]);
  const procs: ChildProcess[] = [];
  const actor = (kind: string): Candidate => {
    const proc = spawn(process.execPath, [CLI, kind, '--nats', nats.url, '--site', site, '--creds', nats.credsFile(kind === 'registry' ? Role.Registry : Role.Scheduler)], { stdio: ['ignore', 'pipe', 'ignore'] });
    let said = '';
    proc.stdout!.on('data', (d: Buffer) => (said += d.toString())); // info lines only: a few KB
    procs.push(proc);
    return { proc, said: () => said };
  };
  const nc = await nats.connectAs(Role.Operator, 'bench');
  const farmNc = await nats.connectAs(Role.RenderServer, ANY_HOST);
  const farm = startSimulatedFarm({ nc: farmNc, site, log: silentLogger(), hosts: 4, slots: 2, frameMs: 200, jitter: 0.2, heartbeatMs: 1_000, spreadMs: 0 });
  const dispatched: number[] = [];
  // only when each dispatch was seen counts: the messages are not read
  nc.subscribe(`rb.${site}.evt.frame.*.*.dispatched`, { callback: () => void dispatched.push(Date.now()) });
  const kills: number[] = [];
  const handovers: number[] = [];
  try {
    actor('registry');
    await farm.ready;
    let leader = actor('scheduler');
    await waitUntil('the first scheduler to lead', () => /journal replayed; serving/.test(leader.said()), 30_000);
    let standby = actor('scheduler');
    await waitUntil('the second to stand by', () => /standing by/.test(standby.said()), 30_000);
    await call(nc, subjects.schedSubmit(site, 'bench'), codecs.submitRequest, {
      v: PROTOCOL_MAJOR, spec: { name: 'failover', scene: '/scenes/f.pov', renderer: 'command', command: 'true', frames: '1-1000000', output: { dir: '/renders/failover', pattern: 'f_#######.exr' } },
    }, codecs.submitReply);
    for (let i = 0; i < o.kills; i++) {
      await waitUntil('dispatching', () => dispatched.some((at) => at > Date.now() - 300), 30_000, 20);
      const killedAt = Date.now();
      leader.proc.kill('SIGKILL');
      await once(leader.proc, 'exit');
      const next = await waitUntil('a dispatch by the new leader', () => dispatched.find((at) => at > killedAt), 30_000, 10);
      kills.push(next - killedAt);
      console.error(`failover ${i + 1}/${o.kills}: ${next - killedAt} ms`);
      leader = standby;
      standby = actor('scheduler');
      await waitUntil('the killed one back as the standby', () => /standing by/.test(standby.said()), 30_000);
    }
    for (let i = 0; i < 3; i++) {
      const from = standby.said().length;
      const stoppedAt = Date.now();
      leader.proc.kill('SIGTERM');
      await waitUntil('the standby to lead', () => standby.said().includes('leading as scheduler', from), 30_000, 5);
      handovers.push(Date.now() - stoppedAt);
      console.error(`handover ${i + 1}/3: ${Date.now() - stoppedAt} ms`);
      await waitUntil('the stopped leader to exit', () => leader.proc.exitCode !== null || leader.proc.signalCode !== null, 30_000, 20);
      leader = standby;
      standby = actor('scheduler');
      await waitUntil('the stopped one back as the standby', () => /standing by/.test(standby.said()), 30_000);
    }
  } finally {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    await farm.stop({ abandon: true });
    await nc.close();
    await farmNc.close();
    await nats.stop();
    await rm(dir, { recursive: true, force: true });
  }
  const sorted = [...kills].sort((a, b) => a - b);
  const p50 = sorted[Math.floor((sorted.length - 1) / 2)] ?? 0;
  return [
    `## Scheduler failover (issue 18): ${machine}`,
    '',
    '`npm run bench -- --only failover`: two `renderbus scheduler` processes (one leads, one stands by), a registry process and 4 simulated hosts × 2 slots (200 ms frames, lease reports every 1 s) rendering one long job on one nats-server. The leader is killed with SIGKILL, the killed process started again as the standby, ' + `${o.kills} times; then stopped with SIGTERM 3 times.`,
    '',
    '| event | runs | p50 ms | max ms | all, ms |',
    '|---|---|---|---|---|',
    `| kill -9 of the leader → next dispatch | ${kills.length} | ${p50} | ${sorted.at(-1) ?? 0} | ${kills.join(', ')} |`,
    `| SIGTERM of the leader → the standby leads | ${handovers.length} | ${[...handovers].sort((a, b) => a - b)[1] ?? 0} | ${Math.max(...handovers)} | ${handovers.join(', ')} |`,
    '',
    'The lease lapses after 4 s without a renewal (read every 250 ms); the new term replays the journal and dispatches once every render server alive has reported (docs/architecture.md, "Leadership"). Goal: within 5 s.',
    '',
  ].join('\n');
}
