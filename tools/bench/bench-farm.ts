import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import { call } from '../../actors/bus/index.ts';
import { listAllHosts } from '../../actors/registry/index.ts';
import { codecs, PROTOCOL_MAJOR, Role, subjects, type JobSpec } from '../../protocol/index.ts';
import { startBenchNats } from './bench-nats.ts';
import { BENCH_PROCESS, childPids, snapshot, type CostSnapshot, type Watched } from './farm-costs.ts';
import { waitUntil } from '../lib/wait-until.ts';

const CLI = resolve(import.meta.dirname, '../bin/renderbus.js');
/** The operator the benchmarks submit as. */
export const BENCH_USER = 'bench';

/** A farm for a benchmark: registry, scheduler and one render server as processes of their own, the bench an operator. */
export interface BenchFarm {
  site: string;
  dir: string;
  nc: NatsConnection;
  submit(spec: JobSpec): Promise<string>;
  /** Resolves when the job's `done` event comes (subscribe before the job can end: call right after submit). */
  done(jobId: string): Promise<void>;
  /** CPU so far of each process (and the nats-server's message counters): two of them give a run's costs (farm-costs.ts). */
  costs(): Promise<CostSnapshot>;
  stop(): Promise<void>;
}

export interface BenchFarmOptions {
  slots: number;
  host?: string;
  extraServerArgs?: string[];
  /** Write a V8 CPU profile of each actor process into this folder (node --cpu-prof) when it stops. */
  cpuProfDir?: string;
  /** A NATS cluster of this many members instead of one server (cluster-throughput.ts). */
  cluster?: number;
}

export async function startBenchFarm(o: BenchFarmOptions): Promise<BenchFarm> {
  const dir = await mkdtemp(join(tmpdir(), 'rb-bench-'));
  const site = 'bench';
  const host = o.host ?? 'bench';
  const nats = await startBenchNats(dir, site, [
    { role: Role.Registry, name: Role.Registry },
    { role: Role.Scheduler, name: Role.Scheduler },
    { role: Role.RenderServer, name: host },
    { role: Role.Operator, name: BENCH_USER },
  ], o.cluster !== undefined ? { cluster: o.cluster } : { monitor: true });
  const procs: ChildProcess[] = [];
  const watched: Watched[] = [{ name: 'nats-server', pid: nats.pid }, { name: BENCH_PROCESS, pid: process.pid }];
  const prof = o.cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${o.cpuProfDir}`] : [];
  const actor = (creds: string, ...args: string[]) => {
    const p = spawn(process.execPath, [...prof, CLI, ...args, '--nats', nats.servers.join(','), '--site', site, '--creds', creds], { stdio: 'ignore', env: { ...process.env, RENDERBUS_LOG: 'warn' } });
    procs.push(p);
    watched.push({ name: args[0]!, pid: p.pid! });
    // renderers spawned by the actor itself (no fork server: no perl) are reaped by it
    if (args[0] === 'render-server') watched.push({ name: 'renderers', pid: p.pid!, part: 'reaped children' });
  };
  const nc = await nats.connectAs(Role.Operator, BENCH_USER);
  const stop = async () => {
    for (const p of procs) p.kill('SIGTERM');
    await Promise.all(procs.map((p) => new Promise((r) => (p.exitCode !== null ? r(null) : p.once('exit', r)))));
    await nc.close();
    await nats.stop();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    actor(nats.credsFile(Role.Registry), 'registry');
    actor(nats.credsFile(Role.Scheduler), 'scheduler');
    actor(nats.credsFile(Role.RenderServer, host), 'render-server', '--host', host, '--slots', String(o.slots), ...(o.extraServerArgs ?? []));
    await waitUntil('the render server to register', async () => ((await listAllHosts(nc, site, { timeoutMs: 500 })).hosts.length === 1 ? true : undefined));
    await waitUntil('the scheduler', async () => (await call(nc, subjects.schedQuery(site), codecs.queryRequest, { v: PROTOCOL_MAJOR, what: 'jobs' }, codecs.queryReply, { timeoutMs: 500 })) && true);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    site, dir, nc, stop,
    costs: async () => {
      // the render server's fork server (launcher.pl, started with its first task) reaps the renderers: its CPU, and theirs
      if (!watched.some((w) => w.name === 'fork server')) {
        for (const pid of await childPids(watched.find((w) => w.name === 'render-server')!.pid)) {
          const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
          if (cmd.includes('launcher.pl')) watched.push({ name: 'fork server', pid }, { name: 'renderers', pid, part: 'reaped children' });
        }
      }
      return snapshot(watched, nats.monitorUrl);
    },
    submit: async (spec) => (await call(nc, subjects.schedSubmit(site, BENCH_USER), codecs.submitRequest, { v: PROTOCOL_MAJOR, spec }, codecs.submitReply)).jobId,
    done: (jobId) => new Promise<void>((res) => nc.subscribe(subjects.jobEvent(site, jobId, 'done'), { max: 1, callback: () => res() })),
  };
}
