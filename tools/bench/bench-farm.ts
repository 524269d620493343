import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import { call } from '../../actors/bus/index.ts';
import { listAllHosts } from '../../actors/registry/index.ts';
import { codecs, PROTOCOL_MAJOR, Role, subjects, type JobSpec } from '../../protocol/index.ts';
import { startBenchNats } from './bench-nats.ts';
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
  stop(): Promise<void>;
}

export async function startBenchFarm(o: { slots: number; host?: string; extraServerArgs?: string[]; cluster?: number }): Promise<BenchFarm> {
  const dir = await mkdtemp(join(tmpdir(), 'rb-bench-'));
  const site = 'bench';
  const host = o.host ?? 'bench';
  const nats = await startBenchNats(dir, site, [
    { role: Role.Registry, name: Role.Registry },
    { role: Role.Scheduler, name: Role.Scheduler },
    { role: Role.RenderServer, name: host },
    { role: Role.Operator, name: BENCH_USER },
  ], o.cluster !== undefined ? { cluster: o.cluster } : {});
  const procs: ChildProcess[] = [];
  const actor = (creds: string, ...args: string[]) => {
    procs.push(spawn(process.execPath, [CLI, ...args, '--nats', nats.servers.join(','), '--site', site, '--creds', creds], { stdio: 'ignore', env: { ...process.env, RENDERBUS_LOG: 'warn' } }));
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
    submit: async (spec) => (await call(nc, subjects.schedSubmit(site, BENCH_USER), codecs.submitRequest, { v: PROTOCOL_MAJOR, spec }, codecs.submitReply)).jobId,
    done: (jobId) => new Promise<void>((res) => nc.subscribe(subjects.jobEvent(site, jobId, 'done'), { max: 1, callback: () => res() })),
  };
}
