import type { LiveStats, SlotInfo } from '../../protocol/index.ts';

/**
 * What runs on each render slot now, and the timeline of what ran there: one span per task
 * attempt, from its first frame's `started` event to the end of its last frame (done, failed or
 * retrying), or until the job is cancelled, the host goes down or a snapshot says the slot is
 * idle. Pure: every time comes from an event or a snapshot.
 */

/** How a span ended. `ended`: a snapshot showed the slot idle without the frames' end being heard. */
export type SpanOutcome = 'done' | 'failed' | 'retrying' | 'cancelled' | 'lost' | 'ended';

export interface Span {
  id: number;
  host: string;
  slot: number;
  jobId: string;
  attempt: number;
  /** Every frame of the task attempt. */
  frames: number[];
  start: number;
  end?: number;
  outcome?: SpanOutcome;
  /** The model version of its last change. */
  v: number;
}

/** The task attempt running on a slot. */
export interface SlotRun {
  jobId: string;
  attempt: number;
  /** Frames of the task whose end has not been heard yet. */
  frames: number[];
  startedAt: number;
  /** The task attempt's log file, from its `started` event. */
  log?: string;
  /** Its process figures from the latest `stats` event. */
  live?: LiveStats;
  span: Span;
}

/** Spans kept for the timeline; older ones are forgotten first. */
export const MAX_SPANS = 5_000;
/**
 * A `started` event for another frame of the same job and attempt joins the run (the frames of
 * one chunk) when it names the same log file (one per task attempt), or, without one, when it
 * comes this close: a slot publishes its task's `started` events in one go.
 */
const SAME_TASK_MS = 50;
/** A snapshot showing a slot idle ends a run only if the run began at least this long before it (its events may still be on their way). */
const SNAPSHOT_SLACK_MS = 10_000;

const slotKey = (host: string, slot: number) => `${host}/${slot}`;

export class SlotRuns {
  private readonly runs = new Map<string, SlotRun>();
  /**
   * The run a slot's next task replaced before its frames' ends were heard: a slot starts a task
   * it holds in hand at once, while the scheduler publishes the previous task's `done` a moment
   * later. Their ends still find the span here.
   */
  private readonly replaced = new Map<string, SlotRun>();
  private readonly spans: Span[] = [];
  private nextId = 1;

  /** The run on a slot now, if any. */
  run(host: string, slot: number): SlotRun | undefined {
    return this.runs.get(slotKey(host, slot));
  }

  /** The run holding a frame of a job now, if any. */
  runOf(jobId: string, frame: number): { host: string; slot: number; run: SlotRun } | undefined {
    for (const [key, run] of this.runs) {
      if (run.jobId === jobId && run.frames.includes(frame)) {
        const cut = key.lastIndexOf('/');
        return { host: key.slice(0, cut), slot: Number(key.slice(cut + 1)), run };
      }
    }
    return undefined;
  }

  /** Spans that changed after version `since`, oldest first. */
  spansSince(since: number): Span[] {
    return this.spans.filter((s) => s.v > since);
  }

  /** A frame's `started` event. Returns whether anything changed. */
  started(host: string, slot: number, jobId: string, frame: number, attempt: number, at: number, v: number, log?: string): boolean {
    const key = slotKey(host, slot);
    const run = this.runs.get(key);
    const sameTask = run !== undefined && (run.log !== undefined && log !== undefined ? run.log === log : Math.abs(at - run.startedAt) <= SAME_TASK_MS);
    if (run && run.jobId === jobId && run.attempt === attempt && sameTask) {
      if (run.span.frames.includes(frame)) return false; // heard twice
      run.frames.push(frame);
      run.span.frames.push(frame);
      run.span.v = v;
      return true;
    }
    if (run) {
      // the next task took the slot: the old one ended then; its frames' outcome may follow
      this.close(key, run, at, 'ended', v);
      this.replaced.set(key, run);
    }
    this.open(key, host, slot, jobId, [frame], attempt, at, v);
    if (log !== undefined) this.runs.get(key)!.log = log;
    return true;
  }

  /** A frame's end (`done`, `failed`, `retrying`) on a slot; the run's span ends with its last frame. */
  frameEnded(host: string, slot: number, jobId: string, frame: number, outcome: 'done' | 'failed' | 'retrying', at: number, v: number): boolean {
    const key = slotKey(host, slot);
    const current = this.runs.get(key);
    const old = this.replaced.get(key);
    const run = current?.jobId === jobId && current.frames.includes(frame) ? current : old?.jobId === jobId && old.frames.includes(frame) ? old : undefined;
    if (!run) return false;
    run.frames.splice(run.frames.indexOf(frame), 1);
    // a chunk's worst outcome is the span's: one failed frame makes the attempt a failure
    const rank: Record<string, number> = { done: 0, retrying: 1, failed: 2 };
    const was = run.span.outcome;
    if (was === undefined || was === 'ended' || (rank[was] ?? 0) < rank[outcome]!) run.span.outcome = outcome;
    run.span.v = v;
    if (run.frames.length > 0) return true;
    if (run === current) this.close(key, run, at, run.span.outcome ?? outcome, v);
    else this.replaced.delete(key); // its end is the next task's start, already set
    return true;
  }

  /** A `stats` event: the figures of the process on that slot. */
  live(host: string, slot: number, jobId: string, stats: LiveStats, v: number): boolean {
    const run = this.runs.get(slotKey(host, slot));
    if (!run || run.jobId !== jobId) return false;
    run.live = stats;
    run.span.v = v;
    return true;
  }

  /** The job was cancelled: its running tasks are killed. */
  jobCancelled(jobId: string, at: number, v: number): boolean {
    let changed = false;
    for (const [key, run] of this.replaced) if (run.jobId === jobId) this.replaced.delete(key);
    for (const [key, run] of this.runs) {
      if (run.jobId !== jobId) continue;
      this.close(key, run, at, 'cancelled', v);
      changed = true;
    }
    return changed;
  }

  /** The host went down (or restarted): whatever ran on it is lost. */
  hostDown(host: string, at: number, v: number): boolean {
    let changed = false;
    for (const key of this.replaced.keys()) if (key.startsWith(`${host}/`)) this.replaced.delete(key);
    for (const [key, run] of this.runs) {
      if (!key.startsWith(`${host}/`)) continue; // host names have no slash: node-1/ is not node-10/
      this.close(key, run, at, 'lost', v);
      changed = true;
    }
    return changed;
  }

  /**
   * A registry snapshot of a host's slots, taken at `at`: a busy slot with no run here gets one
   * (the monitor started while it rendered); an idle slot whose run began well before `at` ends it.
   */
  snapshot(host: string, slots: readonly SlotInfo[], at: number, v: number): boolean {
    let changed = false;
    for (const s of slots) {
      const key = slotKey(host, s.index);
      const run = this.runs.get(key);
      if (s.state === 'busy' && s.jobId !== undefined && s.frames && s.frames.length > 0) {
        if (run && run.jobId === s.jobId) continue;
        if (run) this.close(key, run, at, 'ended', v);
        this.open(key, host, s.index, s.jobId, [...s.frames], 0, s.since ?? at, v);
        changed = true;
      } else if (s.state !== 'busy' && run && run.startedAt < at - SNAPSHOT_SLACK_MS) {
        this.close(key, run, at, 'ended', v);
        changed = true;
      }
    }
    return changed;
  }

  private open(key: string, host: string, slot: number, jobId: string, frames: number[], attempt: number, at: number, v: number): void {
    const span: Span = { id: this.nextId++, host, slot, jobId, attempt, frames: [...frames], start: at, v };
    this.spans.push(span);
    if (this.spans.length > MAX_SPANS) this.spans.splice(0, this.spans.length - MAX_SPANS);
    this.runs.set(key, { jobId, attempt, frames, startedAt: at, span });
  }

  private close(key: string, run: SlotRun, at: number, outcome: SpanOutcome, v: number): void {
    run.span.end = Math.max(at, run.span.start);
    run.span.outcome = outcome;
    run.span.v = v;
    this.runs.delete(key);
  }
}
