/**
 * A latency histogram of fixed size, whatever the number of samples: 10 µs steps below 1 ms,
 * then steps of 2 % (a quantile is off by at most 2 %). Exact count, sum, min and max.
 */
export class Histogram {
  private static readonly LINEAR = 100; // 0-1 ms in 10 µs steps
  private static readonly GROWTH = Math.log(1.02);
  private static readonly SIZE = Histogram.LINEAR + Math.ceil(Math.log(10_000_000) / Histogram.GROWTH) + 1; // up to ~3 h
  private readonly counts = new Float64Array(Histogram.SIZE);
  count = 0;
  sum = 0;
  min = Infinity;
  max = -Infinity;

  add(ms: number): void {
    const v = Number.isFinite(ms) && ms > 0 ? ms : 0;
    this.counts[Histogram.bucket(v)]! += 1;
    this.count += 1;
    this.sum += v;
    if (v < this.min) this.min = v;
    if (v > this.max) this.max = v;
  }

  /** Adds another histogram's samples to this one. */
  merge(o: Histogram): void {
    for (let i = 0; i < Histogram.SIZE; i++) this.counts[i]! += o.counts[i]!;
    this.count += o.count;
    this.sum += o.sum;
    this.min = Math.min(this.min, o.min);
    this.max = Math.max(this.max, o.max);
  }

  /** The value below which a fraction `q` (0-1) of the samples lie (the bucket's upper edge, capped at max); NaN when empty. */
  quantile(q: number): number {
    if (this.count === 0) return NaN;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < Histogram.SIZE; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return Math.min(this.max, Histogram.upper(i));
    }
    return this.max;
  }

  mean(): number {
    return this.count === 0 ? NaN : this.sum / this.count;
  }

  /** The counts per bucket, and the bucket count of a histogram restored with `from` (to send it to another process). */
  toJSON(): { n: number; sum: number; min: number; max: number; b: [number, number][] } {
    const b: [number, number][] = [];
    for (let i = 0; i < Histogram.SIZE; i++) if (this.counts[i]! > 0) b.push([i, this.counts[i]!]);
    return { n: this.count, sum: this.sum, min: this.count ? this.min : 0, max: this.count ? this.max : 0, b };
  }

  static from(j: ReturnType<Histogram['toJSON']>): Histogram {
    const h = new Histogram();
    for (const [i, c] of j.b) if (i >= 0 && i < Histogram.SIZE) h.counts[i] = c;
    h.count = j.n;
    h.sum = j.sum;
    h.min = j.n ? j.min : Infinity;
    h.max = j.n ? j.max : -Infinity;
    return h;
  }

  private static bucket(v: number): number {
    if (v < 1) return Math.floor(v * 100);
    return Math.min(Histogram.SIZE - 1, Histogram.LINEAR + Math.floor(Math.log(v) / Histogram.GROWTH));
  }

  private static upper(i: number): number {
    if (i < Histogram.LINEAR) return (i + 1) / 100;
    return Math.exp((i - Histogram.LINEAR + 1) * Histogram.GROWTH);
  }
}

/** Where a simulated slot's next task came from. */
export type TaskSource = 'hand' | 'reply' | 'assign';

/**
 * What the simulated slots of one process did, for the scale benchmark: tasks started (by where
 * they came from) and ended, how long a slot stood without work before its next task (`wait`: from
 * sending the result of its last task to having the next one; 0 for a task held in hand), and the
 * round trip of `sched.result` (`resultRtt`).
 */
export class SimStats {
  /** Slots busy now. */
  busy = 0;
  started = 0;
  startedFrom: Record<TaskSource, number> = { hand: 0, reply: 0, assign: 0 };
  done = 0;
  failed = 0;
  returned = 0;
  /** Frames in the tasks started and done. */
  framesStarted = 0;
  framesDone = 0;
  /** Result requests that got no answer in time or were refused with a retryable error, and sent again. */
  resultRetries = 0;
  /** Results the scheduler refused for good. */
  resultsDropped = 0;
  wait = new Histogram();
  resultRtt = new Histogram();

  /** The counters as they are, and a fresh start for the histograms when `reset` (per-interval figures). */
  snapshot(reset = false): SimStatsSnapshot {
    const s: SimStatsSnapshot = {
      busy: this.busy, started: this.started, startedFrom: { ...this.startedFrom }, done: this.done, failed: this.failed, returned: this.returned,
      framesStarted: this.framesStarted, framesDone: this.framesDone, resultRetries: this.resultRetries, resultsDropped: this.resultsDropped,
      wait: this.wait.toJSON(), resultRtt: this.resultRtt.toJSON(),
    };
    if (reset) {
      this.wait = new Histogram();
      this.resultRtt = new Histogram();
    }
    return s;
  }
}

export interface SimStatsSnapshot {
  busy: number;
  started: number;
  startedFrom: Record<TaskSource, number>;
  done: number;
  failed: number;
  returned: number;
  framesStarted: number;
  framesDone: number;
  resultRetries: number;
  resultsDropped: number;
  wait: ReturnType<Histogram['toJSON']>;
  resultRtt: ReturnType<Histogram['toJSON']>;
}
