import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { call } from '../bus/index.ts';
import {
  aboutFrames, codecs, FarmError, frameFileName, PROTOCOL_MAJOR, subjects,
  type ErrorCode, type HeldLease, type LeaseState, type SlotInfo, type TaskAssignment, type TaskResult,
} from '../../protocol/index.ts';
import { SLOT_RESULT_RETRY_BASE_MS, SLOT_RESULT_RETRY_MAX_MS } from './machine.ts';
import type { RenderSlotOptions, SlotFactory, SlotHandle } from './runtime.ts';
import { ResultTimeout } from './result-timeout.ts';
import type { SimStats, TaskSource } from './sim-stats.ts';
import type { SimTimer, SimTimers } from './sim-timers.ts';

/** How simulated slots render: by waiting. */
export interface SimulationOptions {
  /** How long one frame "renders", in ms; a task of n frames takes n times as long. */
  frameMs: number;
  /** Each render lasts frameMs × (1 ± jitter), uniformly spread (0 to 1; default 0). */
  jitter?: number;
  /** The fraction of tasks that fail (RB_RENDER_FAILED), to exercise retries (default 0). */
  failRate?: number;
  /** One timer for every simulated slot of the process. */
  timers: SimTimers;
  /** Shared by every simulated slot of the process. */
  stats: SimStats;
  /** How long to wait for `sched.result` replies (default: as a real slot, one per host). */
  resultTimeout?: ResultTimeout;
  /** Random numbers in [0, 1) (tests make them predictable). */
  random?: () => number;
  /**
   * While it returns true, a result the scheduler did not take is dropped rather than sent
   * again (a farm stopping for good, whose scheduler is gone: no 8 s of retries per host).
   */
  giveUp?: () => boolean;
}

/** What a simulated slot is told: the simulation, and the same identity a real slot gets. */
export type SimulatedSlotOptions = SimulationOptions & Pick<RenderSlotOptions, 'nc' | 'site' | 'host' | 'serverId' | 'index' | 'log' | 'resultTimeout'>;

type Phase = 'idle' | 'rendering' | 'reporting' | 'retrying' | 'stopped';
type Ended = Omit<TaskResult, 'v' | 'host' | 'wantNext' | 'want'>;

/** What the slots of one render server share (subjects, settings): made once per host, not per slot. */
interface HostShared {
  nc: NatsConnection;
  site: string;
  host: string;
  serverId: string;
  log: Logger;
  resultSubject: string;
  slotSubject: string;
  frameMs: number;
  jitter: number;
  failRate: number;
  resultTimeout: ResultTimeout;
  timers: SimTimers;
  stats: SimStats;
  random: () => number;
  giveUp: () => boolean;
}

/** Slots that render by waiting (SimulatedSlot), for startRenderServer's `slotFactory`. */
export function simulatedSlots(sim: SimulationOptions): SlotFactory {
  if (!(sim.frameMs >= 0)) throw new FarmError('RB_BAD_ARGUMENT', `frameMs must be 0 or more milliseconds, not ${sim.frameMs}`);
  const jitter = sim.jitter ?? 0;
  if (!(jitter >= 0 && jitter <= 1)) throw new FarmError('RB_BAD_ARGUMENT', `jitter must be from 0 to 1, not ${jitter}`);
  const failRate = sim.failRate ?? 0;
  if (!(failRate >= 0 && failRate <= 1)) throw new FarmError('RB_BAD_ARGUMENT', `failRate must be from 0 to 1, not ${failRate}`);
  let last: HostShared | null = null;
  return (o) => {
    // a render server makes its slots one after another: they share one HostShared
    if (!last || last.nc !== o.nc || last.host !== o.host || last.serverId !== o.serverId || last.site !== o.site || last.log !== o.log) last = shared({ ...sim, ...o });
    return new SimulatedSlot(last, o.index);
  };
}

/** One simulated slot on its own (tests); a farm makes them through simulatedSlots. */
export function startSimulatedSlot(o: SimulatedSlotOptions): SlotHandle {
  return new SimulatedSlot(shared(o), o.index);
}

function shared(o: SimulatedSlotOptions): HostShared {
  return {
    nc: o.nc, site: o.site, host: o.host, serverId: o.serverId, log: o.log,
    resultSubject: subjects.schedResult(o.site, o.host), slotSubject: subjects.hostEvent(o.site, o.host, 'slot'),
    frameMs: o.frameMs, jitter: o.jitter ?? 0, failRate: o.failRate ?? 0, resultTimeout: o.resultTimeout ?? new ResultTimeout(),
    timers: o.timers, stats: o.stats, random: o.random ?? Math.random, giveUp: o.giveUp ?? (() => false),
  };
}

/**
 * A render slot that renders by waiting `frameMs` per frame and reports a `done` result with
 * plausible figures (wall time as waited, CPU a little below it, a few GB of peak memory, a couple
 * of MB written per frame, output paths from the job's pattern; no file is written). Everything
 * it says on the bus is what a real slot (runtime.ts) says, in the same order: slot events on
 * idle ↔ busy, frame `started` events with `waitMs`, `sched.result` with `want` 2 (nothing to
 * render) or 1 (it started the task it held), a task in hand started at once while the finished
 * task's result goes in the background, results retried with the same backoff until taken, and
 * the same leases in the lease reports.
 *
 * It is a plain object, not the slot machine: a task costs the xstate machine ~280 µs of CPU
 * (four invoked actors, each with an AbortController; measured), and 20,000 tasks a second would
 * need more cores than the whole test machine has. And a class, not closures: under tsx every
 * closure carries a `name` property (~250 bytes), and a farm holds 160,000 slots. The render
 * server around it is the real one.
 */
class SimulatedSlot implements SlotHandle {
  readonly index: number;
  private readonly h: HostShared;
  private phase: Phase = 'idle';
  private current: TaskAssignment | null = null;
  /** The ended task's result, while it is reported in the foreground. */
  private ended: Ended | null = null;
  private startedAt = 0;
  /** Date.now() when the current task started (lease reports say it). */
  private startedWall = 0;
  private renderTimer: SimTimer | null = null;
  private retryTimer: SimTimer | null = null;
  private reportAttempts = 0;
  /** When the slot last became free for work: when it sent the result of its last task. */
  private idleSince = performance.now();
  private reportedOnce = false;
  private draining = false;
  private stopped = false;
  private readonly held: TaskAssignment[] = [];
  /** Results sent in the background and not yet taken, by task id (their leases are still ours). */
  private unacked: Map<string, TaskResult> | null = null;
  private reporting: Set<Promise<void>> | null = null;
  /** Background reports sleep on this between tries; retryNow() wakes them all. */
  private wake: { promise: Promise<void>; resolve: () => void } | null = null;
  private phaseWaiters: Set<() => void> | null = null;
  private slotInfo: SlotInfo;

  constructor(h: HostShared, index: number) {
    this.h = h;
    this.index = index;
    this.slotInfo = { index, state: 'idle', since: Date.now() };
  }

  info(): SlotInfo {
    return this.slotInfo;
  }

  isIdle(): boolean {
    return this.phase === 'idle';
  }

  task(): TaskAssignment | null {
    return this.current;
  }

  assign(t: TaskAssignment, receivedAt: number): void {
    if (this.phase === 'idle') this.start(t, Math.max(0, receivedAt - this.idleSince), 'assign');
  }

  cancel(reason: string, code: ErrorCode = 'RB_RENDER_FAILED'): void {
    if (this.phase !== 'rendering') return; // as a real slot: a result being reported stays
    this.renderTimer?.cancel();
    this.renderTimer = null;
    this.finish({ code, message: `task killed: ${reason}` });
  }

  drain(): void {
    this.draining = true;
    // tasks in hand go back at once, so other slots can take them while this one finishes
    for (const t of this.held.splice(0)) this.reportInBackground(this.handBack(t));
    if (this.phase === 'idle') this.slotChanged(null);
  }

  undrain(): void {
    this.draining = false;
    if (this.phase === 'idle') this.slotChanged(null);
  }

  heldTasks(): string[] {
    return this.held.map((t) => t.taskId);
  }

  dropHeld(taskId: string, attempt?: number): boolean {
    const i = this.held.findIndex((t) => t.taskId === taskId && (attempt === undefined || t.attempt === attempt));
    if (i < 0) return false;
    this.held.splice(i, 1);
    return true;
  }

  returnHeld(taskId: string, attempt?: number): boolean {
    const i = this.held.findIndex((t) => t.taskId === taskId && (attempt === undefined || t.attempt === attempt));
    if (i < 0) return false;
    this.reportInBackground(this.handBack(this.held.splice(i, 1)[0]!));
    return true;
  }

  leases(): HeldLease[] {
    const out: HeldLease[] = [];
    const add = (t: { taskId: string; jobId: string; taskIndex: number; attempt: number }, state: LeaseState) =>
      out.push({ taskId: t.taskId, jobId: t.jobId, taskIndex: t.taskIndex, attempt: t.attempt, slot: this.index, state });
    if (this.current && this.phase !== 'idle' && this.phase !== 'stopped') {
      add(this.current, this.phase === 'rendering' ? 'running' : 'reporting');
      out[out.length - 1]!.startedAt = this.startedWall;
    }
    for (const t of this.held) add(t, 'held');
    for (const r of this.unacked?.values() ?? []) add(r, 'reporting');
    return out;
  }

  async settled(timeoutMs: number): Promise<void> {
    const until = performance.now() + timeoutMs;
    await this.phaseIn(['idle', 'retrying', 'stopped'], timeoutMs);
    const left = until - performance.now();
    if (this.reporting && this.reporting.size > 0 && left > 0) {
      let t: NodeJS.Timeout | undefined;
      await Promise.race([Promise.allSettled([...this.reporting]), new Promise((r) => (t = setTimeout(r, left)))]);
      clearTimeout(t);
    }
  }

  heldResult(): string | null {
    return this.phase === 'retrying' ? (this.ended?.taskId ?? null) : null;
  }

  retryNow(): void {
    const w = this.wake;
    this.wake = null;
    w?.resolve();
    if (this.phase === 'retrying') {
      this.retryTimer?.cancel();
      this.retryTimer = null;
      this.setPhase('reporting');
      void this.sendResult();
    }
  }

  stop(): void {
    this.stopped = true;
    this.held.length = 0; // their leases go back to the queue when the registry reports this host gone
    this.renderTimer?.cancel();
    this.retryTimer?.cancel();
    if (this.slotInfo.state === 'busy') this.h.stats.busy -= 1;
    this.slotInfo = { index: this.index, state: 'idle', since: Date.now() };
    this.setPhase('stopped');
  }

  private setPhase(p: Phase): void {
    this.phase = p;
    if (this.phaseWaiters) for (const w of [...this.phaseWaiters]) w();
  }

  private log(): Logger {
    // made when needed (rarely): a child logger per slot costs more than these slots ever say
    return this.h.log.child({ actor: 'render-slot', slot: this.index, simulated: true });
  }

  /** The task's `started` event (one for all its frames, as a real slot's). */
  private publishStarted(t: TaskAssignment, waitMs: number): void {
    const { nc, site, host } = this.h;
    const about = aboutFrames(t.frames);
    try {
      nc.publish(
        subjects.frameEvent(site, t.jobId, about.frame, 'started'),
        codecs.frameEvent.encode({ v: PROTOCOL_MAJOR, jobId: t.jobId, ...about, event: 'started', at: Date.now(), host, slot: this.index, attempt: t.attempt, waitMs }),
      );
    } catch (err) {
      this.log().warn({ err }, 'could not publish a started event');
    }
  }

  private slotChanged(t: TaskAssignment | null): void {
    const was = this.slotInfo.state;
    const since = Date.now();
    this.slotInfo = t
      ? { index: this.index, state: 'busy', taskId: t.taskId, jobId: t.jobId, frames: [...t.frames], since }
      : { index: this.index, state: this.draining ? 'draining' : 'idle', since };
    if (was === this.slotInfo.state) return; // busy → busy is news to nobody (runtime.ts)
    if (this.slotInfo.state === 'busy') this.h.stats.busy += 1;
    else if (was === 'busy') this.h.stats.busy -= 1;
    try {
      this.h.nc.publish(this.h.slotSubject, codecs.hostEvent.encode({ v: PROTOCOL_MAJOR, host: this.h.host, event: 'slot', at: since, serverId: this.h.serverId, slot: this.slotInfo }));
    } catch (err) {
      this.log().warn({ err }, 'could not publish slot event');
    }
  }

  private start(t: TaskAssignment, waitMs: number, source: TaskSource): void {
    const { stats, random } = this.h;
    this.current = t;
    this.ended = null;
    this.startedAt = performance.now();
    this.startedWall = Date.now();
    this.setPhase('rendering');
    stats.started += 1;
    stats.startedFrom[source] += 1;
    stats.framesStarted += t.frames.length;
    // a slot's first task waited for the farm to start, not for the scheduler to answer a result
    if (this.reportedOnce) stats.wait.add(waitMs);
    this.slotChanged(t);
    this.publishStarted(t, waitMs);
    let ms = this.h.frameMs * t.frames.length * (1 + this.h.jitter * (2 * random() - 1));
    const late = t.timeLimitMs !== undefined && ms > t.timeLimitMs;
    if (late) ms = t.timeLimitMs!;
    this.renderTimer = this.h.timers.after(ms, () => this.rendered(t, late));
  }

  private rendered(t: TaskAssignment, late: boolean): void {
    this.renderTimer = null;
    if (this.phase !== 'rendering' || this.current !== t) return;
    if (late) this.finish({ code: 'RB_TIMEOUT', message: `task killed: it ran past the job's time limit of ${t.timeLimitMs! / 1000} s` });
    else if (this.h.failRate > 0 && this.h.random() < this.h.failRate) this.finish({ code: 'RB_RENDER_FAILED', message: `simulated failure on ${this.h.host}` }); // a host's own: the same text from several hosts would be the job's
    else this.finish();
  }

  /** The render ended (or was killed): sum it up and report it. */
  private finish(error?: { code: string; message: string }): void {
    const { stats, random } = this.h;
    const t = this.current!;
    const wallMs = Math.round(performance.now() - this.startedAt);
    const status = error ? (error.code === 'RB_DRAINING' ? 'returned' : 'failed') : 'done';
    const outputs = status === 'done' ? t.frames.map((frame) => ({ frame, path: join(t.outputDir, frameFileName(t.outputPattern, frame)) })) : [];
    const r: Ended = {
      taskId: t.taskId, jobId: t.jobId, taskIndex: t.taskIndex, attempt: t.attempt, slot: this.index, status, outputs,
      ...(error ? { error } : {}),
      stats: {
        wallMs,
        cpuMs: Math.round(wallMs * (0.9 + 0.08 * random())),
        peakRssKb: Math.round(1_500_000 + 2_500_000 * random()),
        bytesWritten: status === 'done' ? t.frames.length * Math.round(1_000_000 + 2_000_000 * random()) : 0,
      },
    };
    if (status === 'done') {
      stats.done += 1;
      stats.framesDone += t.frames.length;
    } else if (status === 'failed') stats.failed += 1;
    else stats.returned += 1;
    const next = this.held.shift();
    if (next) {
      // a task in hand: start it now, report this one meanwhile (retried until taken)
      this.reportInBackground({ v: PROTOCOL_MAJOR, host: this.h.host, ...r, wantNext: !this.draining, want: this.draining ? 0 : 1 });
      this.start(next, 0, 'hand');
      return;
    }
    this.ended = r;
    this.reportAttempts = 0;
    this.setPhase('reporting');
    void this.sendResult();
  }

  /** Reports the ended task and waits for the reply, which may carry the next task (and one for the hand). */
  private async sendResult(): Promise<void> {
    const { nc, host, stats } = this.h;
    const r = this.ended!;
    const msg: TaskResult = { v: PROTOCOL_MAJOR, host, ...r, wantNext: !this.draining, want: this.draining ? 0 : 2 };
    this.idleSince = performance.now();
    this.reportedOnce = true;
    try {
      const reply = await this.send(msg, this.reportAttempts);
      stats.resultRtt.add(performance.now() - this.idleSince);
      if (this.phase !== 'reporting' || this.ended !== r) return; // stopped meanwhile
      if (reply.next && reply.following) this.held.push(reply.following);
      if (reply.next) this.start(reply.next, performance.now() - this.idleSince, 'reply');
      else this.becomeIdle();
    } catch (err) {
      if (this.phase !== 'reporting' || this.ended !== r) return;
      if (err instanceof FarmError && err.retryable && !this.h.giveUp()) {
        stats.resultRetries += 1;
        this.reportAttempts += 1;
        this.setPhase('retrying');
        this.retryTimer = this.h.timers.after(retryDelay(this.reportAttempts - 1), () => this.retry(r));
      } else {
        stats.resultsDropped += 1;
        this.log().error({ err, taskId: r.taskId }, 'scheduler refused the task result');
        this.becomeIdle();
      }
    }
  }

  private retry(r: Ended): void {
    this.retryTimer = null;
    if (this.phase !== 'retrying' || this.ended !== r) return;
    this.setPhase('reporting');
    void this.sendResult();
  }

  private becomeIdle(): void {
    this.current = null;
    this.ended = null;
    this.setPhase('idle');
    this.slotChanged(null);
    // a task that came in hand while the slot was reporting must not wait for a next result
    if (this.held.length > 0 && !this.stopped) {
      queueMicrotask(() => {
        const t = this.held.shift();
        if (t) this.take(t, 'hand');
      });
    }
  }

  /** A task that arrived while the slot was busy is held; an idle slot starts it. */
  private take(t: TaskAssignment, source: TaskSource): void {
    if (!this.stopped && this.phase === 'idle' && this.held.length === 0) this.start(t, Math.max(0, performance.now() - this.idleSince), source);
    else this.held.push(t);
  }

  /** Reports a result while the slot renders its next task; retried with backoff until taken. */
  private reportInBackground(msg: TaskResult): void {
    const unacked = (this.unacked ??= new Map());
    const reporting = (this.reporting ??= new Set());
    unacked.set(msg.taskId, msg);
    const p = this.sendInBackground(msg).finally(() => {
      reporting.delete(p);
      if (unacked.get(msg.taskId) === msg) unacked.delete(msg.taskId);
    });
    reporting.add(p);
  }

  private async sendInBackground(msg: TaskResult): Promise<void> {
    const { nc, stats } = this.h;
    for (let attempt = 0; ; attempt++) {
      const sentAt = performance.now();
      try {
        const reply = await this.send(msg, attempt);
        stats.resultRtt.add(performance.now() - sentAt);
        if (reply.next) this.take(reply.next, 'reply');
        if (reply.following) this.take(reply.following, 'reply');
        return;
      } catch (err) {
        if (this.stopped || !(err instanceof FarmError && err.retryable) || this.h.giveUp()) {
          stats.resultsDropped += 1;
          this.log().error({ err, taskId: msg.taskId }, 'scheduler refused the task result');
          return;
        }
        stats.resultRetries += 1;
        const wake = (this.wake ??= signal());
        await Promise.race([new Promise<void>((r) => this.h.timers.after(retryDelay(attempt), r)), wake.promise]);
      }
    }
  }

  /** Sends a result once (its `attempt`-th time), waiting as the host's ResultTimeout says, as a real slot does. */
  private send(msg: TaskResult, attempt: number) {
    const { nc, resultSubject, resultTimeout } = this.h;
    return resultTimeout.send(attempt, (timeoutMs) => call(nc, resultSubject, codecs.taskResult, msg, codecs.taskResultReply, { timeoutMs, unavailable: 'RB_SCHEDULER_UNAVAILABLE' }));
  }

  /** A task given back unrendered (the server drains): queued again at the scheduler, no attempt used. */
  private handBack(t: TaskAssignment): TaskResult {
    return {
      v: PROTOCOL_MAJOR, host: this.h.host, taskId: t.taskId, jobId: t.jobId, taskIndex: t.taskIndex, attempt: t.attempt, slot: this.index,
      status: 'returned', outputs: [], stats: { wallMs: 0, cpuMs: 0, peakRssKb: 0, bytesWritten: 0 }, wantNext: false, want: 0,
    };
  }

  /** Resolves once the phase is one of `phases` (or after timeoutMs). */
  private phaseIn(phases: readonly Phase[], timeoutMs: number): Promise<void> {
    if (phases.includes(this.phase)) return Promise.resolve();
    const waiters = (this.phaseWaiters ??= new Set());
    return new Promise((resolve) => {
      const t = setTimeout(finished, timeoutMs);
      const check = () => {
        if (phases.includes(this.phase)) finished();
      };
      waiters.add(check);
      function finished() {
        clearTimeout(t);
        waiters.delete(check);
        resolve();
      }
    });
  }
}

function retryDelay(attempt: number): number {
  return Math.min(SLOT_RESULT_RETRY_MAX_MS, SLOT_RESULT_RETRY_BASE_MS * 2 ** attempt);
}

/** A promise and the function that resolves it (Promise.withResolvers arrives with Node 22). */
function signal(): { promise: Promise<void>; resolve: () => void } {
  let resolve: () => void = () => {};
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}
