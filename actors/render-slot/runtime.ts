import { chown, mkdir, readdir } from 'node:fs/promises';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { assign, createActor, fromPromise, type ActorRefFrom } from 'xstate';
import { call, timedOut } from '../bus/index.ts';
import {
  aboutFrames, codecs, FarmError, formatFrames, frameFileName, PROTOCOL_MAJOR, subjects,
  type ErrorCode, type LiveStats, type HeldLease, type LeaseState, type SlotInfo, type TaskAssignment, type TaskResult,
} from '../../protocol/index.ts';
import type { Invocation, Progress, RenderAdapter } from './adapters/index.ts';
import { ResultTimeout } from './result-timeout.ts';
import { checkProgram, checkScene } from './input-check.ts';
import { checkFrames } from './frame-check.ts';
import { renderSlotMachine, SLOT_RESULT_RETRY_BASE_MS, SLOT_RESULT_RETRY_MAX_MS, type PreparedTask, type RenderOutcome, type ReportOutput, type SlotResult } from './machine.ts';
import { moveFrames, outputDiskFull, prepareDirs, removeOtherRuns, removeWorkDir, sizeFrames, taskPaths } from './output.ts';
import { runProcess, sampleTree, type ProcessExit } from './process.ts';
import { rendererEnv } from './renderer-env.ts';
import type { Launcher } from './launcher.ts';
import { TaskLog } from './task-log.ts';
import { inputBinds, sandboxArgv, sandboxLimits } from './sandbox.ts';
import type { SandboxHost } from './sandbox-host.ts';

export type AdapterLookup = (renderer: string) => RenderAdapter;

/** How messages name the host: `host node-7`, or `this host` when the caller did not say. */
const hostWords = (host: string | undefined): string => (host !== undefined ? `host ${host}` : 'this host');

/**
 * Validates a task, checks that this host can see its scene and has its programs, creates its
 * private directories and plans its processes. A task this host cannot render fails here, before
 * any renderer starts and before anything is written: RB_INPUT_NOT_FOUND, RB_RENDERER_MISSING.
 */
export async function prepareTask(task: TaskAssignment, adapters: AdapterLookup, host?: string, sandbox?: Promise<SandboxHost | null>): Promise<PreparedTask> {
  const adapter = adapters(task.renderer);
  const paths = taskPaths(task.outputDir, task.taskId, task.attempt, host !== undefined ? `${host}.${task.slot}` : undefined);
  frameFileName(task.outputPattern, task.frames[0] ?? 0); // a bad pattern fails now, not after rendering
  const renderTask = {
    renderer: task.renderer,
    scene: task.scene,
    command: task.command,
    frames: task.frames,
    resolution: task.resolution,
    ...(task.blender ? { blender: task.blender } : {}),
    ...(task.progress !== undefined ? { progress: task.progress } : {}),
    ...(task.errors ? { errors: task.errors } : {}),
    ...(task.sceneErrors ? { sceneErrors: task.sceneErrors } : {}),
    outputPattern: task.outputPattern,
    workDir: paths.workDir,
  };
  const invocations = adapter.plan(renderTask);
  const check = adapter.frameCheck?.(renderTask);
  const frameSize = check ? { frameCheck: check } : {};
  const where = hostWords(host);
  const box = task.sandbox;
  const sandboxHost = box ? await sandbox : null;
  if (box && !sandboxHost) throw new FarmError('RB_RENDERER_MISSING', `the job renders in the sandbox, and ${where} cannot run one (bubblewrap missing, or no user namespaces)`);
  // a peer's job names its files by their paths at the studio: here they are in its tree
  const onHost = (p: string) => (box?.root !== undefined ? join(box.root, p) : p);
  await checkScene(onHost(task.scene), where);
  const path = rendererEnv(task.env).PATH!;
  const programs = new Map(invocations.map((inv) => [`${inv.cwd}\0${inv.argv[0]!}`, inv]));
  for (const inv of programs.values()) await checkProgram(inv.argv[0]!, { cwd: onHost(inv.cwd), path, where });
  // a command that writes no files of ours (`true`, or output elsewhere) needs no work dir; a
  // sandboxed one does: it is the one place it may write
  const workDirUsed = box !== undefined || invocations.some((inv) => inv.outputs.length > 0 || inv.argv.some((a) => a.includes(paths.workDir)));
  await prepareDirs(paths, task.outputDir, { workDir: workDirUsed });
  if (workDirUsed) await removeOtherRuns(task.outputDir, task.taskId, task.attempt, paths.workDir);
  if (!box || !sandboxHost) return { ...paths, workDirUsed, invocations, ...frameSize };
  const tops = box.root !== undefined ? await readdir(box.root) : undefined;
  const sandboxInputs = inputBinds({ ...(box.root !== undefined ? { root: box.root, tops } : {}), files: box.files ?? [task.scene] });
  // the work dir's mount point must exist beneath a folder bound read-only over it
  if (box.root !== undefined && tops!.includes(paths.workDir.split('/')[1]!)) await mkdir(join(box.root, paths.workDir), { recursive: true });
  if (sandboxHost.runAs) await chown(paths.workDir, sandboxHost.runAs.uid, sandboxHost.runAs.gid);
  return { ...paths, workDirUsed, invocations, sandboxInputs, ...frameSize };
}

export interface RenderTaskOptions {
  adapters: AdapterLookup;
  /** This host's name, for error messages. */
  host?: string;
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
  killGraceMs?: number;
  /** Told when the task's log could not be written (the render goes on). */
  onLogError?: (err: Error) => void;
  /** Told whenever the renderer prints something: a sign of life for the stall limit. */
  onActivity?: () => void;
  /** The fork server renderers start from (launcher.ts); without it they are spawned directly. */
  launcher?: Launcher;
  /** How this host sandboxes (sandbox-host.ts), for tasks that ask for it. */
  sandbox?: Promise<SandboxHost | null>;
  /** Told of the renderer's memory (resident, whole process tree) at every /proc sample. */
  onMemory?: (rssKb: number) => void;
  /** Told of the task's process figures every `statsEveryMs` while a process runs (one timer per running task). */
  onStats?: (s: LiveStats) => void;
  /** Default 2000 ms. */
  statsEveryMs?: number;
}

/**
 * Runs a prepared task's processes in order, streaming their output to the task's log and the
 * adapter's parser, and stops at the first failure. A renderer that failed, was cancelled or
 * could not start (RB_RENDERER_MISSING) is a failed outcome, not a throw.
 */
export async function renderTask(task: TaskAssignment, prepared: PreparedTask, o: RenderTaskOptions): Promise<RenderOutcome> {
  const adapter = o.adapters(task.renderer);
  const log = new TaskLog(prepared.logFile, (err) => o.onLogError?.(err), task.outputDir);
  const usage = { wallMs: 0, cpuMs: 0, peakRssKb: 0 };
  const produced: { frame: number; file: string }[] = [];
  let error: { code: string; message: string } | undefined;
  let spoke = false; // whether the renderer printed anything
  const taskStarted = performance.now();
  const env = rendererEnv(task.env); // never the render server's own: it holds the farm's secrets
  try {
    for (const inv of prepared.invocations) {
      if (o.signal?.aborted) {
        error = { code: 'RB_RENDER_FAILED', message: 'task cancelled' };
        break;
      }
      const parser = adapter.parser(inv, o.onProgress ?? (() => {}), env);
      const boxed = prepared.sandboxInputs ? await sandboxed(o, task, adapter, prepared, inv, env) : null;
      const proc = runProcess({
        argv: boxed?.argv ?? inv.argv,
        cwd: boxed ? '/' : inv.cwd,
        env: boxed?.env ?? env,
        onOutput: (stream, text) => {
          spoke = true;
          o.onActivity?.();
          parser.push(stream, text);
        },
        log,
        signal: o.signal,
        killGraceMs: o.killGraceMs,
        launcher: o.launcher,
        ...(o.onMemory ? { onSample: (u: { rssKb: number }) => o.onMemory!(u.rssKb) } : {}),
      });
      const stopStats = o.onStats ? liveStats(proc, taskStarted, { ...usage }, o.statsEveryMs ?? 2_000, o.onStats) : () => {};
      let exit: ProcessExit;
      try {
        exit = await proc.exited;
      } catch (err) {
        stopStats();
        const fe = FarmError.from(err, 'RB_RENDER_FAILED');
        error = { code: fe.code, message: fe.message };
        log.write(`[could not start: ${fe.message}]\n`);
        break;
      }
      stopStats();
      parser.end();
      usage.wallMs += exit.usage.wallMs;
      usage.cpuMs += exit.usage.cpuMs;
      usage.peakRssKb = Math.max(usage.peakRssKb, exit.usage.peakRssKb);
      const failedAnyway = exit.code === 0 && !exit.cancelled ? parser.failureDespiteExit0?.(hostWords(o.host)) : undefined;
      if (exit.code === 0 && !exit.cancelled && !failedAnyway) {
        produced.push(...inv.outputs);
        continue;
      }
      if (failedAnyway) {
        error = failedAnyway;
        break;
      }
      const finished = new Set(parser.finishedFrames());
      produced.push(...inv.outputs.filter((out) => finished.has(out.frame)));
      error = exit.cancelled
        ? { code: 'RB_RENDER_FAILED', message: 'task cancelled' }
        : exit.signal === 'SIGKILL'
          ? // nobody here sent it: on Linux that is, as a rule, the kernel's out-of-memory killer
            { code: 'RB_OUT_OF_MEMORY', message: `${failureText(inv.argv[0]!, exit, parser.errorText())} (most likely by the kernel's out-of-memory killer; peak ${Math.round(exit.usage.peakRssKb / 1024)} MB)` }
          : // the adapter may tell whose fault it was (a broken scene, input this host cannot see)
            (parser.diagnose?.(hostWords(o.host)) ?? { code: 'RB_RENDER_FAILED', message: failureText(inv.argv[0]!, exit, parser.errorText()) });
      break;
    }
  } finally {
    // not awaited: the log reaches the disk a moment later, off the path to the next frame.
    // A task that succeeded without a word leaves no log: there is nothing to read, and at
    // hundreds of frames a second the file costs more than the frame (its figures are in the job).
    void log.close({ discard: !spoke && !error });
  }
  return error ? { status: 'failed', produced, error, usage } : { status: 'done', produced, usage };
}

/** An invocation's argv and environment inside the sandbox (sandbox.ts): bwrap's, with the renderer's inside. */
async function sandboxed(o: RenderTaskOptions, task: TaskAssignment, adapter: RenderAdapter, prepared: PreparedTask, inv: Invocation, env: Record<string, string>): Promise<{ argv: string[]; env: Record<string, string> }> {
  const host = await o.sandbox;
  if (!host) throw new FarmError('RB_RENDERER_MISSING', 'this host cannot run the sandbox the task needs');
  // the task's memory and time as kernel limits too: a backstop under the slot's own watch
  const limits = sandboxLimits({ ...(task.memoryLimitMb !== undefined ? { memoryLimitMb: task.memoryLimitMb } : {}), ...(task.timeLimitMs !== undefined ? { timeLimitMs: task.timeLimitMs } : {}), cpus: cpus().length });
  // a program named by its path outside the system (/opt/tool/bin/x) is shown with its folder
  const program = inv.argv[0]!;
  const own = program.startsWith('/') && !/^\/(usr|bin|sbin|lib|lib64)\//.test(program) ? [dirname(program)] : [];
  const plan = { bwrap: host.bwrap, ...(host.runAs ? { runAs: host.runAs } : {}), inputs: prepared.sandboxInputs!, workDir: prepared.workDir, extra: [...(adapter.sandboxPaths ?? []), ...own], ...(limits ? { limits } : {}) };
  return { argv: sandboxArgv(plan, inv.argv, inv.cwd, env), env: { PATH: '/usr/bin:/bin' } };
}

/**
 * Samples a running process's tree (with its I/O counters) every `everyMs` and reports the
 * task's figures so far: `before` holds what the task's earlier processes cost. Returns the stop.
 */
function liveStats(proc: { readonly pid: number | undefined }, taskStarted: number, before: { cpuMs: number; peakRssKb: number }, everyMs: number, report: (s: LiveStats) => void): () => void {
  let lastCpuMs = before.cpuMs;
  let lastAt = performance.now();
  let peak = before.peakRssKb;
  let stopped = false;
  const timer = setInterval(() => {
    if (proc.pid === undefined) return;
    void sampleTree(proc.pid, { io: true }).then((t) => {
      if (!t || stopped) return;
      const now = performance.now();
      const cpuMs = before.cpuMs + t.ticks * 10;
      peak = Math.max(peak, t.peakKb);
      const cpuPercent = now > lastAt ? Math.max(0, ((cpuMs - lastCpuMs) / (now - lastAt)) * 100) : 0;
      lastCpuMs = cpuMs;
      lastAt = now;
      report({
        wallMs: Math.round(now - taskStarted), cpuMs, cpuPercent: Math.round(cpuPercent * 10) / 10, rssKb: t.rssKb, peakRssKb: peak,
        ...(t.readBytes !== undefined ? { readBytes: t.readBytes, writtenBytes: t.writtenBytes ?? 0 } : {}),
      });
    }, () => {});
  }, everyMs);
  timer.unref();
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}

function failureText(bin: string, exit: ProcessExit, text: string): string {
  const how = exit.code !== null ? `exited with code ${exit.code}` : `was killed by ${exit.signal}`;
  return text.trim() === '' ? `${bin} ${how}` : `${bin} ${how}: ${text.trim()}`;
}

/**
 * Moves the finished frames into place, removes the work dir and sums up the task. A frame
 * the renderer was expected to write but did not turns a done task into a failed one.
 */
export async function deliverTask(task: TaskAssignment, prepared: PreparedTask | null, outcome: RenderOutcome, slot: number): Promise<SlotResult> {
  let outputs: { frame: number; path: string }[] = [];
  let bytes = 0;
  let error = outcome.error;
  let full: string | undefined;
  if (prepared?.workDirUsed) {
    // a frame must be one (it decodes, of the size asked) before it takes its place over another
    const checked = await checkFrames(outcome.produced, prepared.frameCheck);
    const { moved, missing: moveFailed } = await moveFrames(task.outputDir, task.outputPattern, checked.good);
    const unmoved: { frame: number; file: string; reason: string; errno?: string }[] = [...moveFailed, ...checked.bad];
    // judged before the work dir goes: a half-written frame in it is what filled the disk
    if (unmoved.length > 0 || storageMayBeToBlame(error)) full = await outputDiskFull(task.outputDir, { errnos: unmoved.map((m) => m.errno), text: error?.message });
    // the frames are out: measuring them and removing the work dir can go together
    const [sized] = await Promise.all([sizeFrames(moved), removeWorkDir(prepared.workDir).catch(() => {})]);
    outputs = sized.stored.map(({ frame, path }) => ({ frame, path }));
    for (const s of sized.stored) bytes += s.bytes;
    const missing = [...unmoved, ...sized.missing].sort((a, b) => a.frame - b.frame);
    if (missing.length > 0 && !error) {
      const m = missing[0]!;
      const more = missing.length > 1 ? ` (and ${missing.length - 1} more frames)` : '';
      error = { code: 'RB_OUTPUT_FAILED', message: `frame ${m.frame}: ${m.reason}${more}` };
    }
  } else if (storageMayBeToBlame(error)) full = await outputDiskFull(task.outputDir, { text: error?.message });
  // a full output disk is the storage's fault, not the renderer's or the host's: a code of its
  // own, which the scheduler neither counts against the host nor as a used attempt
  if (full && error && storageMayBeToBlame(error)) {
    error = { code: 'RB_OUTPUT_DISK_FULL', message: error.message.includes('no space left on the output disk') ? error.message : `${full}: ${error.message}` };
  }
  return {
    taskId: task.taskId,
    jobId: task.jobId,
    taskIndex: task.taskIndex,
    attempt: task.attempt,
    slot,
    // stopped because the server is draining: handed back, not failed (another slot renders it)
    status: error ? (error.code === 'RB_DRAINING' ? 'returned' : 'failed') : 'done',
    outputs,
    ...(error ? { error } : {}),
    stats: { ...outcome.usage, bytesWritten: bytes },
  };
}

/** Failures a full output disk can cause (not timeouts, memory, draining). */
const storageMayBeToBlame = (error: { code: string } | undefined): boolean => error?.code === 'RB_RENDER_FAILED' || error?.code === 'RB_OUTPUT_FAILED';

export interface RenderSlotOptions {
  nc: NatsConnection;
  site: string;
  host: string;
  /** Changes on every render server start; carried in slot events. */
  serverId: string;
  index: number;
  log: Logger;
  adapters: AdapterLookup;
  /** How long to wait for `sched.result` replies; one per render server, shared by its slots (default: one of its own). */
  resultTimeout?: ResultTimeout;
  killGraceMs?: number;
  launcher?: Launcher;
  /** How this host sandboxes (sandbox-host.ts); absent or null: sandboxed tasks fail here. */
  sandbox?: Promise<SandboxHost | null>;
  /** Told on every slot state change (the render server reports slots in heartbeats). */
  onChange?: (info: SlotInfo) => void;
  /** Told when a task ended and its files were stored, before its result is reported (the render server counts failures in a row). */
  onTaskEnd?: (end: TaskEnd) => void;
}

/** How a task ended on this slot. */
export interface TaskEnd {
  jobId: string;
  taskId: string;
  status: SlotResult['status'];
  /** The error code of a failed task. */
  code?: string;
  frames: number;
  /** Killed because someone asked (the job was cancelled, `--kill`): no fault of the host's. */
  requested: boolean;
}

/** What a render server needs of a slot: the real one (startRenderSlot) or a simulated one (simulated.ts). */
export interface SlotHandle {
  readonly index: number;
  /** The slot as the registry sees it. */
  info(): SlotInfo;
  isIdle(): boolean;
  /** The task it holds, if any. */
  task(): TaskAssignment | null;
  /** Hands it a task; the caller checked isIdle(). `receivedAt` is performance.now() when the assignment arrived. */
  assign(task: TaskAssignment, receivedAt: number): void;
  cancel(reason: string, code?: ErrorCode): void;
  /** Finish the running task, take no next one, hand back the tasks in hand. */
  drain(): void;
  /** Take work again after a drain (idle again when it runs nothing). */
  undrain(): void;
  /** Tasks leased to the slot and held to start next. */
  heldTasks(): string[];
  /** Drops a held task (its job was cancelled, or its lease is another slot's now); false when it is not held. */
  dropHeld(taskId: string, attempt?: number): boolean;
  /** Hands a held task back unstarted (a `returned` result: its job was paused); false when it is not held. */
  returnHeld(taskId: string, attempt?: number): boolean;
  /** Every task this slot holds a lease for: rendering, held in hand, or ended with its result not yet taken. */
  leases(): HeldLease[];
  /** Resolves once the slot is idle (or only holding a result the scheduler has not taken) and results sent in the background are taken, or after timeoutMs. */
  settled(timeoutMs: number): Promise<void>;
  /** The task whose result waits for the scheduler to come back, if any. */
  heldResult(): string | null;
  /** The scheduler is back: results waiting out their backoff are sent now. */
  retryNow(): void;
  stop(): void;
}

export interface RenderSlot extends SlotHandle {
  readonly actor: ActorRefFrom<typeof renderSlotMachine>;
}

/** Makes slot `index` of a render server: startRenderServer's `slotFactory` (a simulated farm), instead of startRenderSlot. */
export type SlotFactory = (o: Pick<RenderSlotOptions, 'nc' | 'site' | 'host' | 'serverId' | 'index' | 'log' | 'resultTimeout'>) => SlotHandle;

const PROGRESS_EVERY_MS = 1_000;

/** One render slot bound to NATS: runs tasks, stores frames, reports results, publishes events. */
export function startRenderSlot(o: RenderSlotOptions): RenderSlot {
  const log = o.log.child({ actor: 'render-slot', slot: o.index });
  let idleSince = performance.now(); // when the slot last became free for work (see waitMs)
  let lastProgressAt = -Infinity;
  let running: Promise<RenderOutcome> | null = null;
  let since = Date.now();
  /** Date.now() when the current task started (lease reports say it). */
  let startedWall = 0;
  let draining = false;
  const resultSubject = subjects.schedResult(o.site, o.host);
  // Tasks in hand: leased to this slot, started the moment the current one ends, so the slot
  // need not wait a round trip for its next task (docs/architecture.md, "task in hand").
  const held: TaskAssignment[] = [];
  const reporting = new Set<Promise<void>>();
  // background reports sleep on this between tries; retryNow() wakes them all
  let wake = signal();
  /** Results sent in the background and not yet taken, by task id (their leases are still ours). */
  const unacked = new Map<string, TaskResult>();
  let stopped = false;
  /** The task a kill was asked for (cancel() without a code: a cancelled job, `--kill`). */
  let killedOnRequest: TaskAssignment | null = null;

  /** A task that arrived while the slot was busy is held; an idle slot starts it. */
  const take = (task: TaskAssignment) => {
    if (!stopped && actor.getSnapshot().value === 'idle' && held.length === 0) {
      actor.send({ type: 'slot.assign', task, waitMs: Math.max(0, performance.now() - idleSince) });
    } else held.push(task);
  };

  const resultTimeout = o.resultTimeout ?? new ResultTimeout();
  /**
   * Sends of a result (by the object the slot keeps it in) that got no reply in time. Only those
   * lengthen the wait of its next send: a refusal is a reply (the scheduler is there, its store is
   * full), and counting refusals made a send lost in the nats-server restart after a full disk
   * wait out a whole minute.
   */
  const unanswered = new WeakMap<object, number>();
  /** Sends a result once, waiting as long as the server's ResultTimeout says for its sends that went unanswered. */
  const sendResult = async (msg: TaskResult, key: object) => {
    const n = unanswered.get(key) ?? 0;
    try {
      return await resultTimeout.send(n, (timeoutMs) => call(o.nc, resultSubject, codecs.taskResult, msg, codecs.taskResultReply, { timeoutMs, unavailable: 'RB_SCHEDULER_UNAVAILABLE' }));
    } catch (err) {
      if (timedOut(err)) unanswered.set(key, n + 1);
      throw err;
    }
  };

  /** Reports a result while the slot renders its next task; retried with backoff until taken. */
  const reportInBackground = (msg: TaskResult) => {
    unacked.set(msg.taskId, msg);
    const p = (async () => {
      for (let attempt = 0; ; attempt++) {
        try {
          const reply = await sendResult(msg, msg);
          if (reply.next) take(reply.next);
          if (reply.following) take(reply.following);
          return;
        } catch (err) {
          if (stopped || !(err instanceof FarmError && err.retryable)) {
            log.error({ err, taskId: msg.taskId }, 'scheduler refused the task result');
            return;
          }
          // said once per result (info), then at debug: a scheduler's restart makes every slot retry
          log[attempt === 0 ? 'info' : 'debug']({ taskId: msg.taskId, attempt, error: (err as Error).message }, 'task result not taken yet; sending it again');
          await Promise.race([sleep(Math.min(SLOT_RESULT_RETRY_MAX_MS, SLOT_RESULT_RETRY_BASE_MS * 2 ** attempt)), wake.promise]);
        }
      }
    })().finally(() => {
      reporting.delete(p);
      if (unacked.get(msg.taskId) === msg) unacked.delete(msg.taskId);
    });
    reporting.add(p);
  };
  const slotSubject = subjects.hostEvent(o.site, o.host, 'slot');
  /** A task given back unrendered (the server drains): queued again at the scheduler, no attempt used. */
  const handBack = (task: TaskAssignment): TaskResult => ({
    v: PROTOCOL_MAJOR, host: o.host, taskId: task.taskId, jobId: task.jobId, taskIndex: task.taskIndex, attempt: task.attempt, slot: o.index,
    status: 'returned', outputs: [], stats: { wallMs: 0, cpuMs: 0, peakRssKb: 0, bytesWritten: 0 }, wantNext: false, want: 0,
  });

  /** One event about these frames of the task (all of them, or the one a progress line is about). */
  const publishFrames = (task: TaskAssignment, frames: readonly number[], event: string, extra: { percent?: number; waitMs?: number; live?: LiveStats; log?: string }) => {
    const about = aboutFrames(frames);
    try {
      o.nc.publish(
        subjects.frameEvent(o.site, task.jobId, about.frame, event),
        codecs.frameEvent.encode({ v: PROTOCOL_MAJOR, jobId: task.jobId, ...about, event, at: Date.now(), host: o.host, slot: o.index, attempt: task.attempt, ...extra }),
      );
    } catch (err) {
      log.warn({ err, event }, 'could not publish frame event');
    }
  };

  // Built from the machine's context in its actions: inside an action getSnapshot() is still the previous state.
  let current: SlotInfo = { index: o.index, state: 'idle', since };
  const slotChanged = (task: TaskAssignment | null) => {
    const was = current.state;
    since = Date.now();
    current = task
      ? { index: o.index, state: 'busy', taskId: task.taskId, jobId: task.jobId, frames: [...task.frames], since }
      : { index: o.index, state: draining ? 'draining' : 'idle', since };
    o.onChange?.(current);
    // busy → busy (the next task came with the last result) is news to nobody: the frame's
    // started event says it, and heartbeats carry the task; only a change of state goes out
    if (was === current.state) return;
    try {
      o.nc.publish(slotSubject, codecs.hostEvent.encode({ v: PROTOCOL_MAJOR, host: o.host, event: 'slot', at: since, serverId: o.serverId, slot: current }));
    } catch (err) {
      log.warn({ err }, 'could not publish slot event');
    }
  };

  const machine = renderSlotMachine.provide({
    actors: {
      prepare: fromPromise(({ input }) => prepareTask(input, o.adapters, o.host, o.sandbox)),
      runTask: fromPromise(({ input, signal }) => {
        const { task } = input;
        // a task that runs past the job's time limit, or prints nothing for its stall limit, is
        // killed like a cancel, and retried by the scheduler
        const kill = (reason: string, code = 'RB_TIMEOUT') => {
          if (actor.getSnapshot().context.task === task) actor.send({ type: 'slot.cancel', reason, code });
        };
        // a task over the memory it was given is stopped, and retried with more by the scheduler
        const memoryKb = task.memoryLimitMb ? task.memoryLimitMb * 1024 : undefined;
        const onMemory = memoryKb
          ? (rssKb: number) => {
              if (rssKb > memoryKb) kill(`it used ${Math.round(rssKb / 1024)} MB, over the ${task.memoryLimitMb} MB it was given`, 'RB_OUT_OF_MEMORY');
            }
          : undefined;
        const limit = task.timeLimitMs ? setTimeout(() => kill(`it ran past the job's time limit of ${task.timeLimitMs! / 1000} s`), task.timeLimitMs) : undefined;
        let lastSign = performance.now();
        const stall = task.stallLimitMs
          ? setInterval(() => {
              if (performance.now() - lastSign > task.stallLimitMs!) kill(`it showed no progress (no output) for ${task.stallLimitMs! / 1000} s`);
            }, Math.min(1_000, task.stallLimitMs))
          : undefined;
        running = renderTask(task, input.prepared, {
          adapters: o.adapters,
          host: o.host,
          signal,
          killGraceMs: o.killGraceMs,
          launcher: o.launcher,
          ...(o.sandbox ? { sandbox: o.sandbox } : {}),
          onActivity: () => (lastSign = performance.now()),
          ...(onMemory ? { onMemory } : {}),
          onLogError: (err) => log.warn({ err, taskId: task.taskId }, 'could not write the task log'),
          onStats: (live) => {
            publishFrames(task, task.frames, 'stats', { live });
          },
          onProgress: (p) => {
            const now = performance.now();
            if (now - lastProgressAt < PROGRESS_EVERY_MS) return;
            lastProgressAt = now;
            publishFrames(task, [p.frame], 'progress', { percent: p.percent });
          },
        });
        const stop = () => {
          clearTimeout(limit);
          clearInterval(stall);
        };
        if (limit || stall) void running.then(stop, stop);
        return running;
      }),
      reap: fromPromise(async () => {
        if (!running) throw new FarmError('RB_RENDER_FAILED', 'no render to reap');
        return running;
      }),
      deliver: fromPromise(async ({ input }) => {
        const { task } = input;
        const requested = killedOnRequest === task;
        let result: SlotResult;
        try {
          result = await deliverTask(task, input.prepared, input.outcome, input.slot);
        } catch (err) {
          log.warn({ err, jobId: task.jobId, taskId: task.taskId, attempt: task.attempt }, 'task failed: its frames could not be stored');
          o.onTaskEnd?.({ jobId: task.jobId, taskId: task.taskId, status: 'failed', code: 'RB_OUTPUT_FAILED', frames: task.frames.length, requested });
          throw err;
        }
        if (result.status === 'failed') {
          // at the default level: a host that fails every frame must say so in its log
          const fields = { jobId: task.jobId, taskId: task.taskId, attempt: task.attempt, frames: formatFrames(task.frames), code: result.error?.code, error: result.error?.message };
          if (requested) log.info(fields, 'task killed on request');
          else log.warn(fields, 'task failed');
        }
        o.onTaskEnd?.({ jobId: task.jobId, taskId: task.taskId, status: result.status, ...(result.error ? { code: result.error.code } : {}), frames: task.frames.length, requested });
        return result;
      }),
      report: fromPromise(async ({ input }): Promise<ReportOutput> => {
        const next = held.shift();
        if (next) {
          // a task in hand: start it now, and report this one meanwhile (retried until taken)
          reportInBackground({ v: PROTOCOL_MAJOR, host: o.host, ...input.result, wantNext: input.wantNext, want: input.wantNext ? 1 : 0 });
          return { next, waitMs: 0 };
        }
        const msg: TaskResult = { v: PROTOCOL_MAJOR, host: o.host, ...input.result, wantNext: input.wantNext, want: input.wantNext ? 2 : 0 };
        idleSince = performance.now();
        const reply = await sendResult(msg, input.result).catch((err: unknown) => {
          if (err instanceof FarmError && err.retryable) log[input.attempt === 0 ? 'info' : 'debug']({ taskId: msg.taskId, attempt: input.attempt, error: err.message }, 'task result not taken yet; sending it again');
          throw err;
        });
        if (reply.next && reply.following) held.push(reply.following);
        return { next: reply.next, waitMs: performance.now() - idleSince };
      }),
    },
    actions: {
      slotIdle: () => {
        running = null;
        slotChanged(null);
        // a task that came in hand while the slot was reporting must not wait for a next result
        if (held.length > 0 && !stopped) {
          queueMicrotask(() => {
            const task = held.shift();
            if (task) take(task);
          });
        }
      },
      taskStarted: ({ context }) => {
        const task = context.task!;
        running = null;
        lastProgressAt = -Infinity;
        startedWall = Date.now();
        slotChanged(task);
        const logFile = logPathOf(task);
        publishFrames(task, task.frames, 'started', { waitMs: context.waitMs, ...(logFile ? { log: logFile } : {}) });
        log.debug({ taskId: task.taskId, attempt: task.attempt, waitMs: context.waitMs }, 'task started');
      },
      resultDropped: ({ context }, params) => {
        log.error({ err: params.error, taskId: context.result?.taskId }, 'scheduler refused the task result');
      },
      reportInBackground: (_, { result, wantNext }) => {
        reportInBackground({ v: PROTOCOL_MAJOR, host: o.host, ...result, wantNext, want: wantNext ? 1 : 0 });
      },
      takeHeld: assign({ task: () => held.shift()!, waitMs: 0 }),
    },
    guards: {
      taskInHand: () => held.length > 0 && !stopped,
    },
  });

  const actor = createActor(machine, { input: { index: o.index } });
  const tracing = log.isLevelEnabled('trace'); // transitions happen several times per frame
  actor.subscribe({
    next: (snap) => {
      if (tracing) log.trace({ state: snap.value }, 'slot state');
    },
    error: (err) => log.error({ err }, 'render slot failed'),
  });
  actor.start();

  return {
    index: o.index,
    actor,
    info: () => current,
    isIdle: () => actor.getSnapshot().value === 'idle',
    task: () => actor.getSnapshot().context.task,
    assign(task, receivedAt) {
      actor.send({ type: 'slot.assign', task, waitMs: Math.max(0, receivedAt - idleSince) });
    },
    cancel(reason, code) {
      if (code === undefined) killedOnRequest = actor.getSnapshot().context.task;
      actor.send({ type: 'slot.cancel', reason, code });
    },
    drain() {
      draining = true;
      actor.send({ type: 'slot.drain' });
      // tasks in hand go back at once, so other slots can take them while this one finishes
      for (const task of held.splice(0)) reportInBackground(handBack(task));
      if (actor.getSnapshot().value === 'idle') slotChanged(null);
    },
    undrain() {
      draining = false;
      actor.send({ type: 'slot.undrain' });
      // draining → idle is news: the registry and the scheduler may hand it work again
      if (actor.getSnapshot().value === 'idle') slotChanged(null);
    },
    heldTasks: () => held.map((t) => t.taskId),
    dropHeld(taskId, attempt) {
      const i = held.findIndex((t) => t.taskId === taskId && (attempt === undefined || t.attempt === attempt));
      if (i < 0) return false;
      held.splice(i, 1);
      return true;
    },
    returnHeld(taskId, attempt) {
      const i = held.findIndex((t) => t.taskId === taskId && (attempt === undefined || t.attempt === attempt));
      if (i < 0) return false;
      reportInBackground(handBack(held.splice(i, 1)[0]!));
      return true;
    },
    leases() {
      const out: HeldLease[] = [];
      const add = (t: { taskId: string; jobId: string; taskIndex: number; attempt: number }, state: LeaseState) =>
        out.push({ taskId: t.taskId, jobId: t.jobId, taskIndex: t.taskIndex, attempt: t.attempt, slot: o.index, state });
      const s = actor.getSnapshot();
      const ending = s.matches({ delivering: 'reporting' }) || s.matches({ delivering: 'retrying' });
      if (s.status === 'active' && s.context.task) {
        add(s.context.task, ending ? 'reporting' : 'running');
        out[out.length - 1]!.startedAt = startedWall;
      }
      for (const t of held) add(t, 'held');
      for (const r of unacked.values()) add(r, 'reporting');
      return out;
    },
    async settled(timeoutMs) {
      const until = performance.now() + timeoutMs;
      await machineSettled(timeoutMs);
      const left = until - performance.now();
      if (reporting.size > 0 && left > 0) await Promise.race([Promise.allSettled([...reporting]), sleep(left)]);
    },
    retryNow() {
      const w = wake;
      wake = signal();
      w.resolve();
      actor.send({ type: 'slot.retryNow' });
    },
    heldResult() {
      const s = actor.getSnapshot();
      return s.matches({ delivering: 'retrying' }) ? (s.context.result?.taskId ?? null) : null;
    },
    stop() {
      stopped = true;
      held.length = 0; // their leases go back to the queue when the registry reports this host gone
      actor.stop();
    },
  };

  /** Resolves once the slot is idle or only holding a result the scheduler has not taken (or after timeoutMs). */
  function machineSettled(timeoutMs: number): Promise<void> {
    const done = () => {
      const s = actor.getSnapshot();
      return s.value === 'idle' || s.matches({ delivering: 'retrying' }) || s.status !== 'active';
    };
    if (done()) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(finish, timeoutMs);
      const sub = actor.subscribe(() => {
        if (done()) finish();
      });
      function finish() {
        clearTimeout(t);
        sub.unsubscribe();
        resolve();
      }
    });
  }
}

/** Where the task's log goes (task-log.ts), or undefined for ids that cannot name a file (prepare refuses those). */
function logPathOf(task: TaskAssignment): string | undefined {
  try {
    return taskPaths(task.outputDir, task.taskId, task.attempt).logFile;
  } catch {
    return undefined;
  }
}

/** A promise and the function that resolves it (Promise.withResolvers arrives with Node 22). */
function signal(): { promise: Promise<void>; resolve: () => void } {
  let resolve: () => void = () => {};
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}
