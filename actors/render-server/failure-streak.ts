/**
 * Tasks a host failed in a row, over all its slots, so that a host failing everything is told
 * in its log without a line per stderr line: each failed task is one line already (render-slot),
 * and this adds one summary at 5 failures in a row, then at 10, 20, 40... and one line when a
 * task succeeds again after such a streak.
 */

/** What the summary says: how many tasks and frames failed in a row, with which codes, of which jobs. */
export interface StreakReport {
  tasks: number;
  frames: number;
  /** Failed tasks by error code. */
  codes: Record<string, number>;
  /** Jobs whose tasks failed (the first few). */
  jobs: string[];
  /** Epoch ms of the first failure of the streak. */
  since: number;
}

export const STREAK_FIRST_REPORT = 5;
const MAX_JOBS_NAMED = 5;

export class FailureStreak {
  private tasks = 0;
  private frames = 0;
  private codes: Record<string, number> = {};
  private jobs: string[] = [];
  private since = 0;
  private nextReport = STREAK_FIRST_REPORT;

  /** A task failed; returns the summary to log when the streak just reached a reporting length. */
  failed(t: { jobId: string; code: string; frames: number }, at: number): StreakReport | null {
    if (this.tasks === 0) this.since = at;
    this.tasks++;
    this.frames += t.frames;
    this.codes[t.code] = (this.codes[t.code] ?? 0) + 1;
    if (!this.jobs.includes(t.jobId) && this.jobs.length < MAX_JOBS_NAMED) this.jobs.push(t.jobId);
    if (this.tasks < this.nextReport) return null;
    this.nextReport *= 2;
    return this.report();
  }

  /** A task succeeded; returns the streak it ended when that one had been reported, and starts over. */
  succeeded(): StreakReport | null {
    const ended = this.tasks >= STREAK_FIRST_REPORT ? this.report() : null;
    this.tasks = 0;
    this.frames = 0;
    this.codes = {};
    this.jobs = [];
    this.nextReport = STREAK_FIRST_REPORT;
    return ended;
  }

  private report(): StreakReport {
    return { tasks: this.tasks, frames: this.frames, codes: { ...this.codes }, jobs: [...this.jobs], since: this.since };
  }
}
