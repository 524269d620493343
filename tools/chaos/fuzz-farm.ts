import { randomUUID } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { call, connectBus } from '../../actors/bus/index.ts';
import { waitUntil } from '../lib/wait-until.ts';
import { listAllHosts, startRegistry } from '../../actors/registry/index.ts';
import { startRenderServer } from '../../actors/render-server/index.ts';
import { startScheduler } from '../../actors/scheduler/index.ts';
import { codecs, PROTOCOL_MAJOR, Role, subjects, type Credentials, type JobDetail, type JobSpec, type Principal } from '../../protocol/index.ts';

/** The operator of the in-process farm's client connection: the farm's jobs are submitted as this user. */
export const FARM_OPERATOR = 'fuzz';

/**
 * A registry, a scheduler and one render server in this process, each with its own connection
 * and credential, plus a client connection (an operator's).
 */
export interface InProcessFarm {
  site: string;
  host: string;
  /** The client's connection, an operator's (the fuzzer reads the farm through it). */
  nc: NatsConnection;
  /** Another connection to the farm's bus, as any principal of the site (closed when the farm stops). */
  connectAs(p: Principal): Promise<NatsConnection>;
  submit(spec: JobSpec): Promise<string>;
  job(jobId: string): Promise<JobDetail>;
  /** Waits until the job's summary satisfies `done` (default: it ended). */
  waitJob(jobId: string, done?: (j: JobDetail) => boolean, timeoutMs?: number): Promise<JobDetail>;
  stop(): Promise<void>;
}

export interface InProcessFarmOptions {
  url: string;
  log: Logger;
  /** A credential of the farm's site, for each connection (the nats-server lets in nobody else). */
  creds: (site: string, role: Role, name: string) => Promise<Credentials>;
  site?: string;
  host?: string;
  slots?: number;
}

/** The principals an in-process farm of `host` connects as. */
export function inProcessFarmPrincipals(host: string): Principal[] {
  return [
    { role: Role.Operator, name: FARM_OPERATOR },
    { role: Role.Registry, name: Role.Registry },
    { role: Role.Scheduler, name: Role.Scheduler },
    { role: Role.RenderServer, name: host },
  ];
}

/** Starts the actors against a running nats-server and waits until the render server is registered. */
export async function startInProcessFarm(o: InProcessFarmOptions): Promise<InProcessFarm> {
  const site = o.site ?? `fz${randomUUID().slice(0, 8)}`;
  const host = o.host ?? 'fuzz-node';
  const stops: (() => Promise<unknown>)[] = [];
  const stop = async () => {
    for (const s of stops.splice(0).reverse()) await s().catch(() => {});
  };
  try {
    const connectAs = async (p: Principal, name = `${p.role}-${p.name}`) => {
      const c = await connectBus({ servers: o.url, name: `${site}-${name}`, creds: await o.creds(site, p.role, p.name) });
      stops.push(() => c.close());
      return c;
    };
    const nc = await connectAs({ role: Role.Operator, name: FARM_OPERATOR }, 'client');
    const registry = await startRegistry({ nc: await connectAs({ role: Role.Registry, name: Role.Registry }), site, log: o.log });
    stops.push(registry.stop);
    const scheduler = await startScheduler({ nc: await connectAs({ role: Role.Scheduler, name: Role.Scheduler }), site, log: o.log });
    stops.push(scheduler.stop);
    const rs = await startRenderServer({
      nc: await connectAs({ role: Role.RenderServer, name: host }), site, host, slots: o.slots ?? 1, log: o.log,
      packages: [{ name: 'povray', version: '3.7.0.10' }],
    });
    stops.push(rs.stop);

    const job = async (jobId: string): Promise<JobDetail> => {
      const body = await call(nc, subjects.schedQuery(site), codecs.queryRequest, { v: PROTOCOL_MAJOR, what: 'job', jobId }, codecs.queryReply, { timeoutMs: 2_000 });
      if (!('job' in body)) throw new Error(`sched.query answered job ${jobId} without it`);
      return body.job;
    };
    await waitUntil(`render server ${host} to register`, async () => {
      const l = await listAllHosts(nc, site, { timeoutMs: 1_000 });
      return l.hosts.some((h) => h.host === host);
    }, 20_000);
    return {
      site, host, nc, job, stop, connectAs: (p) => connectAs(p),
      async submit(spec) {
        const body = await call(nc, subjects.schedSubmit(site, FARM_OPERATOR), codecs.submitRequest, { v: PROTOCOL_MAJOR, spec }, codecs.submitReply, { timeoutMs: 5_000 });
        return body.jobId;
      },
      async waitJob(jobId, done = (j) => ['done', 'failed', 'cancelled'].includes(j.state), timeoutMs = 30_000) {
        return waitUntil(`job ${jobId}`, async () => {
          const j = await job(jobId);
          return done(j) ? j : undefined;
        }, timeoutMs);
      },
    };
  } catch (err) {
    await stop();
    throw err;
  }
}


/**
 * Gives a fresh farm (jobs with their scene and output under `dir`) something to lose: one finished job (tasks with attempts to repeat results
 * of) and one that no host can take, queued with its reason (tasks never dispatched). Returns
 * once both have settled, so a quiet farm publishes nothing more on its own.
 */
export async function seedFarmState(farm: InProcessFarm, dir: string): Promise<{ finished: string; waiting: string }> {
  await mkdir(dir, { recursive: true });
  const scene = join(dir, 'scene.txt');
  await writeFile(scene, 'fuzz\n');
  const output = { dir: join(dir, 'out') };
  const finished = await farm.submit({ name: 'fuzz-done', scene, renderer: 'command', command: 'true', frames: '1-4', chunk: 2, output });
  const waiting = await farm.submit({
    name: 'fuzz-waiting', scene, renderer: 'command', command: 'true', frames: '1-3', output,
    requirements: { licenses: ['fuzz-license-nobody-holds'] },
  });
  const done = await farm.waitJob(finished);
  if (done.state !== 'done') throw new Error(`the seed job ended ${done.state}: ${JSON.stringify(done.frames.find((f) => f.error))}`);
  await farm.waitJob(waiting, (j) => j.waiting !== undefined);
  return { finished, waiting };
}
