import { join } from 'node:path';
import { frameFileName, MAX_FRAME_ATTEMPTS, runOf, type FrameAttempt, type FrameRuns, type TaskStats } from '../../protocol/index.ts';

export const TaskState = { Queued: 'queued', Running: 'running', Done: 'done', Failed: 'failed', Cancelled: 'cancelled' } as const;
export type TaskState = (typeof TaskState)[keyof typeof TaskState];

export interface Task {
  index: number;
  frames: number[];
  state: TaskState;
  /** Attempt of the latest dispatch; 0 before the first. */
  attempt: number;
  /** Failed attempts so far (a lost host or a hand-back is not a failure). */
  failures: number;
  /** The attempt whose result was applied last: the same result again is a duplicate. */
  resolvedAttempt?: number;
  host?: string;
  slot?: number;
  /** When the latest attempt was handed to its slot. */
  handedAt?: number;
  /** When its slot really started the latest attempt; undefined while it holds it in hand. */
  startedAt?: number;
  finishedAt?: number;
  /** Its failed attempts, oldest first: the last MAX_FRAME_ATTEMPTS (recordFailure). */
  attempts?: FrameAttempt[];
  outputs?: { frame: number; path: string }[];
  error?: string;
  stats?: TaskStats;
  /** Memory it may use (MB), when raised above the job's memoryMb after it ran out. */
  memoryMb?: number;
  /** taskDuration: the re-split of the job's tasks that this task's result decided (journaled with it). */
  rechunk?: Rechunk;
}

/**
 * Keeps a failed attempt in the task's record (`ran`, else the task as it is now: attempt, host, slot, error, times),
 * dropping the oldest beyond MAX_FRAME_ATTEMPTS. The same attempt twice is kept once.
 */
export function recordFailure(task: Task, ran: Pick<Task, 'attempt' | 'host' | 'slot' | 'error' | 'startedAt' | 'finishedAt'> = task): void {
  if (ran.host === undefined || ran.slot === undefined || ran.finishedAt === undefined) return;
  const list = (task.attempts ??= []);
  if (list.some((a) => a.attempt === ran.attempt)) return;
  const a: FrameAttempt = { attempt: ran.attempt, host: ran.host, slot: ran.slot, error: ran.error ?? 'failed', finishedAt: ran.finishedAt };
  if (ran.startedAt !== undefined) a.startedAt = ran.startedAt;
  list.push(a);
  list.sort((x, y) => x.attempt - y.attempt);
  if (list.length > MAX_FRAME_ATTEMPTS) list.splice(0, list.length - MAX_FRAME_ATTEMPTS);
}

/** The job's tasks not handed out yet, from order position `from` on (all but `keep`), split again into tasks of `size` frames. */
export interface Rechunk {
  from: number;
  keep: number[];
  size: number;
}

/** Done tasks kept as objects (the latest ones): a duplicate result finds the object it was first applied to. */
export const RECENT_DONE_KEPT = 1_000;

const NO_TIME = 0xffff_ffff;
const U8_MAX = 0xff;
const U16_MAX = 0xffff;
const U32_MAX = 0xffff_ffff;
/** How a settled task's outputs are: each frame's file where the job's pattern puts it, or none. */
const SettledOutputs = { None: 0, Default: 1, Empty: 2 } as const;

/** Done tasks, column by column: a task settled here is no object (33 bytes a task). */
interface Settled {
  outputs: Uint8Array;
  attempt: Uint8Array;
  host: Uint16Array;
  slot: Uint8Array;
  /** Milliseconds after the job's submission; NO_TIME: not known. */
  startedAt: Uint32Array;
  finishedAt: Uint32Array;
  wallMs: Float64Array;
  /** cpuMs, peakRssKb, bytesWritten of each task, three in a row (whole numbers: settled only when they are). */
  counters: Uint32Array;
}

/** Where a job puts its frames' files (to tell the usual outputs from others). */
export interface OutputPlace {
  dir: string;
  pattern: string;
  /** The job's submission time: settled times are stored relative to it. */
  base: number;
}

/**
 * A job's tasks, stored by what sets them apart. A task holds consecutive frames, so the frame
 * list (runs of consecutive frames) and the chunk size say which frames every task holds without
 * storing them. A task that was never touched (queued, never handed out) is no object at all:
 * it is materialised, as a Task, the first time it is handed out, ended or otherwise changed.
 * A job of a million queued frames, a task each, so costs its runs and a few counters; each
 * task touched costs its object (docs/scheduling.md, "What a job costs the scheduler").
 */
export class TaskTable {
  private readonly runs: FrameRuns;
  private readonly chunk: number;
  /** Tasks before each run (one more entry than runs: the last is the number of base tasks). */
  private readonly runTasks: Int32Array;
  private readonly baseCount: number;
  /** Tasks added by re-splits (taskDuration), after the base ones: first frame and frame count. */
  private extraFirst: number[] = [];
  private extraCount: number[] = [];
  /** Indices of added tasks that hold frames, by first frame (for frame → task lookups). */
  private extraByFrame: number[] = [];
  /** One bit per task emptied by a re-split: its frames went to added tasks. */
  private emptied: Uint8Array | null = null;
  private readonly live = new Map<number, Task>();
  /** What an untouched task is: queued, or cancelled with its job. */
  private untouchedState: TaskState = TaskState.Queued;
  /** Done tasks without anything of their own (no error, the usual outputs, ...), as columns. */
  private settled: Settled | null = null;
  private settledCount = 0;
  private readonly hosts: string[] = [];
  private readonly hostIds = new Map<string, number>();
  /** Done tasks still kept as objects, oldest first (from `recentHead` on). */
  private recentDone: number[] = [];
  private recentHead = 0;
  private readonly place: OutputPlace | undefined;

  constructor(runs: FrameRuns, chunk: number, place?: OutputPlace) {
    this.runs = runs;
    this.place = place;
    this.chunk = Math.max(1, Math.floor(chunk));
    this.runTasks = new Int32Array(runs.starts.length + 1);
    for (let r = 0; r < runs.starts.length; r++) this.runTasks[r + 1] = this.runTasks[r]! + Math.ceil(runs.lengths[r]! / this.chunk);
    this.baseCount = this.runTasks[runs.starts.length]!;
  }

  get length(): number {
    return this.baseCount + this.extraFirst.length;
  }

  /** Frames of the whole job. */
  get frameCount(): number {
    return this.runs.count;
  }

  /** Tasks touched so far (handed out, ended, changed): as objects, or settled as columns. */
  get touched(): number {
    return this.live.size + this.settledCount;
  }

  /** Tasks kept as objects. */
  get objects(): number {
    return this.live.size;
  }

  /** The task as an object, kept from now on (a settled one becomes an object again); undefined past the end. */
  get(index: number): Task | undefined {
    const had = this.live.get(index);
    if (had) return had;
    if (!this.has(index)) return undefined;
    const t = this.build(index);
    if (this.isSettled(index)) {
      this.settled!.outputs[index] = SettledOutputs.None;
      this.settledCount -= 1;
    }
    this.live.set(index, t);
    return t;
  }

  /** The task to read: the object kept, or a fresh one that is not kept (changing it changes nothing). */
  view(index: number): Task | undefined {
    const had = this.live.get(index);
    if (had) return had;
    if (!this.has(index)) return undefined;
    return this.build(index);
  }

  /** The task's object, if one is kept (touched and not settled). */
  peek(index: number): Task | undefined {
    return this.live.get(index);
  }

  private build(index: number): Task {
    const t: Task = { index, frames: this.framesOf(index), state: this.stateOf(index), attempt: 0, failures: 0 };
    if (!this.isSettled(index)) return t;
    const c = this.settled!;
    const base = this.place!.base;
    t.attempt = c.attempt[index]!;
    t.resolvedAttempt = t.attempt;
    t.host = this.hosts[c.host[index]!];
    t.slot = c.slot[index]!;
    if (c.startedAt[index] !== NO_TIME) t.startedAt = base + c.startedAt[index]!;
    t.finishedAt = base + c.finishedAt[index]!;
    const k = index * 3;
    t.stats = { wallMs: c.wallMs[index]!, cpuMs: c.counters[k]!, peakRssKb: c.counters[k + 1]!, bytesWritten: c.counters[k + 2]! };
    t.outputs = c.outputs[index] === SettledOutputs.Default ? t.frames.map((frame) => ({ frame, path: this.defaultOutput(frame) })) : [];
    return t;
  }

  private isSettled(index: number): boolean {
    return this.settled !== null && index < this.settled.outputs.length && this.settled.outputs[index] !== SettledOutputs.None;
  }

  /** Where render servers put a frame's file (render-slot/output.ts), split around the frame number once. */
  private outputName?: { head: string; width: number; tail: string };
  private defaultOutput(frame: number): string {
    if (!this.outputName) {
      const { dir, pattern } = this.place!;
      const name = frameFileName(pattern, 0); // checks the pattern: one run of '#', no '/'
      const run = /#+/.exec(pattern)!;
      const path = join(dir, name);
      this.outputName = { head: path.slice(0, path.length - name.length) + pattern.slice(0, run.index), width: run[0].length, tail: pattern.slice(run.index + run[0].length) };
    }
    const o = this.outputName;
    return o.head + String(frame).padStart(o.width, '0') + o.tail;
  }

  /**
   * A task is done: kept as an object while it is among the latest RECENT_DONE_KEPT done ones,
   * then settled into columns when nothing sets it apart (no raised memory, the usual outputs...).
   */
  done(task: Task): void {
    this.recentDone.push(task.index);
    if (this.recentDone.length - this.recentHead <= RECENT_DONE_KEPT) return;
    const oldest = this.recentDone[this.recentHead++]!;
    if (this.recentHead > 4096) {
      this.recentDone = this.recentDone.slice(this.recentHead);
      this.recentHead = 0;
    }
    const t = this.live.get(oldest);
    if (t && t.state === TaskState.Done) this.settle(t);
  }

  /** Settles a done task into columns, when they can hold all it has. */
  private settle(t: Task): boolean {
    const place = this.place;
    if (!place || t.host === undefined || t.slot === undefined || t.slot > U8_MAX || t.finishedAt === undefined || !t.stats || t.attempt > U8_MAX) return false;
    const counters = [t.stats.cpuMs, t.stats.peakRssKb, t.stats.bytesWritten];
    if (counters.some((v) => !Number.isInteger(v) || v < 0 || v > U32_MAX)) return false;
    if (t.error !== undefined || t.memoryMb !== undefined || t.rechunk !== undefined || t.attempts !== undefined) return false;
    const finished = t.finishedAt - place.base;
    const started = t.startedAt === undefined ? NO_TIME : t.startedAt - place.base;
    const fitsTime = (v: number) => Number.isInteger(v) && v >= 0 && v < NO_TIME;
    if (!fitsTime(finished) || (started !== NO_TIME && !fitsTime(started))) return false;
    let outputs: number = SettledOutputs.Empty;
    if (t.outputs && t.outputs.length > 0) {
      if (t.outputs.length !== t.frames.length || t.outputs.some((o, i) => o.frame !== t.frames[i] || o.path !== this.defaultOutput(o.frame))) return false;
      outputs = SettledOutputs.Default;
    }
    let host = this.hostIds.get(t.host);
    if (host === undefined) {
      if (this.hosts.length >= U16_MAX) return false;
      host = this.hosts.push(t.host) - 1;
      this.hostIds.set(t.host, host);
    }
    const c = this.columns(t.index + 1);
    const i = t.index;
    c.outputs[i] = outputs;
    c.attempt[i] = t.attempt;
    c.host[i] = host;
    c.slot[i] = t.slot;
    c.startedAt[i] = started;
    c.finishedAt[i] = finished;
    c.wallMs[i] = t.stats.wallMs;
    c.counters.set(counters, i * 3);
    this.live.delete(i);
    this.settledCount += 1;
    return true;
  }

  /** The columns, with room for `need` tasks (allocated for every task at once, grown when re-splits add some). */
  private columns(need: number): Settled {
    const had = this.settled;
    if (had && had.outputs.length >= need) return had;
    const n = Math.max(need, this.length);
    const grow = <T extends Uint8Array | Uint16Array | Uint32Array | Float64Array>(make: new (n: number) => T, old: T | undefined, per = 1): T => {
      const a = new make(n * per);
      if (old) a.set(old);
      return a;
    };
    this.settled = {
      outputs: grow(Uint8Array, had?.outputs),
      attempt: grow(Uint8Array, had?.attempt),
      host: grow(Uint16Array, had?.host),
      slot: grow(Uint8Array, had?.slot),
      startedAt: grow(Uint32Array, had?.startedAt),
      finishedAt: grow(Uint32Array, had?.finishedAt),
      wallMs: grow(Float64Array, had?.wallMs),
      counters: grow(Uint32Array, had?.counters, 3),
    };
    return this.settled;
  }

  has(index: number): boolean {
    return Number.isInteger(index) && index >= 0 && index < this.length;
  }

  stateOf(index: number): TaskState {
    const t = this.live.get(index);
    if (t) return t.state;
    if (this.isSettled(index)) return TaskState.Done;
    return this.isEmptied(index) ? TaskState.Cancelled : this.untouchedState;
  }

  /** Every task touched so far, in no particular order. */
  touchedTasks(): IterableIterator<Task> {
    return this.live.values();
  }

  /** The job was cancelled: untouched tasks are cancelled with it (touched ones are the caller's). */
  cancelUntouched(): void {
    this.untouchedState = TaskState.Cancelled;
  }

  frameCountOf(index: number): number {
    if (this.isEmptied(index)) return 0;
    if (index >= this.baseCount) return this.extraCount[index - this.baseCount]!;
    const r = this.runOfTask(index);
    const k = index - this.runTasks[r]!;
    return Math.min(this.chunk, this.runs.lengths[r]! - k * this.chunk);
  }

  firstFrameOf(index: number): number {
    if (index >= this.baseCount) return this.extraFirst[index - this.baseCount]!;
    const r = this.runOfTask(index);
    return this.runs.starts[r]! + (index - this.runTasks[r]!) * this.chunk;
  }

  framesOf(index: number): number[] {
    const t = this.live.get(index);
    if (t) return t.frames;
    const n = this.frameCountOf(index);
    const first = n > 0 ? this.firstFrameOf(index) : 0;
    return Array.from({ length: n }, (_, i) => first + i);
  }

  /** Whether the job has this frame. */
  hasFrame(frame: number): boolean {
    return runOf(this.runs, frame) >= 0;
  }

  /** The task holding a frame now (after re-splits, the added task that took it); undefined when the job has no such frame. */
  taskOfFrame(frame: number): number | undefined {
    const r = runOf(this.runs, frame);
    if (r < 0) return undefined;
    const base = this.runTasks[r]! + Math.floor((frame - this.runs.starts[r]!) / this.chunk);
    if (!this.isEmptied(base)) return base;
    // the last added task starting at or before the frame holds it
    let lo = 0;
    let hi = this.extraByFrame.length - 1;
    let found: number | undefined;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const index = this.extraByFrame[mid]!;
      if (this.firstFrameOf(index) <= frame) {
        found = index;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found;
  }

  /** The job's frames after frame `after` (all when undefined), ascending, each with the task holding it. */
  *framesFrom(after: number | undefined): Generator<{ frame: number; task: number }> {
    const runs = this.runs;
    let r = after === undefined ? 0 : firstRunEndingAfter(runs, after);
    for (; r < runs.starts.length; r++) {
      const start = runs.starts[r]!;
      const end = start + runs.lengths[r]!;
      for (let f = after !== undefined && after >= start ? after + 1 : start; f < end; f++) yield { frame: f, task: this.taskOfFrame(f)! };
    }
  }

  /**
   * A re-split: these tasks (untouched, or touched and queued) give up their frames; the frames
   * go to new tasks of consecutive frames, appended. Returns the new tasks' indices.
   */
  resplit(indices: readonly number[], chunks: readonly { first: number; count: number }[]): number[] {
    const added: number[] = [];
    for (const c of chunks) {
      added.push(this.length);
      this.extraFirst.push(c.first);
      this.extraCount.push(c.count);
    }
    const bits = new Uint8Array((this.length >> 3) + 1);
    if (this.emptied) bits.set(this.emptied);
    this.emptied = bits;
    for (const i of indices) {
      bits[i >> 3]! |= 1 << (i & 7);
      const t = this.live.get(i);
      if (t) {
        t.frames = [];
        t.state = TaskState.Cancelled; // an empty husk: its frames live on in the new tasks
      }
    }
    this.extraByFrame = [];
    for (let k = 0; k < this.extraFirst.length; k++) if (!this.isEmptied(this.baseCount + k)) this.extraByFrame.push(this.baseCount + k);
    this.extraByFrame.sort((a, b) => this.firstFrameOf(a) - this.firstFrameOf(b));
    return added;
  }

  private isEmptied(index: number): boolean {
    const bits = this.emptied;
    return bits !== null && ((bits[index >> 3] ?? 0) & (1 << (index & 7))) !== 0;
  }

  private runOfTask(index: number): number {
    let lo = 0;
    let hi = this.runs.starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.runTasks[mid]! <= index) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
}

/** The first run whose last frame is after `frame`. */
function firstRunEndingAfter(runs: FrameRuns, frame: number): number {
  let lo = 0;
  let hi = runs.starts.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (runs.starts[mid]! + runs.lengths[mid]! - 1 > frame) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/**
 * The order tasks are first handed out in (previewFirst): first, last and middle task, then the
 * rest in index order, then tasks added by re-splits. Computed, not listed.
 */
export class PreviewOrder {
  private readonly firsts: number[];
  private readonly sortedFirsts: number[];
  private readonly n: number;
  private readonly appended: number[] = [];

  constructor(n: number) {
    this.n = n;
    this.firsts = [...new Set([0, n - 1, Math.floor((n - 1) / 2)])].filter((i) => i >= 0 && i < n);
    this.sortedFirsts = [...this.firsts].sort((a, b) => a - b);
  }

  get length(): number {
    return this.n + this.appended.length;
  }

  /** The task index at an order position. */
  at(p: number): number {
    if (p < this.firsts.length) return this.firsts[p]!;
    if (p >= this.n) return this.appended[p - this.n]!;
    let index = p - this.firsts.length;
    for (const f of this.sortedFirsts) if (f <= index) index += 1;
    return index;
  }

  push(index: number): void {
    this.appended.push(index);
  }
}

/** First, last and middle task, then the rest in order: a look at the whole shot before it all renders. */
export function previewOrder(n: number): number[] {
  const o = new PreviewOrder(n);
  return Array.from({ length: o.length }, (_, p) => o.at(p));
}
