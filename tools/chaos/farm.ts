import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, writeSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, nkeyAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import { call } from '../../actors/bus/index.ts';
import { listAllHosts } from '../../actors/registry/index.ts';
import { waitUntil } from '../lib/wait-until.ts';
import { codecs, inboxPrefix, PROTOCOL_MAJOR, Role, subjects, type HostRecord, type JobDetail, type JobSpec, type JobSummary, type Principal } from '../../protocol/index.ts';
import { keyOf, localCredsPath, prepareSiteAuth } from '../../sites/auth/index.ts';
import { DEFAULT_MAX_FILE_STORE, writeAuthConfig } from '../../sites/nats-server.ts';
import { serverConfig, type ClusterBlock } from '../../sites/server-config.ts';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';

/*
 * A real farm for the chaos driver, every part a separate process that can be killed with
 * SIGKILL and started again: a nats-server (same port, same JetStream store every time), a
 * registry, a scheduler and render servers, the actors started through the CLI. Each
 * process's output goes to <dir>/logs/<name>.log, appended across restarts with a header
 * line per start. Every child is started through `setpriv --pdeathsig KILL`, so none
 * outlives the driver, even when the driver itself is killed outright. Like a real site's, the
 * bus is authenticated: each actor logs in with a credential of its own, the driver as an
 * operator (the credentials live in <dir>/auth, nats-server's user list in <dir>/nats/auth.conf).
 * In cluster mode (`natsServers: 3`) there are three nats-servers, `nats-1`… under <dir>/nats/n1…,
 * clustered and sharing that auth.conf; each actor is given all three URLs.
 */

export const CLI = resolve(import.meta.dirname, '../bin/renderbus.js');
const SETPRIV = '/usr/bin/setpriv';

export type MemberKind = 'nats-server' | 'registry' | 'scheduler' | 'render-server';

export interface ExitRecord {
  at: number;
  code: number | null;
  signal: string | null;
  /** We killed or stopped it; otherwise it died on its own. */
  expected: boolean;
}

/** One process of the farm: started, killed and started again, its exits recorded. */
export abstract class Member {
  proc: ChildProcess | null = null;
  starts = 0;
  readonly exits: ExitRecord[] = [];
  /** Told when the process exits without being killed by us. */
  onUnexpectedExit: ((m: Member, e: ExitRecord) => void) | null = null;
  private exited: Promise<void> = Promise.resolve();
  private expecting = false;

  constructor(
    readonly name: string,
    readonly kind: MemberKind,
    readonly logFile: string,
  ) {}

  get running(): boolean {
    return this.proc !== null && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  get pid(): number | undefined {
    return this.running ? this.proc!.pid : undefined;
  }

  protected abstract command(): { bin: string; args: string[]; env?: NodeJS.ProcessEnv };

  /** Spawns the process (resolves once it has been spawned; subclasses may wait for more). */
  async start(): Promise<void> {
    if (this.running) throw new Error(`${this.name} is already running`);
    const { bin, args, env } = this.command();
    const fd = openSync(this.logFile, 'a');
    this.starts += 1;
    writeSync(fd, `=== chaos: start #${this.starts} of ${this.name} at ${new Date().toISOString()}\n`);
    let proc: ChildProcess;
    try {
      const [b, a] = existsSync(SETPRIV) ? [SETPRIV, ['--pdeathsig', 'KILL', '--', bin, ...args]] : [bin, args];
      proc = spawn(b, a, { stdio: ['ignore', fd, fd], env: env ?? process.env });
    } finally {
      closeSync(fd);
    }
    this.proc = proc;
    this.expecting = false;
    this.exited = new Promise<void>((res) => {
      let recorded = false;
      const record = (code: number | null, signal: string | null) => {
        if (recorded) return;
        recorded = true;
        const rec: ExitRecord = { at: Date.now(), code, signal, expected: this.expecting };
        this.exits.push(rec);
        if (!rec.expected) this.onUnexpectedExit?.(this, rec);
        res();
      };
      proc.once('exit', (code, signal) => record(code, signal));
      proc.once('error', (err) => record(null, `spawn error: ${err.message}`));
    });
    await new Promise<void>((res, rej) => {
      proc.once('spawn', () => res());
      proc.once('error', rej);
    });
  }

  /** Sends a signal and waits (at most timeoutMs, then SIGKILL) until the process is gone. */
  async kill(signal: NodeJS.Signals = 'SIGKILL', timeoutMs = 10_000): Promise<void> {
    if (!this.running) return;
    this.expecting = true;
    this.proc!.kill(signal);
    const t = setTimeout(() => this.proc?.kill('SIGKILL'), timeoutMs);
    await this.exited;
    clearTimeout(t);
  }

  /** SIGKILL now, synchronously (for the process's exit handler). */
  killNow(): void {
    if (!this.running) return;
    this.expecting = true;
    this.proc!.kill('SIGKILL');
  }

  /** Resolves once the current process has exited. */
  waitExit(): Promise<void> {
    return this.exited;
  }

  /** The last lines of this member's log file. */
  async logTail(lines = 20): Promise<string[]> {
    const text = await readFile(this.logFile, 'utf8').catch(() => '');
    return text.trimEnd().split('\n').slice(-lines);
  }
}

/**
 * A nats-server: the first start picks a free port (unless one is set); every restart reuses it
 * and the same store. A cluster member has its server name and cluster block, and reads the
 * auth.conf of the folder above its own.
 */
export class NatsMember extends Member {
  port = -1;
  url = '';

  constructor(
    readonly dir: string,
    logFile: string,
    private readonly member: { name: string; serverName: string; cluster: () => ClusterBlock } | null = null,
  ) {
    super(member?.name ?? 'nats-server', 'nats-server', logFile);
  }

  protected command() {
    return { bin: process.env.NATS_SERVER_BIN ?? 'nats-server', args: ['-c', join(this.dir, 'nats.conf'), '--ports_file_dir', this.dir] };
  }

  override async start(): Promise<void> {
    await mkdir(join(this.dir, 'jetstream'), { recursive: true });
    // the users and their permissions (sites/nats-server.ts writeAuthConfig): no anonymous way in
    const conf = serverConfig({
      listen: `127.0.0.1:${this.port}`, serverName: this.member?.serverName ?? 'chaos', maxPayload: 1048576,
      storeDir: join(this.dir, 'jetstream'), maxFileStore: DEFAULT_MAX_FILE_STORE,
      ...(this.member ? { cluster: this.member.cluster(), authInclude: '../auth.conf' } : {}),
    });
    await writeFile(join(this.dir, 'nats.conf'), conf, { mode: 0o600 });
    await super.start();
    const portsFile = join(this.dir, `nats-server_${this.proc!.pid!}.ports`);
    const until = Date.now() + 20_000;
    for (;;) {
      if (!this.running) throw new Error(`nats-server exited before it listened; see ${this.logFile}`);
      try {
        const ports = JSON.parse(await readFile(portsFile, 'utf8')) as { nats: string[] };
        this.url = ports.nats[0]!;
        this.port = Number(new URL(this.url).port);
        return;
      } catch {
        if (Date.now() > until) {
          this.killNow();
          throw new Error(`nats-server did not write ${portsFile} within 20 s; see ${this.logFile}`);
        }
        await sleep(25);
      }
    }
  }
}

/** An actor started through the CLI (`renderbus registry|scheduler|render-server`), with RENDERBUS_LOG=info. */
export class ActorMember extends Member {
  constructor(
    name: string,
    kind: Exclude<MemberKind, 'nats-server'>,
    logFile: string,
    private readonly args: () => string[],
    private readonly extraEnv: Record<string, string> = {},
  ) {
    super(name, kind, logFile);
  }

  protected command() {
    return {
      bin: process.execPath,
      args: [CLI, ...this.args()],
      env: { ...process.env, RENDERBUS_LOG: process.env.RENDERBUS_LOG ?? 'info', ...this.extraEnv },
    };
  }
}

export interface ChaosFarmOptions {
  dir: string;
  site: string;
  renderServers: number;
  slots: number;
  /** nats-servers: 1 (default), or 3 clustered (the journal R3). */
  natsServers?: number;
  /** Scheduler and registry processes (default 1 each; more once the lease lets standbys wait). */
  schedulers?: number;
  registries?: number;
}

/** The operator the driver acts as: it submits the jobs and follows the farm. */
export const CHAOS_OPERATOR = 'chaos';

/** The whole farm: its members, and a monitoring NATS connection that reconnects forever. */
export class ChaosFarm {
  readonly nats: NatsMember[] = [];
  readonly registries: ActorMember[] = [];
  readonly schedulers: ActorMember[] = [];
  readonly renderServers: ActorMember[] = [];
  readonly logsDir: string;
  nc: NatsConnection | null = null;

  constructor(readonly o: ChaosFarmOptions) {
    this.logsDir = join(o.dir, 'logs');
    const natsDir = join(o.dir, 'nats');
    const size = o.natsServers ?? 1;
    if (size === 1) this.nats.push(new NatsMember(natsDir, join(this.logsDir, 'nats-server.log')));
    else {
      // the route ports are chosen in start(); the block is read when a member starts
      for (let i = 1; i <= size; i++) {
        const cluster = () => ({ name: 'chaos', routes: this.routes, user: 'route', password: this.secret, listen: this.routes[i - 1]! });
        this.nats.push(new NatsMember(join(natsDir, `n${i}`), join(this.logsDir, `nats-${i}.log`), { name: `nats-${i}`, serverName: `n${i}`, cluster }));
      }
    }
    const global = (p: Principal) => ['--nats', this.servers().join(','), '--site', o.site, '--creds', localCredsPath(o.dir, p)];
    const numbered = (kind: string, n: number, i: number) => (n === 1 ? kind : `${kind}-${i}`);
    for (let i = 1; i <= (o.registries ?? 1); i++) {
      const name = numbered('registry', o.registries ?? 1, i);
      this.registries.push(new ActorMember(name, 'registry', join(this.logsDir, `${name}.log`), () => ['registry', ...global({ role: Role.Registry, name: Role.Registry })]));
    }
    for (let i = 1; i <= (o.schedulers ?? 1); i++) {
      const name = numbered('scheduler', o.schedulers ?? 1, i);
      this.schedulers.push(new ActorMember(name, 'scheduler', join(this.logsDir, `${name}.log`), () => ['scheduler', ...global({ role: Role.Scheduler, name: Role.Scheduler })]));
    }
    for (let i = 1; i <= o.renderServers; i++) {
      const host = `rs-${i}`;
      const args = () => ['render-server', '--host', host, '--slots', String(o.slots), ...global({ role: Role.RenderServer, name: host })];
      // renderers inherit the environment: CHAOS_HOST tells a frame script where it runs
      this.renderServers.push(new ActorMember(host, 'render-server', join(this.logsDir, `${host}.log`), args, { CHAOS_HOST: host }));
    }
  }

  /** Every process's principal: one credential each, issued once and kept across restarts. */
  principals(): Principal[] {
    return [
      { role: Role.Registry, name: Role.Registry },
      { role: Role.Scheduler, name: Role.Scheduler },
      ...this.renderServers.map((m) => ({ role: Role.RenderServer, name: m.name })),
      { role: Role.Operator, name: CHAOS_OPERATOR },
    ];
  }

  get site(): string {
    return this.o.site;
  }

  members(): Member[] {
    return [...this.nats, ...this.actors()];
  }

  actors(): ActorMember[] {
    return [...this.registries, ...this.schedulers, ...this.renderServers];
  }

  /** Every nats-server's client URL (known once each started: they keep their ports). */
  servers(): string[] {
    return this.nats.map((m) => m.url);
  }

  /** A cluster's route listeners, host:port in member order (chosen in start()), and their shared password. */
  private readonly routes: string[] = [];
  private readonly secret = randomBytes(16).toString('hex');

  /** Starts nats-server, the monitoring connection and every actor; waits until the farm serves. */
  async start(timeoutMs = 60_000): Promise<void> {
    await mkdir(this.logsDir, { recursive: true });
    const auth = await prepareSiteAuth(this.o.dir, this.site, this.principals());
    const natsDir = join(this.o.dir, 'nats');
    await mkdir(natsDir, { recursive: true, mode: 0o700 });
    await writeAuthConfig(natsDir, auth.users);
    const operator = auth.creds.get(keyOf({ role: Role.Operator, name: CHAOS_OPERATOR }))!;
    if (this.nats.length > 1) {
      // ports fixed up front: each member's routes name the others', and actors get every client URL
      for (const m of this.nats) {
        this.routes.push(`127.0.0.1:${await freePort()}`);
        m.port = await freePort();
      }
    }
    await Promise.all(this.nats.map((m) => m.start()));
    this.nc = await connect({
      servers: this.servers(),
      name: 'renderbus-chaos',
      authenticator: nkeyAuthenticator(new TextEncoder().encode(operator.seed)),
      inboxPrefix: inboxPrefix(operator),
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      waitOnFirstConnect: true,
      pingInterval: 5_000,
      maxPingOut: 2,
    });
    await Promise.all(this.actors().map((m) => m.start()));
    await this.waitServing(timeoutMs);
  }

  /** Until the registry lists every render server and the scheduler answers. */
  async waitServing(timeoutMs: number): Promise<void> {
    const want = this.renderServers.map((m) => m.name);
    await waitUntil('the farm to serve (the registry lists every render server, the scheduler answers)', async () => {
      const hosts = await this.hosts(1_000);
      if (!want.every((h) => hosts.some((x) => x.host === h))) return false;
      await this.jobs(1_000);
      return true;
    }, timeoutMs, 250);
  }

  /** SIGKILL every process at once (a power cut of the whole site). */
  async killAll(): Promise<void> {
    const ms = this.members();
    for (const m of ms) m.killNow();
    await Promise.all(ms.map((m) => m.waitExit()));
  }

  /** Starts every member that is not running: nats-server first, then the actors together. */
  async startMissing(): Promise<Member[]> {
    // a cluster's members together: one alone cannot elect a leader
    const started: Member[] = this.nats.filter((m) => !m.running);
    await Promise.all(started.map((m) => m.start()));
    const actors = this.actors().filter((m) => !m.running);
    await Promise.all(actors.map((m) => m.start()));
    return [...started, ...actors];
  }

  /** Stops everything: actors with SIGTERM (SIGKILL after a grace), then nats-server. */
  async stop(): Promise<void> {
    await Promise.all(this.actors().map((m) => m.kill('SIGTERM', 10_000)));
    await this.nc?.close().catch(() => {});
    this.nc = null;
    await Promise.all(this.nats.map((m) => m.kill('SIGTERM', 5_000)));
  }

  /** SIGKILL every child now, synchronously: for exit and signal handlers. */
  killNow(): void {
    for (const m of this.members()) m.killNow();
  }

  // --- requests ---------------------------------------------------------------------
  private client(): NatsConnection {
    if (!this.nc) throw new Error('the farm is not started');
    return this.nc;
  }

  async hosts(timeoutMs = 2_000): Promise<HostRecord[]> {
    return (await this.registryList(timeoutMs)).hosts;
  }

  async registryList(timeoutMs = 2_000): Promise<{ registryId: string; hosts: HostRecord[] }> {
    return listAllHosts(this.client(), this.site, { timeoutMs });
  }

  async jobs(timeoutMs = 2_000): Promise<JobSummary[]> {
    const body = await call(this.client(), subjects.schedQuery(this.site), codecs.queryRequest, { v: PROTOCOL_MAJOR, what: 'jobs' }, codecs.queryReply, { timeoutMs });
    if (!('jobs' in body)) throw new Error('sched.query answered without jobs');
    return body.jobs;
  }

  async job(jobId: string, timeoutMs = 5_000): Promise<JobDetail> {
    const body = await call(this.client(), subjects.schedQuery(this.site), codecs.queryRequest, { v: PROTOCOL_MAJOR, what: 'job', jobId }, codecs.queryReply, { timeoutMs });
    if (!('job' in body)) throw new Error('sched.query answered without a job');
    return body.job;
  }

  /** One submit request with a client-chosen job id (a retry of the same id is idempotent). */
  async submit(spec: JobSpec, jobId: string, timeoutMs = 5_000): Promise<{ jobId: string; frames: number; tasks: number }> {
    return call(this.client(), subjects.schedSubmit(this.site, CHAOS_OPERATOR), codecs.submitRequest, { v: PROTOCOL_MAJOR, spec, jobId }, codecs.submitReply, { timeoutMs });
  }
}

/** A port free on 127.0.0.1 now. */
function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => res(port));
    });
  });
}
