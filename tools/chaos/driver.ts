import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Subscription } from '@nats-io/transport-node';
import { codecs, eventFrames, FarmError, frameFileName, type JobDetail, type JobSummary } from '../../protocol/index.ts';
import { ChaosFarm, type Member, type MemberKind } from './farm.ts';
import { checkOutputs, concurrentAttempts, ledgerRuns, mulberry32, planWorkload, readLedgerEvents, uniform, type LedgerRun, type PlannedJob } from './workload.ts';

/*
 * The chaos driver (issue 3): a real farm as separate processes, jobs submitted while a
 * random process is killed with SIGKILL every few seconds and started again after a random
 * pause, once a whole-site kill; then every job must end done with every frame's output
 * present once and valid. Reports the frames rendered twice and how long each recovery took.
 * Every wait has a deadline and every child is killed at the end, also on Ctrl-C.
 */

export interface ChaosOptions {
  minutes?: number;
  /** Overrides minutes. */
  seconds?: number;
  seed?: number;
  /** Progress lines; default stderr. */
  log?: (line: string) => void;
  renderServers?: number;
  slots?: number;
  /** Fraction of the farm's capacity the command jobs fill (default 0.8). */
  load?: number;
  /** Frames of the POV-Ray animation (default 16; 0: none). */
  povFrames?: number;
  /** The whole-site kill; default when the chaos lasts 40 s or more. */
  siteKill?: boolean;
  /** How long the farm may take to finish after the chaos stops (default: max(180 s, the chaos time)). */
  settleTimeoutMs?: number;
  /** Give up waiting when no frame completes for this long (default 90 s). */
  stallTimeoutMs?: number;
  /** Keep the run's directory (logs, outputs) even when every check passed. */
  keep?: boolean;
  /** Three clustered nats-servers instead of one, killed one at a time (`--cluster`). */
  cluster?: boolean;
  /** Scheduler and registry processes (default 1 each). */
  schedulers?: number;
  registries?: number;
}

export type VictimKind = MemberKind | 'site';

export interface KillRecord {
  n: number;
  victim: string;
  kind: VictimKind;
  /** ms after the chaos started. */
  at: number;
  /** How long it stayed down (kill → restart), ms. */
  downMs?: number;
  /** Restart → it serves again (registry: lists every render server; render server: registered; scheduler: answers), ms. */
  readyMs?: number;
  /** Restart → the farm completes a frame again (a render server: a frame of that host), ms. */
  progressMs?: number;
  /** Kill → that progress, ms. */
  outageMs?: number;
  /** no-work: nothing was left to render; unmeasured: the run ended first. */
  status: 'pending' | 'recovered' | 'no-work' | 'timeout' | 'restart-failed' | 'interrupted' | 'unmeasured';
  /** Other victims down during this one's outage. */
  overlapped: string[];
  pid?: number;
}

export interface Crash {
  member: string;
  at: number;
  code: number | null;
  signal: string | null;
  logTail: string[];
}

export interface Check {
  name: string;
  ok: boolean;
  severity: 'fail' | 'warn';
  detail: string[];
}

export interface RenderedTwice {
  job: string;
  frame: number;
  runs: { taskId: string; attempt: number; host: string; endAt: number }[];
  /** The kills that likely lost the first run's result. */
  kills: string[];
  /** The likeliest of them. */
  cause: 'render-server' | 'site' | 'scheduler' | 'nats-server' | 'unexplained';
  note: string;
}

export interface JobOutcome {
  jobId: string;
  name: string;
  kind: 'command' | 'povray';
  frames: number;
  state: string;
  submitTries: number;
  /** ms after the chaos started. */
  acceptedAt?: number;
  finishedAt?: number;
  maxAttempt: number;
  valid: number;
}

export interface ChaosReport {
  ok: boolean;
  interrupted: boolean;
  seed: number;
  site: string;
  dir: string;
  dirKept: boolean;
  farm: { renderServers: number; slots: number };
  chaosMs: number;
  settleMs: number;
  totalMs: number;
  jobs: JobOutcome[];
  framesTotal: number;
  kills: KillRecord[];
  crashes: Crash[];
  renderedTwice: RenderedTwice[];
  /** Command frame runs that started and never completed (killed while rendering). */
  interruptedRuns: number;
  /** POV-Ray tasks with more than one finished run (from the task logs). */
  povrayTasksRenderedTwice: string[];
  duplicateDoneEvents: { jobId: string; frame: number; times: number }[];
  leftovers: { dirs: number; files: string[] };
  checks: Check[];
  /** What went wrong, with the evidence: job records, ledgers, actor log lines. */
  diagnostics: string[];
  /** Warnings and errors the actors logged, counted by actor and message. */
  logSummary: { member: string; level: string; msg: string; count: number }[];
}

interface DoneEvent {
  at: number;
  jobId: string;
  frame: number;
  host?: string;
  attempt?: number;
}

const TERMINAL = new Set(['done', 'failed', 'cancelled']);
const RECOVERY_TIMEOUT_MS = 120_000;

/** Runs the chaos suite and returns its report (also when checks fail); throws only when the farm cannot start. */
export async function runChaos(o: ChaosOptions = {}): Promise<ChaosReport> {
  const run = new ChaosRun(o, await mkdtemp(join(tmpdir(), 'renderbus-chaos-')));
  const onSignal = () => {
    if (run.aborted) {
      run.farm.killNow();
      process.exit(130);
    }
    run.abort();
  };
  const onExit = () => run.farm.killNow();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('exit', onExit);
  try {
    return await run.execute();
  } finally {
    run.farm.killNow();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('exit', onExit);
  }
}

class ChaosRun {
  readonly seed: number;
  readonly chaosMs: number;
  readonly farm: ChaosFarm;
  aborted = false;
  private readonly o: ChaosOptions;
  private readonly rnd: () => number;
  private readonly log: (line: string) => void;
  private readonly renderServers: number;
  private readonly slots: number;
  private t0 = Date.now();
  private phase: 'starting' | 'chaos' | 'settling' | 'stopping' = 'starting';
  private jobs: PlannedJob[] = [];
  private readonly kills: KillRecord[] = [];
  private readonly crashes: Crash[] = [];
  private readonly doneEvents: DoneEvent[] = [];
  private readonly failEvents: { at: number; jobId: string; frame: number; event: string; host?: string; attempt?: number; error?: string }[] = [];
  private readonly pollProgress: number[] = [];
  private polledDone = 0;
  private lastJobs: { at: number; jobs: JobSummary[] } | null = null;
  private lastRegistry: { at: number; registryId: string; hosts: { host: string; serverId: string; registeredAt: number }[] } | null = null;
  /** Members being restarted (by the chaos loop or after a crash): not to be killed meanwhile. */
  private readonly restarting = new Set<Member>();
  private readonly background = new Set<Promise<unknown>>();
  private readonly watchers = new Set<Promise<unknown>>();
  private readonly wakers = new Set<() => void>();

  constructor(o: ChaosOptions, readonly dir: string) {
    this.o = o;
    this.seed = o.seed ?? Math.floor(Math.random() * 1_000_000);
    this.chaosMs = Math.round(o.seconds !== undefined ? o.seconds * 1000 : (o.minutes ?? 2) * 60_000);
    this.rnd = mulberry32(this.seed);
    this.renderServers = o.renderServers ?? 3;
    this.slots = o.slots ?? 2;
    const started = Date.now();
    this.log = (line) => (o.log ?? ((l: string) => void process.stderr.write(`${l}\n`)))(`[chaos ${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s] ${line}`);
    const site = `chaos-${this.seed.toString(36)}-${randomBytes(2).toString('hex')}`;
    this.farm = new ChaosFarm({
      dir, site, renderServers: this.renderServers, slots: this.slots, natsServers: o.cluster ? 3 : 1,
      ...(o.schedulers !== undefined ? { schedulers: o.schedulers } : {}), ...(o.registries !== undefined ? { registries: o.registries } : {}),
    });
  }

  private stopping(): boolean {
    return this.phase === 'stopping';
  }

  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    this.log('interrupted: stopping the chaos and the farm (again to kill everything at once)');
    for (const w of this.wakers) w();
  }

  /** Sleeps ms, or less when the run is aborted. */
  private async pause(ms: number): Promise<void> {
    if (this.aborted || ms <= 0) return;
    await new Promise<void>((res) => {
      const done = () => {
        clearTimeout(t);
        this.wakers.delete(done);
        res();
      };
      const t = setTimeout(done, ms);
      this.wakers.add(done);
    });
  }

  private rel(at: number): number {
    return at - this.t0;
  }

  private watch(p: Promise<void>): void {
    const q = this.track(p).finally(() => this.watchers.delete(q));
    this.watchers.add(q);
  }

  private track<T>(p: Promise<T>): Promise<T> {
    const q = p.finally(() => this.background.delete(q));
    this.background.add(q);
    return q;
  }

  async execute(): Promise<ChaosReport> {
    const { dir, farm } = this;
    const started = Date.now();
    this.jobs = await planWorkload({
      dir,
      seed: this.seed,
      rnd: this.rnd,
      chaosMs: this.chaosMs,
      capacity: this.renderServers * this.slots,
      load: this.o.load ?? 0.8,
      povFrames: this.o.povFrames ?? 16,
    });
    const frames = this.jobs.reduce((n, j) => n + j.frames.length, 0);
    this.log(`seed ${this.seed}, ${(this.chaosMs / 1000).toFixed(0)} s of chaos, site ${farm.site}, directory ${dir}`);
    const count = (n: number, one: string, many: string) => (n === 1 ? one : `${n} ${many}`);
    const nats = count(farm.nats.length, 'nats-server', 'clustered nats-servers');
    this.log(`${this.jobs.length} jobs, ${frames} frames; farm: ${nats}, ${count(farm.registries.length, 'registry', 'registries')}, ${count(farm.schedulers.length, 'scheduler', 'schedulers')}, ${this.renderServers} render servers × ${this.slots} slots`);
    for (const m of farm.members()) m.onUnexpectedExit = (mem, e) => this.onCrash(mem, e.code, e.signal);

    let subs: Subscription[] = [];
    let settleMs = 0;
    let chaosEndedAt = Date.now();
    try {
      await farm.start(60_000);
      subs = this.subscribe();
      this.log('farm serving; chaos starts');
      this.t0 = Date.now();
      this.phase = 'chaos';
      const poller = this.track(this.pollLoop());
      const submissions = this.jobs.map((j) => this.track(this.submitLoop(j)));
      await this.chaosLoop();
      chaosEndedAt = Date.now();
      this.phase = 'settling';
      if (!this.aborted) this.log('chaos over: restarting whatever is down, then waiting for every job to end');
      await this.settleRestarts(30_000);
      if (!this.aborted) await this.restartMissing();
      const settleDeadline = Date.now() + (this.o.settleTimeoutMs ?? Math.max(180_000, this.chaosMs));
      await this.waitJobsEnd(settleDeadline, submissions);
      settleMs = Date.now() - chaosEndedAt;
      // the last recoveries resolve with the poller still running (no work left is seen by a poll)
      await Promise.race([Promise.allSettled([...this.watchers]), sleep(5_000)]);
      this.phase = 'stopping';
      for (const w of this.wakers) w();
      await Promise.race([poller, sleep(5_000)]);
    } catch (err) {
      this.phase = 'stopping';
      this.log(`run failed: ${(err as Error).message}`);
      throw Object.assign(err as Error, { chaosDir: dir });
    } finally {
      this.phase = 'stopping';
      for (const w of this.wakers) w();
    }

    // give pending recovery watchers a moment, then close them
    await Promise.race([Promise.allSettled([...this.background]), sleep(3_000)]);
    const details = await this.fetchDetails();
    const report = await this.verify(details, { dir, settleMs, totalMs: Date.now() - started });
    for (const s of subs) s.unsubscribe();
    this.log('stopping the farm');
    await Promise.race([farm.stop(), sleep(30_000)]);
    farm.killNow();
    if (report.ok && !this.o.keep) await rm(dir, { recursive: true, force: true }).catch(() => {});
    else report.dirKept = true;
    return report;
  }

  // --- watching the farm ----------------------------------------------------------------
  private subscribe(): Subscription[] {
    const nc = this.farm.nc!;
    const site = this.farm.site;
    const done = nc.subscribe(`rb.${site}.evt.frame.*.*.done`, {
      callback: (err, m) => {
        if (err) return;
        try {
          const e = codecs.frameEvent.decode(m.data);
          for (const f of eventFrames(e)) this.doneEvents.push({ at: Date.now(), jobId: e.jobId, frame: f.frame, ...(e.host ? { host: e.host } : {}), ...(e.attempt !== undefined ? { attempt: e.attempt } : {}) });
        } catch {
          /* not ours to judge */
        }
      },
    });
    const bad = ['failed', 'retrying'].map((event) =>
      nc.subscribe(`rb.${site}.evt.frame.*.*.${event}`, {
        callback: (err, m) => {
          if (err) return;
          try {
            const e = codecs.frameEvent.decode(m.data);
            for (const f of eventFrames(e)) this.failEvents.push({ at: Date.now(), jobId: e.jobId, frame: f.frame, event, ...(e.host ? { host: e.host } : {}), ...(e.attempt !== undefined ? { attempt: e.attempt } : {}), ...(e.error ? { error: e.error } : {}) });
          } catch {
            /* ignore */
          }
        },
      }),
    );
    return [done, ...bad];
  }

  /** Every second: the scheduler's job list (a rising done count is progress) and the registry's hosts. */
  private async pollLoop(): Promise<void> {
    let answered = false;
    while (this.phase !== 'stopping' && !this.aborted) {
      const at = Date.now();
      await Promise.all([
        this.farm.jobs(1_500).then(
          (jobs) => {
            this.lastJobs = { at: Date.now(), jobs };
            const done = jobs.reduce((n, j) => n + j.counts.done, 0);
            // a restarted scheduler's first answer says what it replayed, not new progress
            if (answered && done > this.polledDone) this.pollProgress.push(Date.now());
            this.polledDone = done;
            answered = true;
          },
          () => {
            answered = false;
          },
        ),
        this.farm.registryList(1_500).then(
          (r) => (this.lastRegistry = { at: Date.now(), registryId: r.registryId, hosts: r.hosts.map((h) => ({ host: h.host, serverId: h.serverId, registeredAt: h.registeredAt })) }),
          () => {},
        ),
      ]);
      await this.pause(1_000 - (Date.now() - at));
    }
  }

  /** First time after `t` the farm (or, with host, that host) completed a frame. */
  private progressAfter(t: number, host?: string): number | undefined {
    let best: number | undefined;
    for (const e of this.doneEvents) {
      if (e.at > t && (host === undefined || e.host === host)) {
        best = e.at;
        break;
      }
    }
    if (host === undefined) {
      const p = this.pollProgress.find((x) => x > t);
      if (p !== undefined && (best === undefined || p < best)) best = p;
    }
    return best;
  }

  /** Nothing left to render as of a poll after t: every job ended (or, for one host, nothing queued). */
  private noWorkAfter(t: number, host?: string): boolean {
    const snap = this.lastJobs;
    if (!snap || snap.at <= t) return false;
    if (this.jobs.some((j) => j.acceptedAt === undefined)) return false;
    if (host !== undefined) return snap.jobs.every((j) => j.counts.queued === 0);
    return snap.jobs.every((j) => TERMINAL.has(j.state));
  }

  // --- submitting ----------------------------------------------------------------------
  private async submitLoop(job: PlannedJob): Promise<void> {
    await this.pause(this.t0 + job.submitAtMs - Date.now());
    let lastErr = '';
    while (!this.aborted && this.phase !== 'stopping') {
      job.tries += 1;
      try {
        const r = await this.farm.submit(job.spec, job.jobId, 5_000);
        job.acceptedAt = Date.now();
        this.log(`submitted ${job.name} (${r.frames} frames in ${r.tasks} tasks)${job.tries > 1 ? ` after ${job.tries} tries (${lastErr})` : ''}`);
        return;
      } catch (err) {
        const fe = FarmError.from(err);
        lastErr = `${fe.code}: ${fe.message.slice(0, 100)}`;
        if (!fe.retryable && fe.code !== 'RB_SCHEDULER_UNAVAILABLE' && fe.code !== 'RB_REMOTE_UNKNOWN') {
          job.submitError = lastErr;
          this.log(`submitting ${job.name} was refused: ${lastErr}`);
          return;
        }
      }
      await this.pause(500);
    }
    job.submitError ??= `never accepted after ${job.tries} tries (last: ${lastErr})`;
  }

  // --- chaos ---------------------------------------------------------------------------
  private async chaosLoop(): Promise<void> {
    const end = this.t0 + this.chaosMs;
    const siteKill = this.o.siteKill ?? this.chaosMs >= 40_000;
    let siteKillAt = siteKill ? this.t0 + Math.round(this.chaosMs * 0.6) : Infinity;
    let next = this.t0 + uniform(this.rnd, 2_000, 4_000);
    while (!this.aborted) {
      const wake = Math.min(next, siteKillAt);
      if (wake >= end) break;
      await this.pause(wake - Date.now());
      if (this.aborted) break;
      if (Date.now() >= siteKillAt) {
        siteKillAt = Infinity;
        await this.siteKill();
        next = Date.now() + uniform(this.rnd, 2_000, 5_000);
        continue;
      }
      // a cluster keeps its quorum: one nats-server down at a time
      const natsDown = this.farm.nats.some((m) => !m.running || this.restarting.has(m));
      const candidates = this.farm.members().filter((m) => m.running && !this.restarting.has(m) && !(m.kind === 'nats-server' && natsDown));
      const victim = candidates[Math.floor(this.rnd() * candidates.length)];
      if (victim) await this.killMember(victim);
      next += uniform(this.rnd, 2_000, 6_000);
    }
    await this.settleRestarts(30_000);
  }

  private newKill(victim: string, kind: VictimKind): KillRecord {
    const k: KillRecord = { n: this.kills.length + 1, victim, kind, at: this.rel(Date.now()), status: 'pending', overlapped: [] };
    this.kills.push(k);
    return k;
  }

  private async killMember(m: Member): Promise<void> {
    const k = this.newKill(m.name, m.kind);
    const prev = this.lastRegistry;
    const prevServerId = prev?.hosts.find((h) => h.host === m.name)?.serverId;
    k.pid = m.pid;
    this.restarting.add(m);
    await m.kill('SIGKILL');
    const pauseMs = Math.round(uniform(this.rnd, 500, 5_000));
    this.log(`#${k.n} kill -9 ${m.name} (pid ${k.pid}); restart in ${(pauseMs / 1000).toFixed(1)} s`);
    let restartAt: number | undefined;
    const restarted = this.track(
      (async () => {
        await this.pause(pauseMs);
        try {
          if (!this.aborted) {
            await this.startWithRetries(m);
            restartAt = Date.now();
            k.downMs = restartAt - this.t0 - k.at;
          }
        } finally {
          this.restarting.delete(m);
        }
      })(),
    );
    this.watch(
      this.watchRecovery(k, () => restartAt, restarted, {
        ready: async () => this.memberReady(m, prev?.registryId, prevServerId),
        host: m.kind === 'render-server' ? m.name : undefined,
      }),
    );
  }

  private async siteKill(): Promise<void> {
    await this.settleRestarts(30_000);
    const k = this.newKill('site', 'site');
    this.log(`#${k.n} whole-site kill: kill -9 every process at once`);
    await this.farm.killAll();
    const pauseMs = Math.round(uniform(this.rnd, 500, 3_000));
    await this.pause(pauseMs);
    let restartAt: number | undefined;
    const restarted = (async () => {
      if (this.aborted) return;
      await this.restartMissing();
      restartAt = Date.now();
      k.downMs = restartAt - this.t0 - k.at;
      this.log(`#${k.n} whole site started again after ${(pauseMs / 1000).toFixed(1)} s`);
    })();
    await restarted;
    this.watch(
      this.watchRecovery(k, () => restartAt, restarted, {
        ready: async () => {
          const r = await this.farm.registryList(1_000);
          if (!this.farm.renderServers.every((rs) => r.hosts.some((h) => h.host === rs.name))) return false;
          await this.farm.jobs(1_000);
          return true;
        },
      }),
    );
  }

  /** Whether a restarted member serves again. */
  private async memberReady(m: Member, prevRegistryId: string | undefined, prevServerId: string | undefined): Promise<boolean> {
    switch (m.kind) {
      case 'nats-server': {
        await this.farm.jobs(1_000);
        await this.farm.registryList(1_000);
        return true;
      }
      case 'registry': {
        const r = await this.farm.registryList(1_000);
        if (prevRegistryId !== undefined && r.registryId === prevRegistryId) return false;
        const running = this.farm.renderServers.filter((rs) => rs.running).map((rs) => rs.name);
        return running.every((h) => r.hosts.some((x) => x.host === h));
      }
      case 'scheduler':
        await this.farm.jobs(1_000);
        return true;
      case 'render-server': {
        const r = await this.farm.registryList(1_000);
        const h = r.hosts.find((x) => x.host === m.name);
        return h !== undefined && h.serverId !== prevServerId;
      }
    }
  }

  /** Measures one recovery: restart → ready → the farm (or that host) completes a frame. */
  private async watchRecovery(k: KillRecord, restartAt: () => number | undefined, restarted: Promise<void>, how: { ready: () => Promise<boolean>; host?: string | undefined }): Promise<void> {
    await restarted.catch(() => {});
    const r = restartAt();
    if (r === undefined) {
      k.status = this.aborted ? 'interrupted' : 'restart-failed';
      return;
    }
    const deadline = r + RECOVERY_TIMEOUT_MS;
    while (k.readyMs === undefined && Date.now() < deadline && !this.aborted && this.phase !== 'stopping') {
      const ok = await how.ready().catch(() => false);
      if (ok) k.readyMs = Date.now() - r;
      else await this.pause(200);
    }
    while (!this.aborted && Date.now() < deadline) {
      const p = this.progressAfter(r, how.host);
      if (p !== undefined) {
        k.progressMs = p - r;
        k.outageMs = p - (this.t0 + k.at);
        k.status = 'recovered';
        return;
      }
      if (this.noWorkAfter(r, how.host)) {
        k.status = 'no-work';
        return;
      }
      if (this.phase === 'stopping') break;
      await this.pause(100);
    }
    k.status = this.aborted ? 'interrupted' : Date.now() >= deadline ? 'timeout' : 'unmeasured';
  }

  private async startWithRetries(m: Member): Promise<void> {
    for (let i = 1; ; i++) {
      try {
        await m.start();
        return;
      } catch (err) {
        this.log(`could not start ${m.name} (try ${i}): ${(err as Error).message}`);
        if (i >= 5 || this.aborted) throw err;
        await this.pause(1_000);
      }
    }
  }

  /** Starts every member that is down and not being restarted (after a crash, or at the end). */
  private async restartMissing(): Promise<void> {
    for (let i = 1; ; i++) {
      try {
        const started = await this.farm.startMissing();
        if (started.length > 0 && this.phase === 'settling') this.log(`started ${started.map((m) => m.name).join(', ')}`);
        return;
      } catch (err) {
        this.log(`could not start the farm again (try ${i}): ${(err as Error).message}`);
        if (i >= 5 || this.aborted) throw err;
        await this.pause(1_000);
      }
    }
  }

  private async settleRestarts(timeoutMs: number): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (this.restarting.size > 0 && Date.now() < until) await sleep(100);
  }

  private onCrash(m: Member, code: number | null, signal: string | null): void {
    const at = Date.now();
    this.log(`!! ${m.name} exited on its own (code ${code}, signal ${signal})`);
    const crash: Crash = { member: m.name, at: this.rel(at), code, signal, logTail: [] };
    this.crashes.push(crash);
    void this.track(
      (async () => {
        crash.logTail = await m.logTail(25);
        if (this.phase === 'stopping' || this.aborted || this.restarting.has(m)) return;
        this.restarting.add(m);
        try {
          await this.pause(1_000);
          if (!m.running && !this.stopping() && !this.aborted) await this.startWithRetries(m);
        } catch (err) {
          this.log(`could not restart ${m.name} after its crash: ${(err as Error).message}`);
        } finally {
          this.restarting.delete(m);
        }
      })(),
    );
  }

  // --- the end -------------------------------------------------------------------------
  private async waitJobsEnd(deadline: number, submissions: Promise<void>[]): Promise<void> {
    const stallMs = this.o.stallTimeoutMs ?? 90_000;
    let lastDone = -1;
    let lastChange = Date.now();
    let lastLog = 0;
    while (!this.aborted) {
      const settled = await Promise.race([Promise.all(submissions).then(() => true), sleep(0).then(() => false)]);
      const accepted = this.jobs.filter((j) => j.acceptedAt !== undefined);
      let jobs: JobSummary[] | null = null;
      try {
        jobs = await this.farm.jobs(2_000);
      } catch {
        /* the scheduler may still be coming back */
      }
      if (jobs) {
        const mine = accepted.map((j) => jobs.find((x) => x.jobId === j.jobId));
        const done = jobs.reduce((n, j) => n + j.counts.done + j.counts.failed, 0);
        if (done !== lastDone) {
          lastDone = done;
          lastChange = Date.now();
        }
        const open = mine.filter((x) => !x || !TERMINAL.has(x.state));
        if (settled && open.length === 0) {
          this.log(`every job ended (${accepted.length} of ${this.jobs.length} accepted)`);
          return;
        }
        if (Date.now() - lastLog > 10_000) {
          lastLog = Date.now();
          const total = jobs.reduce((n, j) => n + j.counts.total, 0);
          this.log(`waiting: ${done} of ${total} frames ended, ${open.length} jobs open`);
        }
      }
      if (Date.now() - lastChange > stallMs) {
        this.log(`stalled: no frame ended for ${(stallMs / 1000).toFixed(0)} s; giving up waiting`);
        return;
      }
      if (Date.now() > deadline) {
        this.log('timed out waiting for the jobs to end');
        return;
      }
      await this.pause(1_000);
    }
  }

  private async fetchDetails(): Promise<Map<string, JobDetail>> {
    const out = new Map<string, JobDetail>();
    const until = Date.now() + 20_000;
    for (const j of this.jobs) {
      if (j.acceptedAt === undefined) continue;
      while (Date.now() < until) {
        try {
          out.set(j.jobId, await this.farm.job(j.jobId, 5_000));
          break;
        } catch (err) {
          if (err instanceof FarmError && err.code === 'RB_UNKNOWN_JOB') break;
          await sleep(500);
        }
      }
    }
    return out;
  }

  private async verify(details: Map<string, JobDetail>, r: { dir: string; settleMs: number; totalMs: number }): Promise<ChaosReport> {
    const checks: Check[] = [];
    const diagnostics: string[] = [];
    const check = (name: string, detail: string[], severity: 'fail' | 'warn' = 'fail') => checks.push({ name, ok: detail.length === 0, severity, detail });
    const logs = await readLogs(this.farm.members(), this.t0);
    // a task is named `<job>.<index>` by render servers and by jobId + taskIndex fields in the scheduler's log
    const taskLines = (taskId: string, max = 14) => {
      const dot = taskId.lastIndexOf('.');
      const byId = new RegExp(`${taskId.replace(/[.]/g, '\\.')}(?![0-9])`);
      const byFields = new RegExp(`"taskIndex":${taskId.slice(dot + 1)}[,}]`);
      const job = `"jobId":"${taskId.slice(0, dot)}"`;
      return logs
        .filter((l) => byId.test(l.text) || (l.text.includes(job) && byFields.test(l.text)))
        .slice(-max)
        .map((l) => `    ${l.member} ${l.line}`);
    };

    // submissions
    check('every job accepted by the scheduler', this.jobs.filter((j) => j.acceptedAt === undefined).map((j) => `${j.name}: ${j.submitError ?? 'not accepted'}`));

    // crashes
    check('no actor died on its own', this.crashes.map((c) => `${c.member} at ${(c.at / 1000).toFixed(1)} s: code ${c.code}, signal ${c.signal}`));
    for (const c of this.crashes) diagnostics.push(`${c.member} exited on its own at ${(c.at / 1000).toFixed(1)} s; its log ended with:\n${c.logTail.map((l) => `    ${l}`).join('\n')}`);

    // job states and records
    const notDone: string[] = [];
    const recordProblems: string[] = [];
    const outcomes: JobOutcome[] = [];
    const outputProblems: string[] = [];
    const leftoverFiles: string[] = [];
    let leftoverDirs = 0;
    const renderedTwice: RenderedTwice[] = [];
    let interruptedRuns = 0;
    const sameAttemptTwice: string[] = [];
    for (const j of this.jobs) {
      const d = details.get(j.jobId);
      const out = await checkOutputs(j);
      leftoverFiles.push(...out.leftoverFiles);
      leftoverDirs += out.leftoverDirs.length;
      outcomes.push({
        jobId: j.jobId,
        name: j.name,
        kind: j.kind,
        frames: j.frames.length,
        state: d?.state ?? (j.acceptedAt === undefined ? 'not submitted' : 'unknown to the scheduler'),
        submitTries: j.tries,
        ...(j.acceptedAt !== undefined ? { acceptedAt: this.rel(j.acceptedAt) } : {}),
        ...(d?.finishedAt !== undefined ? { finishedAt: this.rel(d.finishedAt) } : {}),
        maxAttempt: d ? Math.max(0, ...d.frames.map((f) => f.attempt)) : 0,
        valid: out.valid,
      });
      if (j.acceptedAt === undefined) continue;
      if (!d) {
        notDone.push(`${j.name}: the scheduler does not know it`);
        continue;
      }
      if (d.state !== 'done') {
        const c = d.counts;
        notDone.push(`${j.name}: ${d.state} (done ${c.done}, failed ${c.failed}, running ${c.running}, queued ${c.queued} of ${c.total})${d.waiting ? `, waiting: ${d.waiting}` : ''}`);
        diagnostics.push(await this.explainJob(j, d, taskLines));
      }
      for (const f of d.frames) {
        const want = join(j.outDir, frameFileName(j.pattern, f.frame));
        if (f.state !== 'done') continue; // counted above
        if (f.output !== want) recordProblems.push(`${j.name} frame ${f.frame}: recorded output ${f.output ?? '(none)'}, expected ${want}`);
      }
      if (d.state === 'done' || out.problems.length > 0) {
        for (const p of out.problems) outputProblems.push(`${j.name}: ${p}`);
        if (out.problems.length > 0 && d.state === 'done') diagnostics.push(await this.explainOutputs(j, d, out.problems, taskLines));
      }
      if (j.kind === 'command') {
        const events = await readLedgerEvents(j);
        const runs = ledgerRuns(events);
        for (const c of concurrentAttempts(events)) sameAttemptTwice.push(`${j.name}: task ${c.task} (frames ${c.frames.join(',')}) on two slots at once, seen at ${(this.rel(c.at) / 1000).toFixed(1)} s`);
        interruptedRuns += runs.filter((x) => x.endAt === undefined).length;
        renderedTwice.push(...this.twice(j, runs, logs.filter((l) => l.member === 'scheduler' && l.text.startsWith('{'))));
      }
    }
    check('every job done', notDone);
    check('every frame recorded done with its final output path', recordProblems);
    check('every frame output present exactly once and valid', outputProblems);
    check('no task attempt ran on two slots at once (they share one work dir)', sameAttemptTwice, 'warn');
    check('no partial files left in .rb-partial (runs killed before delivery)', leftoverFiles.length > 0 ? [`${leftoverFiles.length} files in ${leftoverDirs} work dirs, e.g. ${leftoverFiles.slice(0, 3).join(', ')}`] : [], 'warn');

    // the scheduler's announcements
    const seen = new Map<string, number>();
    for (const e of this.doneEvents) seen.set(`${e.jobId} ${e.frame}`, (seen.get(`${e.jobId} ${e.frame}`) ?? 0) + 1);
    const dupDone = [...seen].filter(([, n]) => n > 1).map(([k, n]) => ({ jobId: k.split(' ')[0]!, frame: Number(k.split(' ')[1]), times: n }));
    check('each frame announced done once (frame done events)', dupDone.slice(0, 10).map((x) => `${this.nameOf(x.jobId)} frame ${x.frame}: ${x.times} done events`), 'warn');
    const failedFrames = this.failEvents.filter((e) => e.event === 'failed' || e.event === 'retrying');
    if (failedFrames.length > 0) {
      const byError = new Map<string, number>();
      for (const e of failedFrames) {
        const key = `${e.event}: ${(e.error ?? '?').replace(/\/\S+/g, '<path>').slice(0, 160)}`;
        byError.set(key, (byError.get(key) ?? 0) + 1);
      }
      diagnostics.push(`frame failures announced during the run (a retry is fine, 'failed' is final):\n${[...byError].map(([k, n]) => `    ${n} × ${k}`).join('\n')}`);
    }

    // recoveries
    for (const k of this.kills) {
      const from = this.t0 + k.at;
      const to = from + (k.outageMs ?? (k.downMs ?? 0) + (k.readyMs ?? 0));
      k.overlapped = this.kills
        .filter((o) => o !== k)
        .filter((o) => {
          const of = this.t0 + o.at;
          const ot = of + (o.downMs ?? 0) + (o.readyMs ?? 0);
          return of < to && ot > from;
        })
        .map((o) => `#${o.n} ${o.victim}`);
    }
    check('every recovery measured (the farm completed frames again after each restart)', this.kills.filter((k) => k.status === 'timeout' || k.status === 'restart-failed').map((k) => `#${k.n} ${k.victim} at ${(k.at / 1000).toFixed(1)} s: ${k.status}`), 'warn');

    const povTwice = await povrayRerenders(this.jobs);
    const ok = !this.aborted && checks.every((c) => c.ok || c.severity === 'warn');
    if (!ok) diagnostics.push(`actor logs: ${this.farm.logsDir}`);
    return {
      ok,
      interrupted: this.aborted,
      seed: this.seed,
      site: this.farm.site,
      dir: r.dir,
      dirKept: false,
      farm: { renderServers: this.renderServers, slots: this.slots },
      chaosMs: this.chaosMs,
      settleMs: r.settleMs,
      totalMs: r.totalMs,
      jobs: outcomes,
      framesTotal: this.jobs.reduce((n, j) => n + j.frames.length, 0),
      kills: this.kills,
      crashes: this.crashes,
      renderedTwice,
      interruptedRuns,
      povrayTasksRenderedTwice: povTwice,
      duplicateDoneEvents: dupDone,
      leftovers: { dirs: leftoverDirs, files: leftoverFiles },
      checks,
      diagnostics,
      logSummary: summarizeLogs(logs),
    };
  }

  private nameOf(jobId: string): string {
    return this.jobs.find((j) => j.jobId === jobId)?.name ?? jobId;
  }

  /**
   * Frames of a command job that completed more than once, each with its likely cause: the kill
   * that lost the first run's result. The render server that rendered it died before its result
   * was taken; or the scheduler (or the whole site, or nats-server) went down around then.
   */
  private twice(j: PlannedJob, runs: LedgerRun[], schedulerLines: LogLine[]): RenderedTwice[] {
    const byFrame = new Map<number, LedgerRun[]>();
    for (const x of runs) if (x.endAt !== undefined) byFrame.set(x.frame, [...(byFrame.get(x.frame) ?? []), x]);
    const out: RenderedTwice[] = [];
    const sec = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
    for (const [frame, list] of byFrame) {
      if (list.length < 2) continue;
      list.sort((a, b) => a.endAt! - b.endAt!);
      const first = list[0]!;
      const firstEnd = first.endAt!;
      const secondStart = list[1]!.startAt ?? list[1]!.endAt!;
      const between = (k: KillRecord, from: number) => this.t0 + k.at >= from && this.t0 + k.at <= secondStart;
      const causes: string[] = [];
      let cause: RenderedTwice['cause'] = 'unexplained';
      const hostKill = this.kills.find((k) => (k.victim === first.host || k.kind === 'site') && between(k, firstEnd));
      if (hostKill) cause = hostKill.kind === 'site' ? 'site' : 'render-server';
      if (hostKill) causes.push(`#${hostKill.n} ${hostKill.kind === 'site' ? 'whole-site kill' : `kill of ${first.host}`} ${sec(this.t0 + hostKill.at - firstEnd)} after the first run ended, before its result was taken`);
      const sched = this.kills.find((k) => k.kind === 'scheduler' && between(k, firstEnd - 10_000));
      if (sched && cause === 'unexplained') cause = 'scheduler';
      if (sched) causes.push(`#${sched.n} scheduler kill ${sec(Math.abs(this.t0 + sched.at - firstEnd))} ${this.t0 + sched.at < firstEnd ? 'before' : 'after'} the first run ended`);
      const nats = this.kills.find((k) => k.kind === 'nats-server' && between(k, firstEnd - 10_000));
      if (nats && cause === 'unexplained') cause = 'nats-server';
      if (nats) causes.push(`#${nats.n} nats-server kill ${sec(Math.abs(this.t0 + nats.at - firstEnd))} ${this.t0 + nats.at < firstEnd ? 'before' : 'after'} the first run ended`);
      if (causes.length === 0) causes.push('no kill of its host, the scheduler or nats-server explains it');
      const notes: string[] = [];
      const attempts = list.map((x) => x.attempt);
      if (new Set(attempts).size < attempts.length) notes.push('one attempt number used twice (attempts are not journaled: a restarted scheduler counts afresh)');
      if (list.some((x, i) => i > 0 && x.startAt !== undefined && x.startAt < list[i - 1]!.endAt!)) notes.push('two runs overlapped in time');
      // what the scheduler said about this task's results ('stale result ignored': a finished frame thrown away)
      const taskIndex = first.taskId.slice(j.jobId.length + 1);
      const said = schedulerLines
        .filter((l) => l.text.includes(`"${j.jobId}"`) && new RegExp(`"taskIndex":${taskIndex}[,}]`).test(l.text))
        .map((l) => {
          const rec = JSON.parse(l.text) as { msg: string; attempt?: number; current?: number };
          return `${rec.msg}${rec.attempt !== undefined ? ` (attempt ${rec.attempt}${rec.current !== undefined ? `, scheduler at ${rec.current}` : ''})` : ''}`;
        });
      if (said.length > 0) notes.push(`scheduler: ${[...new Set(said)].join('; ')}`);
      out.push({
        job: j.name,
        frame,
        runs: list.map((x) => ({ taskId: x.taskId, attempt: x.attempt, host: x.host, endAt: this.rel(x.endAt!) })),
        kills: causes,
        cause,
        note: notes.join('; '),
      });
    }
    return out.sort((a, b) => a.runs[0]!.endAt - b.runs[0]!.endAt);
  }

  /** Why a job did not end done: its frames that did not, their ledger runs and the actors' lines about their tasks. */
  private async explainJob(j: PlannedJob, d: JobDetail, taskLines: (taskId: string, max?: number) => string[]): Promise<string> {
    const bad = d.frames.filter((f) => f.state !== 'done');
    const runs = ledgerRuns(await readLedgerEvents(j));
    const lines = [`job ${j.name} (${j.jobId}) ended ${d.state}; ${bad.length} frames not done:`];
    const tasks = new Set<number>();
    const at = (t: number | undefined) => (t === undefined ? '?' : `${(this.rel(t) / 1000).toFixed(1)}s`);
    for (const f of bad.slice(0, 8)) {
      const fr = runs.filter((x) => x.frame === f.frame).map((x) => `a${x.attempt} ${at(x.startAt)}→${x.endAt !== undefined ? `${at(x.endAt)} completed` : 'interrupted'}`);
      lines.push(`  frame ${f.frame}: ${f.state}, task ${f.taskIndex}, attempt ${f.attempt}, host ${f.host ?? '-'}/${f.slot ?? '-'}, leased at ${at(f.startedAt)}${f.error ? `, error: ${f.error}` : ''}${fr.length ? `; ledger runs: ${fr.join(', ')}` : ''}`);
      if (f.state === 'running' && f.startedAt !== undefined) {
        // a lease the scheduler still holds although what held it died
        const after = this.kills.filter((k) => this.t0 + k.at >= f.startedAt! && (k.victim === f.host || k.kind === 'site' || k.kind === 'nats-server' || k.kind === 'registry'));
        if (after.length > 0) lines.push(`    still leased after: ${after.map((k) => `#${k.n} ${k.victim} at ${(k.at / 1000).toFixed(1)}s`).join(', ')} (the lease was never released)`);
      }
      tasks.add(f.taskIndex);
    }
    for (const t of [...tasks].slice(0, 3)) {
      const id = `${j.jobId}.${t}`;
      const l = taskLines(id);
      lines.push(`  actor log lines about task ${id}:`, ...(l.length ? l : ['    (none)']));
    }
    const kills = this.kills.map((k) => `#${k.n} ${k.victim}@${(k.at / 1000).toFixed(1)}s`).join(' ');
    lines.push(`  kills: ${kills}`);
    return lines.join('\n');
  }

  private async explainOutputs(j: PlannedJob, d: JobDetail, problems: string[], taskLines: (taskId: string, max?: number) => string[]): Promise<string> {
    const runs = ledgerRuns(await readLedgerEvents(j));
    const lines = [`job ${j.name} is done but its output is wrong:`];
    for (const p of problems.slice(0, 6)) {
      lines.push(`  ${p}`);
      const m = /^frame (\d+):/.exec(p);
      if (!m) continue;
      const frame = Number(m[1]);
      const f = d.frames.find((x) => x.frame === frame);
      if (f) {
        lines.push(`    record: task ${f.taskIndex}, attempt ${f.attempt}, host ${f.host ?? '-'}/${f.slot ?? '-'}, output ${f.output ?? '-'}`);
        lines.push(`    ledger: ${runs.filter((x) => x.frame === frame).map((x) => `${x.taskId}-a${x.attempt}${x.endAt !== undefined ? ' completed' : ' interrupted'}`).join(', ') || '(no runs)'}`);
        lines.push(...taskLines(`${j.jobId}.${f.taskIndex}`, 10));
      }
    }
    return lines.join('\n');
  }
}

// --- logs ----------------------------------------------------------------------------------
interface LogLine {
  member: string;
  level: number;
  msg: string;
  /** "+12.3s LEVEL msg {fields}" */
  line: string;
  text: string;
}

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };

/** Every member's log, JSON lines decoded (nats-server's plain lines kept as they are). */
async function readLogs(members: Member[], t0: number): Promise<LogLine[]> {
  const out: LogLine[] = [];
  for (const m of members) {
    const text = await readFile(m.logFile, 'utf8').catch(() => '');
    for (const raw of text.split('\n')) {
      if (raw.trim() === '') continue;
      let rec: Record<string, unknown> | null = null;
      if (raw.startsWith('{')) {
        try {
          rec = JSON.parse(raw) as Record<string, unknown>;
        } catch {
          rec = null;
        }
      }
      if (!rec) {
        const level = /\[(ERR|FTL)\]/.test(raw) ? 50 : /\[WRN\]/.test(raw) ? 40 : raw.startsWith('=== chaos') ? 30 : 30;
        out.push({ member: m.name, level, msg: raw.replace(/^\S+ \S+ \[\d+\] /, '').slice(0, 160), line: raw.slice(0, 300), text: raw });
        continue;
      }
      const { level, time, msg, pid: _p, hostname: _h, name: _n, ...rest } = rec;
      const t = typeof time === 'number' ? `+${((time - t0) / 1000).toFixed(1)}s` : '';
      const lv = LEVELS[level as number] ?? String(level);
      const fields = JSON.stringify(rest);
      out.push({ member: m.name, level: Number(level), msg: String(msg), line: `${t} ${lv} ${String(msg)} ${fields}`.slice(0, 400), text: raw });
    }
  }
  return out;
}

function summarizeLogs(logs: LogLine[]): ChaosReport['logSummary'] {
  const counts = new Map<string, { member: string; level: string; msg: string; count: number }>();
  for (const l of logs) {
    if (l.level < 40) continue;
    const member = l.member.startsWith('rs-') ? 'render servers' : l.member;
    const key = `${member}\u0000${l.level}\u0000${l.msg}`;
    const c = counts.get(key) ?? { member, level: LEVELS[l.level] ?? String(l.level), msg: l.msg, count: 0 };
    c.count += 1;
    counts.set(key, c);
  }
  return [...counts.values()].sort((a, b) => b.count - a.count);
}

/** POV-Ray tasks whose logs (one per attempt, in .rb-logs) show more than one finished render. */
async function povrayRerenders(jobs: PlannedJob[]): Promise<string[]> {
  const out: string[] = [];
  for (const j of jobs.filter((x) => x.kind === 'povray')) {
    const dir = join(j.outDir, '.rb-logs');
    const files = await readdir(dir).catch(() => [] as string[]);
    const finished = new Map<string, number>();
    for (const f of files) {
      const m = /^(.+)-a\d+\.log$/.exec(f);
      if (!m) continue;
      const text = await readFile(join(dir, f), 'utf8').catch(() => '');
      if (/POV-Ray finished/.test(text)) finished.set(m[1]!, (finished.get(m[1]!) ?? 0) + 1);
    }
    for (const [task, n] of finished) if (n > 1) out.push(`${task} (${n} finished attempts)`);
  }
  return out;
}
