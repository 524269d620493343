import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Role } from '../../protocol/index.ts';
import { keyOf, natsDir, prepareSiteAuth } from '../../sites/auth/index.ts';
import { startCluster } from '../../sites/cluster.ts';
import { farmRun } from './farm-throughput.ts';

/*
 * The farm on a NATS cluster of three (docs/cluster.md) against one nats-server: the throughput
 * bench's farm (N frames of `true`, registry, scheduler and one render server as processes) on
 * each, runs alternated; and how long a cluster takes to elect its JetStream meta leader, new and
 * started again on the stores it had. Run from tools/bench/main.ts (`--only cluster`).
 */
export interface ClusterBenchOptions {
  frames: number;
  slots: number;
  /** Runs of each (alternated). */
  runs: number;
}

/** Milliseconds until the meta leader: `starts` new clusters, then each started again on its stores. */
async function startTimes(starts: number): Promise<{ fresh: number[]; again: number[] }> {
  const fresh: number[] = [];
  const again: number[] = [];
  for (let i = 0; i < starts; i++) {
    const dir = await mkdtemp(join(tmpdir(), 'rb-bench-cluster-'));
    try {
      const auth = await prepareSiteAuth(dir, 'bench', [{ role: Role.Scheduler, name: Role.Scheduler }]);
      const o = { dir: natsDir(dir), size: 3, auth: { users: auth.users }, probe: auth.creds.get(keyOf({ role: Role.Scheduler, name: Role.Scheduler }))! };
      const first = await startCluster(o);
      fresh.push(first.readyMs);
      await first.stop();
      const second = await startCluster(o);
      again.push(second.readyMs);
      await second.stop();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  return { fresh, again };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Runs the cluster benchmark; returns its docs/benchmarks.md section. */
export async function clusterBench(o: ClusterBenchOptions, machine: string): Promise<string> {
  const one: number[] = [];
  const three: number[] = [];
  for (let i = 0; i < o.runs; i++) {
    one.push((await farmRun(o.frames, o.slots)).fps);
    three.push((await farmRun(o.frames, o.slots, { cluster: 3 })).fps);
    console.log(`run ${i + 1}: one server ${one.at(-1)!.toFixed(0)}/s, cluster of 3 ${three.at(-1)!.toFixed(0)}/s`);
  }
  const t = await startTimes(3);
  console.log(`meta leader: new ${t.fresh.join(', ')} ms; started again ${t.again.join(', ')} ms`);
  const f = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(', ');
  return [
    `## The farm on a NATS cluster: ${machine}`,
    '',
    `\`--only cluster\`: the throughput bench's farm (${o.frames} frames of \`true\`, ${o.slots} slots; registry, scheduler and one render server as processes, each given every URL) on one nats-server and on a cluster of three on the same machine (journal and event streams R3), ${o.runs} runs each, alternated.`,
    '',
    '| NATS | frames/s (each run) | median | ÷ one server |',
    '|---|---|---|---|',
    `| one server | ${f(one)} | ${median(one).toFixed(0)} | 1.00× |`,
    `| cluster of 3 (R3) | ${f(three)} | ${median(three).toFixed(0)} | ${(median(three) / median(one)).toFixed(2)}× |`,
    '',
    'Start of a cluster of three (sites/cluster.ts: members started at once) until JetStream has its meta leader, in ms:',
    '',
    '| start | each | median |',
    '|---|---|---|',
    `| new stores | ${f(t.fresh)} | ${median(t.fresh).toFixed(0)} |`,
    `| again, on its stores | ${f(t.again)} | ${median(t.again).toFixed(0)} |`,
    '',
  ].join('\n');
}
