import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NatsConnection } from '@nats-io/transport-node';
import { call } from '../../actors/bus/index.ts';
import { codecs, isRole, PROTOCOL_MAJOR, Role, subjects, type JobDetail, type JobSpec, type HostRecord } from '../../protocol/index.ts';
import pino from 'pino';
import { startIntake, type Intake, type IntakeOptions } from '../../sites/intake/index.ts';
import { startOutsourcing, type Outsourcing, type OutsourcingOptions } from '../../sites/outsource/index.ts';
import { startRemoteJobs, type RemoteJobs, type RemoteJobsOptions } from '../../sites/remote-jobs/index.ts';
import { startNatsServer, type TestNats } from './nats-server.ts';
import { waitUntil } from '../../tools/lib/wait-until.ts';

export const CLI = resolve(import.meta.dirname, '../../tools/bin/renderbus.js');

/** One actor process (`renderbus registry|scheduler|render-server …`), its output kept for failure messages. */
export class ActorProcess {
  output = '';
  readonly exited: Promise<unknown>;
  constructor(readonly name: string, readonly proc: ChildProcess) {
    proc.stdout?.on('data', (d: Buffer) => (this.output = (this.output + d.toString()).slice(-20_000)));
    proc.stderr?.on('data', (d: Buffer) => (this.output = (this.output + d.toString()).slice(-20_000)));
    this.exited = once(proc, 'exit');
  }
  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (!this.running) return;
    this.proc.kill(signal);
    await this.exited;
  }
}

export { waitUntil };

/** A tiny POV-Ray animation: a sphere that moves with the frame number. */
export const TINY_SCENE = `
camera { location <0, 1, -4> look_at <0, 0.5, 0> }
light_source { <4, 6, -6> color rgb 1 }
plane { y, 0 pigment { checker color rgb 1 color rgb 0.2 } }
sphere { <-1.5 + clock * 0.1, 0.5, 0>, 0.5 pigment { color rgb <1, 0.3, 0.2> } }
`;

/** Options of a TestFarm. */
export interface TestFarmOptions {
  /** Its site name (default: a fresh `t<random>`; each farm has its own nats-server, so `studio` is fine). */
  site?: string;
  /** The site's linked peers: its scheduler is started with `--peers`, and intake() watches their folders. */
  peers?: string[];
  /** Where its temp directory is made (default: the OS temp dir). Bundle paths may not lie under /tmp: federation tests use /var/tmp. */
  tmpBase?: string;
}

/** The user of a TestFarm's own connection and of `rb()`: an operator. */
export const TEST_OPERATOR = 'op';

/**
 * A real farm for a test: its own nats-server, and actors as separate processes started
 * through the CLI, on a site name of its own, each with a credential of its own.
 */
export class TestFarm {
  readonly procs: ActorProcess[] = [];
  peers: string[] = [];
  private constructor(
    readonly site: string,
    readonly url: string,
    readonly dir: string,
    readonly nc: NatsConnection,
    /** The operator's credentials file, which `rb()` uses. */
    readonly operatorCreds: string,
    private nats: TestNats,
  ) {}

  static async start(o: TestFarmOptions = {}): Promise<TestFarm> {
    const site = o.site ?? `t${randomUUID().slice(0, 8)}`;
    const nats = await startNatsServer();
    const dir = await mkdtemp(join(o.tmpBase ?? tmpdir(), 'rb-farm-'));
    // the test's own connection rides out nats-server restarts, like the actors'
    const nc = await nats.connectAs(site, Role.Operator, TEST_OPERATOR);
    const farm = new TestFarm(site, nats.url, dir, nc, await nats.credsFile(site, Role.Operator, TEST_OPERATOR), nats);
    farm.peers = o.peers ?? [];
    return farm;
  }

  /** The site's data directory (hot folders, the federation's files). */
  get dataDir(): string {
    return join(this.dir, 'data');
  }

  /**
   * The site's intake for its `peers`, in this process, with the studio's half (sites/outsource:
   * the packer and ownJob) on an intake credential; its data directory is `dataDir` (not the
   * farm's dir, where the tests' scenes and outputs are: bundle paths may not lie under the data
   * directory). A peer's job (peerJob) is refused. Stopped with the farm.
   */
  async studioIntake(options: Partial<IntakeOptions> & Pick<OutsourcingOptions, 'encryptResults'> = {}): Promise<{ intake: Intake; outsourcing: Outsourcing }> {
    const { encryptResults, ...o } = options;
    const nc = await this.connectAs(Role.Intake, 'intake');
    const log = pino({ level: process.env.RENDERBUS_LOG ?? 'error' }); // a refused bundle is a warning the tests provoke
    const outsourcing = await startOutsourcing({ site: this.site, dataDir: this.dataDir, nc, peers: this.peers, log, ...(encryptResults !== undefined ? { encryptResults } : {}) });
    const intake = await startIntake({
      site: this.site,
      dataDir: this.dataDir,
      peers: this.peers,
      log,
      scanEveryMs: 200,
      handlers: {
        ownJob: outsourcing.ownJob,
        peerJob: () => Promise.reject(new Error('this test farm takes no peer jobs')),
      },
      // the tests write the peer's bundles themselves, unsigned: taken unless a test gives a key
      peerKey: () => undefined,
      allowUnsigned: () => true,
      ...o,
    });
    const stop = async () => {
      this.stops.delete(stop);
      await intake.stop();
      await outsourcing.stop();
    };
    this.stops.add(stop);
    return { intake, outsourcing };
  }

  /** A credentials file of another principal on this farm (issued on first use). */
  credsFile(role: Role, name?: string): Promise<string> {
    return this.nats.credsFile(this.site, role, name);
  }

  private artists = new Map<string, Promise<NatsConnection>>();
  /** An artist's connection (one per user, closed with the farm). */
  artist(user: string): Promise<NatsConnection> {
    let c = this.artists.get(user);
    if (!c) {
      c = this.connectAs(Role.Artist, user);
      this.artists.set(user, c);
    }
    return c;
  }

  private extraConns: NatsConnection[] = [];
  /** A connection as another principal on this farm (closed with the farm: it reconnects forever). */
  async connectAs(role: Role, name?: string): Promise<NatsConnection> {
    const nc = await this.nats.connectAs(this.site, role, name);
    this.extraConns.push(nc);
    return nc;
  }

  /** nats-server killed outright (kill -9): no goodbye to anyone. */
  async killNats(): Promise<void> {
    this.nats.proc.kill('SIGKILL');
    await once(this.nats.proc, 'exit').catch(() => {});
  }

  /** nats-server started again on the same port and the same JetStream store (and credentials). */
  async startNats(): Promise<void> {
    this.nats = await startNatsServer({ dir: this.nats.dir, port: this.nats.port });
  }

  /**
   * Starts `renderbus <actor> …` with the credential its role needs: a render server's names its
   * `--host`. Call it through registry(), scheduler(), renderServer()… or with `await` on
   * the promise it returns.
   */
  async spawnActor(name: string, args: string[], o: { creds?: string; env?: NodeJS.ProcessEnv } = {}): Promise<ActorProcess> {
    const kind = args[0] ?? '';
    const host = args[args.indexOf('--host') + 1];
    const creds = o.creds ?? (isRole(kind) ? await this.credsFile(kind, kind === Role.RenderServer ? host : kind) : this.operatorCreds);
    const proc = spawn(process.execPath, [CLI, ...args, '--nats', this.url, '--site', this.site, '--creds', creds], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, RENDERBUS_LOG: process.env.RENDERBUS_LOG ?? 'info', ...o.env },
    });
    const a = new ActorProcess(name, proc);
    this.procs.push(a);
    return a;
  }

  async registry(): Promise<ActorProcess> {
    const p = await this.spawnActor('registry', ['registry']);
    await waitUntil('the registry to answer', () => this.hosts().then(() => true), 20_000);
    return p;
  }

  async scheduler(extra: string[] = []): Promise<ActorProcess> {
    const peers = this.peers.length > 0 ? ['--peers', this.peers.join(',')] : [];
    const p = await this.spawnActor('scheduler', ['scheduler', ...peers, ...extra]);
    await waitUntil('the scheduler to serve', () => this.jobs().then(() => true), 20_000);
    return p;
  }

  /** Starts a render server and waits until the registry lists it. */
  async renderServer(host: string, slots: number, extra: string[] = [], env?: NodeJS.ProcessEnv): Promise<ActorProcess> {
    const p = await this.spawnActor(`render-server ${host}`, ['render-server', '--host', host, '--slots', String(slots), ...extra], env ? { env } : {});
    await waitUntil(`render server ${host} to register`, async () => (await this.hosts()).some((h) => h.host === host), 20_000);
    return p;
  }

  /** `renderbus monitor` on a free port (more flags in `extra`), once its first snapshot is in (it follows the bus from then on). */
  async monitor(extra: string[] = []): Promise<{ proc: ActorProcess; base: string }> {
    const port = await freePort();
    const proc = await this.spawnActor('monitor', ['monitor', '--port', String(port), '--interval', '1', ...extra]);
    const base = `http://127.0.0.1:${port}`;
    await waitUntil('the monitor to serve', async () => {
      if (!proc.running) throw new Error(`the monitor exited:\n${proc.output}`);
      const r = await fetch(`${base}/healthz`).catch(() => null);
      return r?.ok === true && ((await r.json()) as { snapshots: number }).snapshots >= 1;
    }, 20_000);
    return { proc, base };
  }

  async hosts(): Promise<HostRecord[]> {
    const body = await call(this.nc, subjects.regList(this.site), codecs.listRequest, { v: PROTOCOL_MAJOR }, codecs.listReply, { timeoutMs: 1_000 });
    return body.hosts;
  }

  async jobs() {
    const body = await call(this.nc, subjects.schedQuery(this.site), codecs.queryRequest, { v: PROTOCOL_MAJOR, what: 'jobs' }, codecs.queryReply, { timeoutMs: 1_000 });
    if (!('jobs' in body)) throw new Error('expected jobs');
    return body.jobs;
  }

  async job(jobId: string): Promise<JobDetail> {
    const body = await call(this.nc, subjects.schedQuery(this.site), codecs.queryRequest, { v: PROTOCOL_MAJOR, what: 'job', jobId }, codecs.queryReply, { timeoutMs: 2_000 });
    if (!('job' in body)) throw new Error('expected job');
    return body.job;
  }

  /** Submits as the spec's user (an artist's credential of that name), or as the test's operator. */
  async submit(spec: JobSpec): Promise<string> {
    const user = spec.user ?? TEST_OPERATOR;
    const nc = user === TEST_OPERATOR ? this.nc : await this.artist(user);
    const body = await call(nc, subjects.schedSubmit(this.site, user), codecs.submitRequest, { v: PROTOCOL_MAJOR, spec }, codecs.submitReply, { timeoutMs: 5_000 });
    return body.jobId;
  }

  async waitJob(jobId: string, state: 'done' | 'failed' | 'cancelled' = 'done', timeoutMs = 60_000): Promise<JobDetail> {
    return waitUntil(`job ${jobId} to be ${state}`, async () => {
      const j = await this.job(jobId);
      if (j.state !== state && ['done', 'failed', 'cancelled'].includes(j.state)) {
        throw new Error(`job ended ${j.state}: ${JSON.stringify(j.frames.filter((f) => f.error).slice(0, 3))}`);
      }
      return j.state === state ? j : undefined;
    }, timeoutMs, 200);
  }

  async writeScene(name = 'scene.pov', text = TINY_SCENE): Promise<string> {
    const path = join(this.dir, name);
    await writeFile(path, text);
    return path;
  }

  /**
   * A command-renderer job whose frames each sleep, then append their number to a ledger file
   * (so a test can count how often each frame ran to the end) and write their output.
   */
  async ledgerJob(name: string, frames: string, sleepS: number, over: Partial<JobSpec> = {}): Promise<{ spec: JobSpec; ledger: string }> {
    const ledger = join(this.dir, `${name}.ledger`);
    const scene = await this.writeScene();
    const command = `sh -c 'sleep ${sleepS}; echo {frame} >> ${ledger}; echo frame {frame} > {output}'`;
    return { ledger, spec: { name, scene, renderer: 'command', command, frames, output: { dir: join(this.dir, `out-${name}`), pattern: 'f_####.txt' }, ...over } };
  }

  /**
   * Proof that the scheduler looked: submits a one-frame job that does nothing (priority 50
   * unless `over` says) and waits until it is done. The scheduler gave a slot to it, so a job
   * it passed over in that dispatch round (held, paused, waiting, more urgent) was considered and
   * not started. Check "nothing happened" after this, not after a sleep.
   */
  async dispatchRound(over: Partial<JobSpec> = {}): Promise<JobDetail> {
    const scene = await this.writeScene('probe.pov');
    const jobId = await this.submit({ name: 'probe', scene, renderer: 'command', command: 'true', frames: '1', output: { dir: join(this.dir, `out-probe-${randomUUID().slice(0, 8)}`) }, ...over });
    return this.waitJob(jobId, 'done', 30_000);
  }

  /**
   * The site's intake for `peers` in this process, with the vendor's half (sites/remote-jobs) as
   * its peerJob half, on a connection with the intake role; the farm's dir is the site's data
   * directory. `ownJob` (news of jobs this farm sent out) is refused: that is the studio's half.
   * Stop it with its `stop` (the farm's stop does too).
   */
  async remoteIntake(peers: readonly string[], o: { scanEveryMs?: number; rates?: RemoteJobsOptions['rates']; onOutcome?: IntakeOptions['onOutcome']; peerKey?: IntakeOptions['peerKey']; quotaBytes?: IntakeOptions['quotaBytes']; keepInputsMs?: number } = {}): Promise<{ stop(): Promise<void>; sweep: RemoteJobs['sweep'] }> {
    const nc = await this.connectAs(Role.Intake, 'intake');
    const log = pino({ level: process.env.RENDERBUS_LOG ?? 'warn' });
    const remote = await startRemoteJobs({ site: this.site, dataDir: this.dir, nc, peers, log, ...(o.rates ? { rates: o.rates } : {}), ...(o.keepInputsMs !== undefined ? { keepInputsMs: o.keepInputsMs } : {}) });
    const intake = await startIntake({
      site: this.site, dataDir: this.dir, peers, log, scanEveryMs: o.scanEveryMs ?? 200,
      handlers: { peerJob: remote.peerJob, ownJob: () => Promise.reject(new Error('this test farm sends no jobs out')), refused: remote.refused },
      ...(o.onOutcome ? { onOutcome: o.onOutcome } : {}),
      ...(o.quotaBytes ? { quotaBytes: o.quotaBytes } : {}),
      // the tests write the studio's bundles themselves, unsigned: taken unless a test gives the studio's key
      peerKey: o.peerKey ?? (() => undefined),
      allowUnsigned: () => o.peerKey === undefined,
    });
    const stop = async () => {
      this.stops.delete(stop);
      await intake.stop();
      await remote.stop();
    };
    this.stops.add(stop);
    return { stop, sweep: remote.sweep };
  }

  private readonly stops = new Set<() => Promise<void>>();

  /** The actors' recent output, for assertion messages. */
  logs(): string {
    return this.procs.map((p) => `--- ${p.name}\n${p.output.split('\n').slice(-15).join('\n')}`).join('\n');
  }

  async stop(): Promise<void> {
    for (const s of [...this.stops]) await s().catch(() => {});
    await Promise.all(this.procs.map((p) => p.kill('SIGTERM').catch(() => {})));
    for (const c of this.extraConns) await c.close().catch(() => {});
    await this.nc.close().catch(() => {});
    await this.nats.stop();
    await rm(this.nats.dir, { recursive: true, force: true });
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** A TCP port free on 127.0.0.1 right now. */
export async function freePort(): Promise<number> {
  const s = createServer().listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address() as { port: number };
  await new Promise((r) => s.close(r));
  return port;
}

/** Runs one CLI command against a test farm; its exit code and output. */
export function rb(farm: TestFarm, ...args: string[]): { code: number | null; stdout: string; stderr: string } {
  return rbAs(farm, farm.operatorCreds, ...args);
}

/** `rb()` with another credential (e.g. an artist's, from farm.credsFile). */
export function rbAs(farm: TestFarm, creds: string, ...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args, '--nats', farm.url, '--site', farm.site, '--creds', creds], { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/**
 * `rb()` without blocking this process's event loop, for a command that waits (`submit --wait`):
 * the farm's actors write to pipes this process reads, and would stall on full pipes meanwhile.
 */
export async function rbAsync(farm: TestFarm, ...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const proc = spawn(process.execPath, [CLI, ...args, '--nats', farm.url, '--site', farm.site, '--creds', farm.operatorCreds], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const [code] = (await once(proc, 'close')) as [number | null]; // 'close': after the pipes are drained
  return { code, stdout, stderr };
}

/** How often each frame ran to the end, from a ledger file (see TestFarm.ledgerJob). */
export async function readLedger(path: string): Promise<Map<number, number>> {
  const text = await readFile(path, 'utf8').catch(() => '');
  const runs = new Map<number, number>();
  for (const line of text.split('\n')) if (line.trim() !== '') runs.set(Number(line), (runs.get(Number(line)) ?? 0) + 1);
  return runs;
}
