/** Different jobs a host must fail within the window to go sick. */
export const SICK_AFTER_JOBS = 3;
/** How far back failures count. */
export const SICK_WINDOW_MS = 10 * 60_000;
/** How long a sick host gets no work unless an operator clears it first. */
export const SICK_FOR_MS = 30 * 60_000;

/**
 * Failure codes that are the storage's fault, not the host's: a full output disk fails every host
 * that writes to it. They count against no host (neither here nor JobBook.isBadHost) and use up no
 * attempt; the job waits STORAGE_RETRY_MS before its frames are tried again.
 */
const STORAGE_FAILURES: readonly string[] = ['RB_OUTPUT_DISK_FULL'];
/** How long a job whose output disk is full waits before its frames are handed out again. */
export const STORAGE_RETRY_MS = 10_000;

/** Whether a failure (its code, or a task's `CODE: message` error) is the storage's fault. */
export function isStorageFailure(codeOrError: string | undefined): boolean {
  return codeOrError !== undefined && STORAGE_FAILURES.some((c) => codeOrError === c || codeOrError.startsWith(`${c}:`));
}

export interface SickHost {
  host: string;
  /** When it gets work again by itself. */
  until: number;
  /** The jobs whose frames it failed. */
  jobs: string[];
}

/**
 * Which hosts are sick: pure data. A host that fails frames of several different jobs is more
 * likely broken than those jobs (a bad disk, a missing font, a driver): it gets no work at all
 * until an operator clears it or SICK_FOR_MS pass. Failures of one job alone only keep the host
 * away from that job (JobBook.isBadHost). Not journaled: a restarted scheduler gives every host
 * another chance.
 */
export class HostHealth {
  private readonly failures = new Map<string, Map<string, number>>();
  private readonly sick = new Map<string, SickHost>();

  /** A task of `jobId` failed on `host`; returns the host's record when this made it sick. */
  failed(host: string, jobId: string, now: number): SickHost | undefined {
    if (this.isSick(host, now)) return undefined;
    const byJob = this.failures.get(host) ?? new Map<string, number>();
    byJob.set(jobId, now);
    for (const [j, at] of byJob) if (now - at > SICK_WINDOW_MS) byJob.delete(j);
    this.failures.set(host, byJob);
    if (byJob.size < SICK_AFTER_JOBS) return undefined;
    const s: SickHost = { host, until: now + SICK_FOR_MS, jobs: [...byJob.keys()] };
    this.sick.set(host, s);
    this.failures.delete(host);
    return s;
  }

  /**
   * `host` cannot see the files of `jobId`, which another host rendered frames of (RB_INPUT_NOT_FOUND):
   * its mount is missing or wrong, which fails every job it gets. It goes sick at once.
   */
  cannotSee(host: string, jobId: string, now: number): SickHost | undefined {
    if (this.isSick(host, now)) return undefined;
    const s: SickHost = { host, until: now + SICK_FOR_MS, jobs: [jobId] };
    this.sick.set(host, s);
    this.failures.delete(host);
    return s;
  }

  /** A job's failures turned out to be its own (a broken scene): they count against no host. */
  acquit(jobId: string): void {
    for (const [host, byJob] of this.failures) {
      byJob.delete(jobId);
      if (byJob.size === 0) this.failures.delete(host);
    }
  }

  isSick(host: string, now: number): boolean {
    const s = this.sick.get(host);
    if (!s) return false;
    if (now < s.until) return true;
    this.sick.delete(host); // its time is up: it gets work again
    return false;
  }

  /** An operator says the host is fixed; false when it was not sick. */
  clear(host: string): boolean {
    this.failures.delete(host);
    return this.sick.delete(host);
  }

  list(now: number): SickHost[] {
    return [...this.sick.values()].filter((s) => this.isSick(s.host, now)).sort((a, b) => a.host.localeCompare(b.host));
  }
}
