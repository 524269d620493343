import { performance } from 'node:perf_hooks';

/** A callback due at some time; `cancel()` keeps it from running. */
export interface SimTimer {
  cancel(): void;
}

interface Entry extends SimTimer {
  fn: () => void;
  cancelled: boolean;
}

/**
 * One timer for many simulated slots: callbacks go into buckets of `resolutionMs`, and a single
 * Node timer ticks through the due buckets while any callback waits (a simulated farm holds
 * 100,000 renders in flight at once; a Node timer each, with jittered durations, costs a list per
 * distinct duration and a heap entry each). A callback runs at most `resolutionMs` late, never
 * early, in the order it was scheduled within its bucket.
 */
export class SimTimers {
  private readonly buckets = new Map<number, Entry[]>();
  private pending = 0;
  /** The last bucket whose callbacks ran. */
  private done: number;
  private timer: NodeJS.Timeout | null = null;
  private readonly resolutionMs: number;
  private readonly onError: (err: unknown) => void;

  /**
   * @param resolutionMs how late a callback may run
   * @param onError told when a callback throws (the others still run); by default it is thrown again
   */
  constructor(resolutionMs = 5, onError: (err: unknown) => void = (err) => queueMicrotask(() => { throw err; })) {
    this.resolutionMs = resolutionMs;
    this.onError = onError;
    if (!(resolutionMs >= 1)) throw new RangeError(`resolutionMs must be at least 1, not ${resolutionMs}`);
    this.done = Math.floor(performance.now() / resolutionMs);
  }

  /** Runs `fn` once, `ms` from now (rounded up to the resolution). */
  after(ms: number, fn: () => void): SimTimer {
    const now = performance.now();
    // idle until now: no bucket before this one holds anything, so the next tick need not walk them
    if (this.pending === 0) this.done = Math.max(this.done, Math.floor(now / this.resolutionMs));
    const at = Math.max(this.done + 1, Math.ceil((now + Math.max(0, ms)) / this.resolutionMs));
    const e: Entry = { fn, cancelled: false, cancel: () => (e.cancelled = true) };
    let list = this.buckets.get(at);
    if (!list) this.buckets.set(at, (list = []));
    list.push(e);
    this.pending += 1;
    if (!this.timer) this.arm();
    return e;
  }

  /** Callbacks waiting (cancelled ones included until their time comes). */
  get size(): number {
    return this.pending;
  }

  /** Drops every waiting callback and stops the timer. */
  clear(): void {
    this.buckets.clear();
    this.pending = 0;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private arm(): void {
    this.timer = setTimeout(() => this.tick(), this.resolutionMs);
    this.timer.unref(); // the farm's connection keeps the process alive, not a render in flight
  }

  private tick(): void {
    this.timer = null;
    const now = Math.floor(performance.now() / this.resolutionMs);
    while (this.done < now) {
      this.done += 1;
      const list = this.buckets.get(this.done);
      if (!list) continue;
      this.buckets.delete(this.done);
      this.pending -= list.length;
      for (const e of list) {
        if (e.cancelled) continue;
        try {
          e.fn();
        } catch (err) {
          this.onError(err); // one slot's failure must not stop every other slot's clock
        }
      }
    }
    if (this.pending > 0) this.arm();
  }
}
