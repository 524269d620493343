import { DEFAULT_MAX_TASK_ERRORS, type JobSpec, type RendererName } from '../../protocol/index.ts';
import { isStorageFailure, type HostHealth, type SickHost } from './host-health.ts';
import type { Job, JobBook } from './job-book.ts';
import { TaskState } from './task-table.ts';

/*
 * Whose fault a failed attempt is (docs/scheduling.md, "When a job fails"). The storage's (a full
 * output disk: host-health.ts) and the host's when it cannot run the job at all (its program
 * missing, its files out of sight) use up no attempt and count against nothing of the job. The
 * scene's (a parse error, or the same error on several hosts) fails the whole job at once. The
 * rest count against the task's attempts and against the job's error budget (maxTaskErrors).
 */

/** Hosts that report the same renderer error for a job: it is the job's, not theirs. */
export const SAME_ERROR_HOSTS = 2;

/** Codes that say this host cannot run the job at all: the host stops matching the job, nothing else. */
const HOST_CANNOT = ['RB_RENDERER_MISSING', 'RB_INPUT_NOT_FOUND'] as const;
export type HostCannot = (typeof HOST_CANNOT)[number];

/** The code of a task's `CODE: message` error (or a bare code). */
export function codeOf(error: string | undefined): string | undefined {
  if (error === undefined) return undefined;
  const at = error.indexOf(':');
  return at < 0 ? error : error.slice(0, at);
}

/** The code, when it says the host cannot run the job (RB_RENDERER_MISSING, RB_INPUT_NOT_FOUND). */
export function hostCannot(codeOrError: string | undefined): HostCannot | undefined {
  const code = codeOf(codeOrError);
  return HOST_CANNOT.find((c) => c === code);
}

/** Whether a failure uses up one of its task's attempts (and counts against the job's budget). */
export function usesAttempt(codeOrError: string | undefined): boolean {
  return !isStorageFailure(codeOrError) && hostCannot(codeOrError) === undefined;
}

/** Whether a failure counts against its host (bad host for the job, sick host): not when the scene is to blame. */
export function blamesHost(codeOrError: string | undefined): boolean {
  return usesAttempt(codeOrError) && codeOf(codeOrError) !== 'RB_SCENE_ERROR';
}

/** The program a job runs: a command job's first word, else its renderer. */
export function programOf(spec: Pick<JobSpec, 'command'>, renderer: RendererName): string {
  const first = spec.command?.trim().split(/\s+/)[0];
  return first ? first.replace(/^['"]|['"]$/g, '') : renderer;
}

/**
 * One job's failures so far: pure data, kept by the JobBook. Not journaled as such: replay feeds
 * it the failed attempts again, and the record of the failure that ended the job says so.
 */
export class JobErrors {
  /** Failed attempts counted against maxTaskErrors. */
  count = 0;
  /** Why the whole job failed (`RB_JOB_FAILED: ...`), while it is failed. */
  failure?: string;
  /** Hosts that cannot run the job (RB_RENDERER_MISSING, RB_INPUT_NOT_FOUND), with what they said. */
  readonly cannot = new Map<string, { code: HostCannot; error: string }>();
  /** Each host's last counted error, to say why hosts are kept away. */
  readonly lastByHost = new Map<string, string>();
  /** RB_RENDER_FAILED error text → hosts that reported it. */
  private readonly hostsByText = new Map<string, Set<string>>();

  /**
   * A failed attempt that uses one up (usesAttempt). Returns why the whole job fails now, when it
   * does: its scene is broken, several hosts failed it the same way (`scene`: the hosts are not to
   * blame), or its error budget is spent.
   */
  counted(host: string, error: string, maxTaskErrors = DEFAULT_MAX_TASK_ERRORS): { reason: string; scene: boolean } | undefined {
    this.count += 1;
    this.lastByHost.set(host, error);
    const code = codeOf(error);
    if (code === 'RB_SCENE_ERROR') return { reason: `RB_JOB_FAILED: its scene is broken (${host}): ${error}`, scene: true };
    if (code === 'RB_RENDER_FAILED') {
      // a renderer's error text names the scene, not the host: the same text from several hosts is the scene's
      const hosts = this.hostsByText.get(error) ?? new Set<string>();
      hosts.add(host);
      this.hostsByText.set(error, hosts);
      if (hosts.size >= SAME_ERROR_HOSTS) return { reason: `RB_JOB_FAILED: ${hosts.size} hosts failed it the same way (${[...hosts].sort().join(', ')}): ${error}`, scene: true };
    }
    if (this.count >= maxTaskErrors) return { reason: `RB_JOB_FAILED: ${this.count} failed attempts spent its error budget (maxTaskErrors ${maxTaskErrors}); the last: ${error}`, scene: false };
    return undefined;
  }

  /** A retry: a fresh start. Returns the hosts that could not run the job (forgiven with it). */
  forgive(): string[] {
    const hosts = [...this.cannot.keys()];
    this.count = 0;
    this.failure = undefined;
    this.cannot.clear();
    this.lastByHost.clear();
    this.hostsByText.clear();
    return hosts;
  }
}

/**
 * A host cannot run the job (its program missing, its files out of sight): it gets no more of it.
 * One that cannot see the files of a job that hosts rendered frames of goes sick (its mount).
 */
export function cannotRun(health: HostHealth, job: Job, host: string, error: string, now: number): SickHost | undefined {
  const code = hostCannot(error)!;
  job.errors.cannot.set(host, { code, error });
  return code === 'RB_INPUT_NOT_FOUND' && job.counts.done > 0 ? health.cannotSee(host, job.id, now) : undefined;
}

/** Every host kept away from the job (bad hosts, hosts that cannot run it): what a retry forgives. */
export function keptAwayHosts(book: JobBook, job: Job): string[] {
  return [...new Set([...book.badHosts(job), ...job.errors.cannot.keys()])].sort();
}

/** Whether `retry` (of these frames) would change anything: frames to queue again, hosts to forgive, a failed job. */
export function retryWouldChange(book: JobBook, job: Job, frames?: readonly number[]): boolean {
  if (book.state(job) === 'cancelled') return false;
  if (job.errors.failure !== undefined || (!book.isFinished(job) && keptAwayHosts(book, job).length > 0)) return true;
  if (!frames) return job.counts.failed > 0;
  return frames.some((f) => {
    const s = job.tasks.stateOf(job.tasks.taskOfFrame(f) ?? -1);
    return s === TaskState.Done || s === TaskState.Failed;
  });
}
