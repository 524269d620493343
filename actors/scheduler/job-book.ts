import { createActor, type Actor } from 'xstate';
import {
  AUTO_SITE, DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_HOST_FAILURES, hostMatches, originKey, taskId, toProfile,
  type JobOrigin, type PlacementSummary,
  type FrameRecord, type HostInventory, type JobDetail, type JobSpec, type JobState, type JobSummary,
  type HeldLease, type LimitCount, type LimitUse, type WaitReason, type PreparedJob, type ResourceProfile, type ShareUse, type TaskAssignment, type TaskResult, type TaskStats,
} from '../../protocol/index.ts';
import { jobMachine, type JobCounts } from './job-machine.ts';
import { HostHealth, isStorageFailure, STORAGE_RETRY_MS, type SickHost } from './host-health.ts';
import { blamesHost, cannotRun, hostCannot, JobErrors, usesAttempt } from './job-errors.ts';
import { LeaseTable } from './lease-table.ts';
import { bookFailures, bookFrameRecords, jobSummary } from './job-views.ts';
import { applyRechunk, framesReady, planRechunk } from './rechunk.ts';
import { FairShare } from './fair-share.ts';
import { ProjectBudgets } from './project-budgets.ts';
import { SiteLimits, type LimitBlock } from './site-limits.ts';
import { busyBreakdown, dependencyReason, shareReason, whyWaiting } from './wait-reasons.ts';
import { PreviewOrder, recordFailure, TaskState, TaskTable, type Rechunk, type Task } from './task-table.ts';
import type { Outsourced } from './outsource.ts';

export { previewOrder, TaskState, type Rechunk, type Task } from './task-table.ts';

export interface Job {
  id: string;
  seq: number;
  spec: JobSpec;
  prepared: PreparedJob;
  profile: ResourceProfile;
  profileKey: string;
  name: string;
  user: string;
  group: string;
  /** What it counts against in fair share: spec.project, else its group. */
  project: string;
  submittedAt: number;
  startedAt?: number;
  finishedAt?: number;
  /** Its tasks: untouched ones are computed from its frame runs, not stored. */
  tasks: TaskTable;
  /** Next never-dispatched task, and tasks handed back (host lost, assignment refused, retry). */
  cursor: number;
  /** previewFirst: the order tasks are first handed out in (first, last, middle, then the rest); else index order. */
  order: PreviewOrder | null;
  requeued: number[];
  queuedTasks: number;
  inPending: boolean;
  /** Why the last dispatch round gave it no slot. */
  waiting?: WaitReason;
  machine: Actor<typeof jobMachine>;
  /** Frames queued, running, done and failed; the machine hears only what changes its state. */
  counts: JobCounts;
  /** Host name → matches this job's profile; inventories rarely change, so this is cached. */
  matchCache: Map<string, boolean>;
  timedTasks: number;
  timedMs: number;
  timedFrames: number;
  runningTasks: number;
  /** Leases its tasks hold (running, or in hand). */
  leased: number;
  /** Of those, tasks their slots have not started yet (held in hand), and their frames: not counted running. */
  inHandTasks: number;
  inHandFrames: number;
  /** Frames per task for tasks cut from now on (taskDuration changes it). */
  chunkSize: number;
  /** Some task's memory was raised after it ran out: tasks may no longer fit every matching host. */
  memoryRaised: boolean;
  /** Held at submission until released; paused by an operator. Either way nothing new starts. */
  held: boolean;
  paused: boolean;
  /** Failed tasks of this job by host; a host at the job's maxHostFailures gets no more of them. */
  hostFailures: Map<string, number>;
  /** Its failures: the error budget, hosts that cannot run it, why it failed (job-errors.ts). */
  errors: JobErrors;
  /** A frame failed on a full output disk: no frame of the job is handed out before then (host-health.ts). */
  storageFullUntil?: number;
  /** Jobs that must be done before this one starts (`after`), and the jobs waiting for this one. */
  after: Job[];
  dependents: Job[];
  /** Frame by frame: frame N of this job waits for frame N of each of these (`afterFrames`). */
  afterFrames: Job[];
  /** Stream sequence of its submit record in the journal: where reading it back starts once it left memory. */
  journalSeq?: number;
  /** Sent to a linked site (its spec's `site`, or the site's policy): the outsourced queue's record of it (outsource.ts). */
  remote?: Outsourced;
  /** A job that said `site: auto`: where it was placed and why (site-choice.ts); until then it waits for quotes. */
  placement?: PlacementSummary;
  /** The overflow policy asks the peers for quotes (site-choice.ts): nothing of it is dispatched meanwhile. */
  quoting?: string;
  /** Frames ended by journal replay, told to the job's machine once at the end (finishReplay). */
  restored?: { done: number; failed: number; at: number };
  /** A peer's job the intake submitted (job-origin.ts): that site and its job id there. */
  origin?: JobOrigin;
  /** A split job (split-jobs.ts): its parts' ids; it renders nothing itself. */
  parts?: string[];
  /** A part of a split job: the parent's id. */
  partOf?: string;
}

export type ResultOutcome =
  | { kind: 'unknown' }
  | { kind: 'stale'; job: Job; task: Task }
  /** The result was applied before (a retry whose acknowledgement was lost). */
  | { kind: 'duplicate'; job: Job; task: Task }
  | { kind: 'returned'; job: Job; task: Task }
  /** `jobFailed`: this failure failed the whole job; its `stopped` tasks (running or in hand) are to be killed. */
  | { kind: 'accepted'; job: Job; task: Task; retried: boolean; sick?: SickHost; jobFailed?: string; stopped?: Task[] };

/** A finished job that left memory (retention): where its records start in the journal, and how it ended. */
export interface ArchivedJob {
  /** Stream sequence of its submit record. */
  seq: number;
  state: JobState;
}

/** What a host's lease report changed. */
export interface RenewOutcome {
  /** Tasks a restarted scheduler took back from the report. */
  adopted: Task[];
  /** Leases the host holds that are no longer its own (another attempt, or an ended task): it should drop them. */
  foreign: HeldLease[];
  /** Jobs whose tasks the host lost (unlisted in two reports) went back to the queue. */
  lost: Job[];
  /** Jobs of tasks the report says started (they were in hand until now), once per task. */
  started: Job[];
}

/** A lease granted within this window may not be in the host's next report yet. */
export const LEASE_REPORT_GRACE_MS = 1_000;
/** Reports in a row that leave a lease out before it is taken back. */
export const LEASE_UNLISTED_LIMIT = 2;

const FINISHED: ReadonlySet<string> = new Set(['done', 'failed', 'cancelled']);

/** What a job counts against in fair share and budgets: its project, else its group. */
export const projectOf = (spec: Pick<JobSpec, 'project' | 'group'>): string => spec.project ?? spec.group ?? 'unknown';

/**
 * The scheduler's queue and leases: pure data, no I/O. Jobs wait in priority order (lower
 * number first, FIFO within a priority); each task is leased to one host slot at a time
 * with a growing attempt number, so a late result of an older attempt is recognised.
 */
export class JobBook {
  readonly jobs = new Map<string, Job>();
  /** Finished jobs that left memory (retention), read back from the journal when asked for. */
  readonly archived = new Map<string, ArchivedJob>();
  /** `<site>/<job>` of each origin → the job submitted for it; kept when the job leaves memory (job-origin.ts). */
  readonly origins = new Map<string, string>();
  /** Jobs that have queued tasks, in queue order. */
  private pending: Job[] = [];
  /** Every lease, with the counts dispatch asks for. */
  private readonly leases = new LeaseTable<Job, Task>();
  /** Jobs whose first task started since the runtime last asked (takeFirstStarts). */
  private firstStarts: Job[] = [];
  /** Something may have made a pending job ineligible: queue() filters on its next call. */
  private pendingDirty = false;
  /** Grows whenever `pending` changes, so views of it can be cached. */
  private pendingVersion = 0;
  private byProject?: { version: number; groups: Map<string, Job[]> };
  /** Fair share: projects' weights, and the slots each holds per unit of weight. */
  readonly shares = new FairShare(this.leases);
  /** Projects' outsourcing budgets and the bills' spend (kept here, not with the jobs: retention forgets none of it). */
  readonly budgets = new ProjectBudgets();
  /** The site's named limits (licences): a job's tasks count against those it names in `limits`. */
  readonly limits = new SiteLimits(this.leases);
  /** Hosts that failed frames of several jobs get no work for a while. */
  readonly health = new HostHealth();
  private seq = 0;

  add(id: string, spec: JobSpec, prepared: PreparedJob, at: number, origin?: JobOrigin): Job {
    const machine = createActor(jobMachine).start();
    const total = prepared.frames.count;
    const job: Job = {
      id,
      seq: this.seq++,
      spec,
      prepared,
      profile: toProfile(prepared.requirements),
      profileKey: JSON.stringify(prepared.requirements),
      name: spec.name ?? id,
      user: spec.user ?? 'unknown',
      group: spec.group ?? 'unknown',
      project: projectOf(spec),
      submittedAt: at,
      tasks: new TaskTable(prepared.frames, prepared.chunk, { dir: prepared.outputDir, pattern: prepared.outputPattern, base: at }),
      cursor: 0,
      order: spec.previewFirst ? new PreviewOrder(prepared.taskCount) : null,
      requeued: [],
      queuedTasks: prepared.taskCount,
      inPending: false,
      machine,
      counts: { total, queued: total, running: 0, done: 0, failed: 0 },
      matchCache: new Map(),
      timedTasks: 0,
      timedMs: 0,
      timedFrames: 0,
      runningTasks: 0,
      leased: 0,
      inHandTasks: 0,
      inHandFrames: 0,
      chunkSize: spec.chunk ?? 1,
      memoryRaised: false,
      hostFailures: new Map(),
      errors: new JobErrors(),
      held: spec.hold === true,
      paused: false,
      // the scheduler checked at submission that they exist (jobs can only wait for older jobs: no cycles)
      after: (spec.after ?? []).map((id) => this.jobs.get(id)).filter((j): j is Job => j !== undefined),
      dependents: [],
      afterFrames: (spec.afterFrames ?? []).map((id) => this.jobs.get(id)).filter((j): j is Job => j !== undefined),
    };
    for (const dep of job.after) dep.dependents.push(job);
    if (origin) {
      job.origin = origin;
      this.origins.set(originKey(origin), id);
    }
    this.jobs.set(id, job);
    this.enqueue(job);
    return job;
  }

  state(job: Job): JobState {
    const v = job.machine.getSnapshot().value;
    if (FINISHED.has(v)) return v as JobState;
    if (job.held) return 'held';
    if (job.paused) return 'paused';
    return v as JobState;
  }

  isFinished(job: Job): boolean {
    return FINISHED.has(this.state(job));
  }

  /** Jobs with queued tasks that may start, most urgent first. */
  queue(): readonly Job[] {
    if (this.pendingDirty) {
      // filtered only after something may have changed a job's eligibility: at thousands of
      // results a second, filtering at every call was the scheduler's largest cost
      this.pendingDirty = false;
      const before = this.pending.length;
      this.pending = this.pending.filter((j) => (j.inPending = this.mayStart(j)));
      if (this.pending.length !== before) this.pendingVersion += 1;
    }
    return this.pending;
  }

  /** Whether a job has queued tasks and nothing holds them all back (held, paused, after, ended, rendered at another site). */
  private mayStart(j: Job): boolean {
    return j.queuedTasks > 0 && (j.spec.site === undefined || placedHere(j)) && j.remote === undefined && j.parts === undefined && j.quoting === undefined && !j.held && !j.paused && !this.blockedBy(j) && !this.isFinished(j);
  }

  /**
   * The jobs a free slot looks at, in the order it should: the queue as it is, or with fair
   * share on, project by project from the one furthest under its share (running slots per
   * unit of weight), each project's jobs in queue order.
   */
  *forSlot(): Generator<Job> {
    const queue = this.queue();
    if (!this.shares.enabled) {
      yield* queue;
      return;
    }
    const groups = this.projectGroups();
    const order = [...groups.keys()].sort((a, b) => this.shares.usage(a) - this.shares.usage(b) || queueOrder(groups.get(a)![0]!, groups.get(b)![0]!));
    for (const p of order) yield* groups.get(p)!;
  }

  /** The queue split by project (each in queue order), cached until the queue changes. */
  projectGroups(): Map<string, Job[]> {
    const queue = this.queue();
    if (this.byProject?.version === this.pendingVersion) return this.byProject.groups;
    const groups = new Map<string, Job[]>();
    for (const j of queue) {
      const list = groups.get(j.project);
      if (list) list.push(j);
      else groups.set(j.project, [j]);
    }
    this.byProject = { version: this.pendingVersion, groups };
    return groups;
  }

  /** Fair share: every project that has a weight set or work on the farm, with what it gets. */
  shareUses(): ShareUse[] {
    const queued = new Map<string, number>();
    for (const j of this.queue()) bump(queued, j.project, j.queuedTasks);
    return this.shares.uses(queued);
  }

  /** Why an unfinished job starts nothing new, most fundamental first (wait-reasons.ts); undefined when nothing holds it back. */
  whyWaiting(job: Job): WaitReason | undefined {
    return whyWaiting(this, job);
  }

  shareReason(job: Job): WaitReason | undefined {
    return shareReason(this, job);
  }

  dependencyReason(job: Job): WaitReason | undefined {
    return dependencyReason(this, job);
  }

  busyBreakdown(job: Job): NonNullable<WaitReason['busy']> {
    return busyBreakdown(this, job);
  }

  /** Leases held: busy slots, and tasks held in hand. */
  get busySlots(): number {
    return this.leases.size;
  }

  /** Jobs holding at least one lease. */
  leasedJobs(): ReadonlySet<Job> {
    return this.leases.leasedJobs;
  }

  /** Sets a named limit, or removes it (`max` undefined). */
  setLimit(name: string, max: number | undefined, per: LimitCount = 'task'): void {
    this.limits.set(name, max, per);
    // jobs held back by it may start now
    for (const job of this.jobs.values()) if (job.spec.limits?.includes(name)) this.enqueue(job);
  }

  /** The first limit that keeps one more task of this job off a host (any host when none is named). */
  limitBlocking(job: Job, host?: string): LimitBlock | undefined {
    return this.limits.blocking(job.spec.limits ?? [], host);
  }

  /** The first job this one waits for (`after`) that is not done yet, if any. */
  blockedBy(job: Job): Job | undefined {
    for (const dep of job.after) if (this.state(dep) !== 'done') return dep;
    return undefined;
  }

  /** Pause (no new frames; running ones finish) or resume a job. */
  setPaused(job: Job, paused: boolean): void {
    job.paused = paused;
    if (paused) this.pendingDirty = true;
    else this.enqueue(job);
  }

  /** An outsourced job (outsource.ts) leaves the queue: nothing of it is dispatched here. */
  leaveQueue(job: Job): void {
    if (job.inPending) this.pendingDirty = true;
  }

  /** The overflow policy asks for quotes (`why`: its wait reason), or has its answer (undefined): held out of the queue meanwhile. */
  setQuoting(job: Job, why: string | undefined): void {
    job.quoting = why;
    if (why !== undefined) this.pendingDirty = true;
    else this.enqueue(job);
  }

  /** An `auto` job was placed (site-choice.ts): placed here, it joins the queue. */
  placed(job: Job, placement: PlacementSummary): void {
    job.placement = placement;
    job.waiting = undefined; // "asking for quotes" is over; the next round says what it waits for
    this.enqueue(job);
  }

  /** A job held at submission may start. */
  release(job: Job): void {
    job.held = false;
    this.enqueue(job);
  }

  /** A new priority; its place in the queue follows. Running tasks go on. */
  setPriority(job: Job, priority: number): void {
    job.prepared.priority = priority;
    this.pending = this.pending.filter((j) => j !== job);
    this.pendingVersion += 1;
    job.inPending = false;
    this.enqueue(job);
  }

  /**
   * Queues ended frames again, with fresh attempts: every failed task, or the tasks holding the
   * chosen frames (done or failed). Returns the tasks queued; a cancelled job retries nothing.
   */
  retry(job: Job, frames?: readonly number[]): Task[] {
    this.flushRestored(job); // replayed: the results before this retry count first
    if (this.state(job) === 'cancelled') return [];
    // ended tasks were all touched: only stored tasks can be retried
    const ended = (s: TaskState) => s === TaskState.Done || s === TaskState.Failed;
    const tasks = frames
      ? [...new Set(frames.map((f) => job.tasks.taskOfFrame(f)))]
        .filter((i): i is number => i !== undefined && ended(job.tasks.stateOf(i)))
        .sort((a, b) => a - b)
        .map((i) => job.tasks.get(i)!)
      : [...job.tasks.touchedTasks()].filter((t) => t.state === TaskState.Failed).sort((a, b) => a.index - b.index);
    const failedJob = job.errors.failure !== undefined;
    // a retry is a fresh start for every host too: those kept away from it, or unable to run it
    job.hostFailures.clear();
    job.errors.forgive();
    if (tasks.length === 0 && !failedJob) {
      this.enqueue(job);
      return [];
    }
    let done = 0;
    let failed = 0;
    for (const t of tasks) {
      if (t.state === TaskState.Done) done += t.frames.length;
      else failed += t.frames.length;
      t.failures = 0;
      t.outputs = undefined;
      t.error = undefined;
      t.resolvedAttempt = undefined;
      t.state = TaskState.Queued;
      job.requeued.push(t.index);
      job.queuedTasks += 1;
    }
    job.finishedAt = undefined;
    this.pendingDirty = true; // jobs that run after it wait again
    const c = job.counts;
    c.done -= done;
    c.failed -= failed;
    c.queued += done + failed;
    job.machine.send({ type: 'job.retry' });
    this.enqueue(job);
    return tasks;
  }

  /** A host that failed too many of this job's tasks: kept away from the job (the rest of the farm still uses it). */
  isBadHost(job: Job, host: string): boolean {
    return (job.hostFailures.get(host) ?? 0) >= (job.spec.maxHostFailures ?? DEFAULT_MAX_HOST_FAILURES);
  }

  /** Hosts kept away from a job, for "why is it waiting". */
  badHosts(job: Job): string[] {
    return [...job.hostFailures.keys()].filter((h) => this.isBadHost(job, h));
  }

  /** A bad host for the job, or one that cannot run it (its program missing, its files out of sight). */
  keptAway(job: Job, host: string): boolean {
    return this.isBadHost(job, host) || job.errors.cannot.has(host);
  }

  matches(job: Job, host: string, inv: HostInventory): boolean {
    if (this.keptAway(job, host)) return false;
    let m = job.matchCache.get(host);
    if (m === undefined) {
      m = hostMatches(job.profile, inv);
      job.matchCache.set(host, m);
    }
    return m;
  }

  /** A host restarted or left: what the scheduler cached about it goes (it may have the program, the mount, now). */
  forgetHost(host: string): void {
    for (const job of this.pending) {
      job.matchCache.delete(host);
      job.errors.cannot.delete(host);
    }
  }

  isLeased(host: string, slot: number): boolean {
    return this.leasesOn(host, slot) > 0;
  }

  /** The task's lease is still this attempt's, on this slot, and it has not ended. */
  holds(jobId: string, taskIndex: number, attempt: number, host: string, slot: number): boolean {
    const task = this.jobs.get(jobId)?.tasks.peek(taskIndex);
    const lease = task && this.leases.get(task);
    return lease !== undefined && task!.state === TaskState.Running && task!.attempt === attempt && lease.host === host && lease.slot === slot;
  }

  /** Tasks leased to a slot: the one it renders and the one it holds in hand. */
  leasesOn(host: string, slot: number): number {
    return this.leases.onSlot(host, slot);
  }

  private addLease(job: Job, task: Task, host: string, slot: number, now: number): void {
    this.leases.add(job, task, host, slot, now, task.frames.length, task.startedAt !== undefined);
  }

  /** The slot started a leased task at `at` (no earlier than it was handed out); false when it had already. */
  private markStarted(task: Task, at: number, now: number): boolean {
    const lease = this.leases.get(task);
    if (!lease || !this.leases.start(task)) return false;
    task.startedAt = Math.min(now, Math.max(lease.grantedAt, Math.round(at)));
    this.jobStarted(lease.job, task.startedAt);
    return true;
  }

  /**
   * A job starts when its first task starts rendering, not when a slot takes one in hand: a job
   * held behind another's frame has not started (its start time orders jobs and times them).
   */
  private jobStarted(job: Job, at: number): void {
    if (job.startedAt !== undefined) return;
    job.startedAt = at;
    this.firstStarts.push(job);
  }

  /** The jobs that started since the last call, each once: the runtime announces them. */
  takeFirstStarts(): Job[] {
    const started = this.firstStarts;
    this.firstStarts = [];
    return started;
  }

  /**
   * A slot's result said it had already started the task it held in hand (`want` 1): that task
   * runs from now. Returns its job, when there was one in hand.
   */
  heldStarted(host: string, slot: number, now: number): Job | undefined {
    for (const task of this.leases.slotTasks(host, slot)) if (this.markStarted(task, now, now)) return this.leases.get(task)!.job;
    return undefined;
  }

  /** The job's tasks its slots hold in hand, not started yet (a paused job hands them back). */
  inHand(job: Job): Task[] {
    return [...job.tasks.touchedTasks()].filter((t) => t.state === TaskState.Running && t.startedAt === undefined && this.leases.get(t) !== undefined);
  }

  private dropLease(task: Task): void {
    this.leases.drop(task);
  }

  /** Leases the job's next queued task to a slot; undefined when it has none, or a limit is at its maximum. */
  lease(job: Job, host: string, slot: number, now: number, hostRamMb?: number): TaskAssignment | undefined {
    if (this.health.isSick(host, now) || job.errors.failure !== undefined) return undefined;
    if (job.storageFullUntil !== undefined && now < job.storageFullUntil) return undefined;
    if (job.spec.limits && this.limitBlocking(job, host)) return undefined;
    const task = this.takeQueued(job, hostRamMb);
    if (!task) return undefined;
    task.state = TaskState.Running;
    job.runningTasks += 1;
    task.attempt += 1;
    task.host = host;
    task.slot = slot;
    task.handedAt = now;
    // a slot that holds no other lease renders nothing: it starts the task as it arrives; a busy
    // one holds it in hand until its slot says it started it (heldStarted, renew)
    task.startedAt = this.leases.onSlot(host, slot) === 0 ? now : undefined;
    task.finishedAt = undefined;
    this.addLease(job, task, host, slot, now);
    if (task.startedAt !== undefined) this.jobStarted(job, task.startedAt);
    job.waiting = undefined;
    this.countDispatched(job, task.frames.length);
    const p = job.prepared;
    return {
      taskId: taskId(job.id, task.index),
      jobId: job.id,
      taskIndex: task.index,
      attempt: task.attempt,
      slot,
      frames: task.frames,
      renderer: p.renderer,
      scene: job.spec.scene,
      ...(job.spec.command ? { command: job.spec.command } : {}),
      ...(job.spec.blender ? { blender: job.spec.blender } : {}),
      ...(job.spec.progress !== undefined ? { progress: job.spec.progress } : {}),
      ...(job.spec.errors ? { errors: job.spec.errors } : {}),
      ...(job.spec.sceneErrors ? { sceneErrors: job.spec.sceneErrors } : {}),
      ...(p.resolution ? { resolution: p.resolution } : {}),
      outputDir: p.outputDir,
      outputPattern: p.outputPattern,
      ...(job.spec.timeLimit !== undefined ? { timeLimitMs: Math.round(job.spec.timeLimit * 1000) } : {}),
      ...(job.spec.stallLimit !== undefined ? { stallLimitMs: Math.round(job.spec.stallLimit * 1000) } : {}),
      ...(memoryOf(job, task) !== undefined ? { memoryLimitMb: memoryOf(job, task) } : {}),
      ...(job.spec.env ? { env: job.spec.env } : {}),
      ...(job.spec.sandbox ? { sandbox: sandboxOf(job.spec) } : {}),
    };
  }

  /** The assignment never reached the slot (refused, or no answer): the task goes back to the queue. */
  unlease(jobId: string, taskIndex: number, attempt: number): void {
    const job = this.jobs.get(jobId);
    const task = job?.tasks.peek(taskIndex);
    if (!job || !task || task.state !== TaskState.Running || task.attempt !== attempt) return;
    this.requeue(job, task);
  }

  /**
   * Applies a task's result once. The running attempt's result is taken from the slot that holds
   * its lease. So is the result of a queued task's latest attempt from the host it was leased to
   * (the lease expired, but the frame was rendered all the same). Anything else is stale (another
   * attempt, another host, a task never handed out: ignored), and the result already applied is a
   * duplicate (its acknowledgement was lost).
   */
  result(r: TaskResult, now: number): ResultOutcome {
    const job = this.jobs.get(r.jobId);
    if (!job || !job.tasks.has(r.taskIndex)) return { kind: 'unknown' };
    // an untouched task was never handed out: its result is stale, and it stays untouched
    const task = job.tasks.peek(r.taskIndex) ?? job.tasks.view(r.taskIndex)!;
    const lease = this.leases.get(task);
    const fromHolder = lease !== undefined && lease.host === r.host && lease.slot === r.slot;
    if (task.resolvedAttempt === r.attempt && task.host === r.host && r.status !== 'returned') return { kind: 'duplicate', job, task };
    const current =
      task.state === TaskState.Running
        ? task.attempt === r.attempt && fromHolder
        : task.state === TaskState.Queued && task.attempt >= 1 && task.attempt === r.attempt && task.host === r.host && task.resolvedAttempt !== r.attempt;
    if (!current || this.isFinished(job)) return { kind: 'stale', job, task };
    if (r.status === 'returned') {
      // handed back unrendered: queued again, and no attempt is used up
      if (task.state === TaskState.Running) this.requeue(job, task);
      return { kind: 'returned', job, task };
    }
    // no lease report said it started: it started its wall time before it ended
    if (lease) this.markStarted(task, now - r.stats.wallMs, now);
    task.startedAt ??= Math.round(now - r.stats.wallMs);
    if (lease) this.dropLease(task);
    const wasQueued = task.state === TaskState.Queued;
    if (wasQueued) this.dropQueued(job, task);
    else job.runningTasks -= 1;
    task.attempt = r.attempt;
    task.resolvedAttempt = r.attempt;
    task.host = r.host;
    task.slot = r.slot;
    task.finishedAt = now;
    task.stats = r.stats;
    if (r.status === 'done') {
      task.state = TaskState.Done;
      task.outputs = r.outputs;
      task.error = undefined;
      job.timedTasks += 1;
      job.timedMs += r.stats.wallMs;
      job.timedFrames += task.frames.length;
      this.countEnded(job, task.frames.length, 0, wasQueued);
      if (job.spec.taskDuration !== undefined) {
        const plan = planRechunk(job);
        if (plan) {
          applyRechunk(job, plan);
          task.rechunk = plan;
        }
      }
      job.tasks.done(task);
      this.finishIfEnded(job, now);
      return { kind: 'accepted', job, task, retried: false };
    }
    task.error = r.error ? `${r.error.code}: ${r.error.message}` : 'failed';
    recordFailure(task);
    if (isStorageFailure(r.error?.code)) {
      // the output disk is full: not the host's fault, and not an attempt used; tried again later
      job.storageFullUntil = now + STORAGE_RETRY_MS;
      if (wasQueued) this.pushQueued(job, task);
      else {
        job.runningTasks += 1; // requeue() moves it from running to queued
        this.requeue(job, task);
      }
      return { kind: 'accepted', job, task, retried: true };
    }
    if (hostCannot(r.error?.code)) {
      // the host cannot run this job at all: it stops matching the job; no attempt is used (job-errors.ts)
      const sick = cannotRun(this.health, job, r.host, task.error, now);
      if (wasQueued) this.pushQueued(job, task);
      else {
        job.runningTasks += 1;
        this.requeue(job, task);
      }
      return { kind: 'accepted', job, task, retried: true, ...(sick ? { sick } : {}) };
    }
    task.failures += 1;
    if (r.error?.code === 'RB_OUT_OF_MEMORY') this.raiseMemory(job, task, r.stats);
    const failed = job.errors.counted(r.host, task.error, job.spec.maxTaskErrors);
    const sick = blamesHost(r.error?.code) && !failed?.scene ? this.blameHost(job, r.host, now) : undefined;
    if (failed) {
      task.state = TaskState.Failed;
      this.countEnded(job, 0, task.frames.length, wasQueued);
      if (failed.scene) this.health.acquit(job.id); // its failures on the hosts were the scene's
      const stopped = this.failJob(job, failed.reason, now);
      return { kind: 'accepted', job, task, retried: false, jobFailed: failed.reason, stopped, ...(sick ? { sick } : {}) };
    }
    if (task.failures < (job.spec.maxAttempts ?? DEFAULT_MAX_ATTEMPTS)) {
      if (wasQueued) this.pushQueued(job, task);
      else {
        job.runningTasks += 1; // requeue() moves it from running to queued
        this.requeue(job, task);
      }
      return { kind: 'accepted', job, task, retried: true, ...(sick ? { sick } : {}) };
    }
    task.state = TaskState.Failed;
    this.countEnded(job, 0, task.frames.length, wasQueued);
    this.finishIfEnded(job, now);
    return { kind: 'accepted', job, task, retried: false, ...(sick ? { sick } : {}) };
  }

  private blameHost(job: Job, host: string, now: number): SickHost | undefined {
    job.hostFailures.set(host, (job.hostFailures.get(host) ?? 0) + 1);
    return this.health.failed(host, job.id, now);
  }

  /**
   * The whole job failed (job-errors.ts): nothing more of it starts. Its running tasks and those
   * in hand go back to the queue, to wait for a retry; they are returned, to be killed.
   */
  failJob(job: Job, reason: string, now: number): Task[] {
    this.flushRestored(job); // replayed: the results before the failure count first
    job.errors.failure = reason;
    job.machine.send({ type: 'job.ended', failed: true });
    const stopped = [...job.tasks.touchedTasks()].filter((t) => t.state === TaskState.Running && this.leases.get(t) !== undefined);
    for (const t of stopped) this.requeue(job, t); // keeps their host and attempt, for the kill
    this.finishIfEnded(job, now);
    return stopped;
  }

  /** A host went away: every task leased there goes back to the queue. */
  releaseHost(host: string): Job[] {
    const touched = new Set<Job>();
    for (const task of this.leases.onHost(host)) {
      const job = this.leases.get(task)!.job;
      this.dropLease(task);
      if (task.state === TaskState.Running && !this.isFinished(job)) {
        this.requeue(job, task);
        touched.add(job);
      }
    }
    return [...touched];
  }

  /** Hosts that hold at least one lease. */
  leaseholders(): Set<string> {
    return this.leases.hosts();
  }

  /**
   * A host's lease report: renews the leases it lists, and takes back (adopts) tasks that a
   * restarted scheduler had queued again. Leases the host holds that are no longer its own
   * (another attempt runs, or the task ended) come back as `foreign`. A lease the host leaves
   * out of LEASE_UNLISTED_LIMIT reports after its grace period was lost (an assignment that
   * never arrived, a server that restarted): its task goes back to the queue.
   */
  renew(host: string, held: readonly HeldLease[], now: number): RenewOutcome {
    const out: RenewOutcome = { adopted: [], foreign: [], lost: [], started: [] };
    const listed = new Set<Task>();
    for (const h of held) {
      const job = this.jobs.get(h.jobId);
      const task = job?.tasks.view(h.taskIndex);
      if (!job || !task) {
        out.foreign.push(h);
        continue;
      }
      const lease = this.leases.get(task);
      if (lease && lease.host === host && lease.slot === h.slot && task.attempt === h.attempt) {
        lease.unconfirmed = 0;
        listed.add(task);
        if (h.state !== 'held' && this.markStarted(task, h.startedAt ?? now, now)) out.started.push(job);
        else if (h.state === 'held' && this.leases.unstart(task)) task.startedAt = undefined;
      } else if (task.state === TaskState.Queued && h.attempt >= task.attempt && task.resolvedAttempt !== h.attempt && !this.isFinished(job)) {
        const kept = job.tasks.get(h.taskIndex)!;
        this.adopt(job, kept, host, h.slot, h.attempt, now, h.state === 'held' ? undefined : (h.startedAt ?? now));
        listed.add(kept);
        out.adopted.push(kept);
      } else if (h.state !== 'reporting') {
        // a result on its way is judged when it arrives (it may still be taken)
        out.foreign.push(h);
      }
    }
    const lost = new Set<Job>();
    for (const task of this.leases.onHost(host)) {
      const lease = this.leases.get(task)!;
      if (listed.has(task) || now - lease.grantedAt < LEASE_REPORT_GRACE_MS) continue;
      lease.unconfirmed += 1;
      if (lease.unconfirmed < LEASE_UNLISTED_LIMIT) continue;
      this.dropLease(task);
      if (task.state === TaskState.Running && !this.isFinished(lease.job)) {
        this.requeue(lease.job, task);
        lost.add(lease.job);
      }
    }
    out.lost = [...lost];
    return out;
  }

  /** A queued task turns out to be running on a slot (reported after a scheduler restart). */
  private adopt(job: Job, task: Task, host: string, slot: number, attempt: number, now: number, startedAt: number | undefined): void {
    this.dropQueued(job, task);
    task.state = TaskState.Running;
    task.attempt = attempt;
    task.host = host;
    task.slot = slot;
    task.handedAt = now;
    task.startedAt = startedAt === undefined ? undefined : Math.min(now, Math.round(startedAt));
    task.finishedAt = undefined;
    job.runningTasks += 1;
    this.addLease(job, task, host, slot, now);
    if (task.startedAt !== undefined) this.jobStarted(job, task.startedAt);
    job.waiting = undefined;
    this.countDispatched(job, task.frames.length);
  }

  /** Cancels a job: queued tasks are dropped; running ones are returned so their slots can be told. */
  cancel(job: Job, now: number): Task[] {
    this.flushRestored(job); // a replayed cancel comes after the job's replayed results
    const touched = [...job.tasks.touchedTasks()];
    const running = touched.filter((t) => t.state === TaskState.Running).sort((a, b) => a.index - b.index);
    job.runningTasks = 0;
    for (const t of touched) if (t.state === TaskState.Queued || t.state === TaskState.Running) t.state = TaskState.Cancelled;
    job.tasks.cancelUntouched();
    for (const t of running) this.dropLease(t);
    job.queuedTasks = 0;
    this.pendingDirty = true;
    job.requeued = [];
    job.finishedAt = now;
    job.counts.queued = 0; // a cancelled job's unfinished frames are neither queued nor running any more
    job.counts.running = 0;
    job.machine.send({ type: 'job.cancel' });
    return running;
  }

  /** Journal replay: an attempt failed and the task was queued again. */
  restoreRetry(job: Job, taskIndex: number, attempt: number, error: string | undefined, stats?: TaskStats, ran?: Pick<Task, 'host' | 'slot' | 'startedAt' | 'finishedAt'>): void {
    if (job.tasks.stateOf(taskIndex) !== TaskState.Queued || job.tasks.peek(taskIndex)?.resolvedAttempt === attempt) return;
    const task = job.tasks.get(taskIndex)!;
    if (usesAttempt(error)) {
      task.failures += 1;
      if (ran?.host !== undefined && error !== undefined) job.errors.counted(ran.host, error, job.spec.maxTaskErrors); // the budget, as it was
    }
    if (error?.startsWith('RB_OUT_OF_MEMORY') && stats) this.raiseMemory(job, task, stats);
    task.attempt = Math.max(task.attempt, attempt);
    task.resolvedAttempt = attempt;
    task.error = error;
    if (ran) recordFailure(task, { ...ran, attempt, error });
  }

  /** Journal replay: a task ended before the restart. */
  restoreEnded(job: Job, taskIndex: number, status: 'done' | 'failed', detail: Pick<Task, 'outputs' | 'error' | 'stats' | 'finishedAt' | 'host' | 'slot' | 'attempt' | 'startedAt'>, rechunk?: Rechunk): void {
    if (!job.tasks.has(taskIndex) || job.tasks.stateOf(taskIndex) !== TaskState.Queued) return;
    const task = job.tasks.get(taskIndex)!;
    this.dropQueued(job, task);
    Object.assign(task, detail);
    if (status === 'done' && detail.stats) {
      job.timedTasks += 1;
      job.timedMs += detail.stats.wallMs;
      job.timedFrames += task.frames.length;
    }
    if (rechunk) {
      applyRechunk(job, rechunk);
      task.rechunk = rechunk;
    }
    task.resolvedAttempt = detail.attempt;
    if (status === 'failed' && detail.host !== undefined && detail.error !== undefined && usesAttempt(detail.error)) job.errors.counted(detail.host, detail.error, job.spec.maxTaskErrors);
    task.state = status === 'done' ? TaskState.Done : TaskState.Failed;
    if (status === 'failed') recordFailure(task);
    if (status === 'done') job.tasks.done(task);
    // counted here and told to the job's machine once per job: a transition per record was a
    // third of a long replay (docs/benchmarks.md, scheduler recovery)
    const r = (job.restored ??= { done: 0, failed: 0, at: job.submittedAt });
    if (status === 'done') r.done += task.frames.length;
    else r.failed += task.frames.length;
    r.at = Math.max(r.at, detail.finishedAt ?? job.submittedAt);
  }

  /** The end of a journal replay: every job's machine learns how many of its frames had ended. */
  finishReplay(): void {
    for (const job of this.jobs.values()) this.flushRestored(job);
  }

  private flushRestored(job: Job): void {
    const r = job.restored;
    if (!r) return;
    job.restored = undefined;
    this.countEnded(job, r.done, r.failed, true);
    this.finishIfEnded(job, r.at);
  }

  summary(job: Job): JobSummary {
    return jobSummary(this, job);
  }

  /** The job's frames after frame `after` (all when undefined), ascending (job-views.ts). */
  frameRecords(job: Job, after?: number): Generator<FrameRecord> {
    return bookFrameRecords(this, job, after);
  }

  failures(job: Job): { frame: number; error: string }[] {
    return bookFailures(this, job);
  }

  /** The job with every frame (a large job's view is paged instead: frameRecords). */
  detail(job: Job): JobDetail {
    return { ...this.summary(job), spec: job.spec, frames: [...this.frameRecords(job)] };
  }

  /**
   * A finished job leaves memory (retention): only where its records start in the journal, and
   * how it ended, are kept. The caller checked that nothing needs it (jobsToEvict).
   */
  evict(job: Job): void {
    if (!this.isFinished(job) || job.journalSeq === undefined) return;
    this.archived.set(job.id, { seq: job.journalSeq, state: this.state(job) });
    this.jobs.delete(job.id);
    for (const dep of job.after) dep.dependents = dep.dependents.filter((d) => d !== job);
    if (job.inPending) {
      this.pending = this.pending.filter((j) => j !== job);
      job.inPending = false;
      this.pendingVersion += 1;
    }
    job.machine.stop();
  }

  /** Active jobs in queue order, then ended ones, newest first. */
  list(): Job[] {
    const all = [...this.jobs.values()];
    const active = all.filter((j) => !this.isFinished(j)).sort(queueOrder);
    const ended = all.filter((j) => this.isFinished(j)).sort((a, b) => b.seq - a.seq);
    return [...active, ...ended];
  }

  /** A job that may have ended (here, or at the site it was sent to: outsource.ts) is finished, and frees the jobs after it. */
  finishIfEnded(job: Job, now: number): void {
    if (!this.isFinished(job)) return;
    job.finishedAt ??= now;
    this.pendingDirty = true;
    // jobs that ran after this one may start now
    if (this.state(job) === 'done') for (const d of job.dependents) this.enqueue(d);
  }

  /** Frame by frame: the first queued task whose frames may start, taken without skipping the others. */
  private takeReady(job: Job, hostRamMb?: number): Task | undefined {
    const tasks = job.tasks;
    job.requeued = job.requeued.filter((i) => tasks.stateOf(i) === TaskState.Queued);
    const at = job.requeued.findIndex((i) => fits(tasks.peek(i), hostRamMb) && framesReady(job, i));
    if (at >= 0) {
      const [i] = job.requeued.splice(at, 1);
      this.took(job);
      return tasks.get(i!);
    }
    for (let p = job.cursor; p < tasks.length; p++) {
      const i = job.order ? job.order.at(p) : p;
      if (tasks.stateOf(i) !== TaskState.Queued || !framesReady(job, i)) continue;
      // the queued tasks it passed over wait in `requeued`, checked first next time
      job.requeued.push(...this.skippedBetween(job, job.cursor, p));
      job.cursor = p + 1;
      this.took(job);
      return tasks.get(i);
    }
    return undefined;
  }

  /** Tasks still queued between two cursor positions (frame by frame: passed over, to be taken later). */
  private skippedBetween(job: Job, from: number, to: number): number[] {
    const out: number[] = [];
    for (let p = from; p < to; p++) {
      const index = job.order ? job.order.at(p) : p;
      if (job.tasks.stateOf(index) === TaskState.Queued) out.push(index);
    }
    return out;
  }

  private takeQueued(job: Job, hostRamMb?: number): Task | undefined {
    if (job.afterFrames.length > 0) return this.takeReady(job, hostRamMb);
    const tasks = job.tasks;
    if (job.memoryRaised) {
      // a task whose memory was raised may not fit this host: take the first that does
      job.requeued = job.requeued.filter((i) => tasks.stateOf(i) === TaskState.Queued);
      const at = job.requeued.findIndex((i) => fits(tasks.peek(i), hostRamMb));
      if (at >= 0) {
        const [i] = job.requeued.splice(at, 1);
        this.took(job);
        return tasks.get(i!);
      }
    }
    while (job.requeued.length > 0 && !job.memoryRaised) {
      const i = job.requeued.shift()!;
      if (tasks.stateOf(i) === TaskState.Queued) {
        this.took(job);
        return tasks.get(i);
      }
    }
    const length = job.order ? job.order.length : tasks.length;
    while (job.cursor < length) {
      const p = job.cursor++;
      const i = job.order ? job.order.at(p) : p;
      if (tasks.stateOf(i) === TaskState.Queued) {
        this.took(job);
        return tasks.get(i);
      }
    }
    return undefined;
  }

  /** Frames left the queue for slots; the first ones start the job. */
  private countDispatched(job: Job, n: number): void {
    job.counts.queued -= n;
    job.counts.running += n;
    if (job.machine.getSnapshot().value === 'queued') job.machine.send({ type: 'job.started' });
  }

  /** Frames ended, done or failed, from slots or straight from the queue (replay); the last ones end the job. */
  private countEnded(job: Job, done: number, failed: number, fromQueue: boolean): void {
    const c = job.counts;
    if (job.machine.getSnapshot().status !== 'active') return; // cancelled: its counts stay as they are
    c.done += done;
    c.failed += failed;
    if (fromQueue) c.queued -= done + failed;
    else c.running -= done + failed;
    if (done + failed > 0 && c.done + c.failed === c.total) job.machine.send({ type: 'job.ended', failed: c.failed > 0 });
  }

  /** One queued task of the job was taken. */
  private took(job: Job): void {
    job.queuedTasks -= 1;
    if (job.queuedTasks === 0) this.pendingDirty = true;
  }

  /** A task that ran out of memory gets 1.5 times as much (its last peak, when the job set none). */
  private raiseMemory(job: Job, task: Task, stats: TaskStats): void {
    const had = memoryOf(job, task) ?? Math.ceil(stats.peakRssKb / 1024);
    task.memoryMb = Math.max(1, Math.ceil(had * 1.5));
    job.memoryRaised = true;
  }

  /** The smallest memory a queued task of the job needs, when none fits a host of `maxRamMb` (raised after running out). */
  memoryBlocked(job: Job, maxRamMb: number): number | undefined {
    if (!job.memoryRaised) return undefined;
    let least = Infinity;
    let touchedQueued = 0;
    for (const t of job.tasks.touchedTasks()) {
      if (t.state !== TaskState.Queued) continue;
      touchedQueued += 1;
      const need = memoryOf(job, t) ?? 0;
      if (need <= maxRamMb) return undefined;
      least = Math.min(least, need);
    }
    // untouched queued tasks (the rest of the count) need the job's memory, which every matching host has
    if (job.queuedTasks > touchedQueued) return undefined;
    return least === Infinity ? undefined : least;
  }

  private requeue(job: Job, task: Task): void {
    this.dropLease(task);
    task.state = TaskState.Queued;
    job.runningTasks -= 1;
    job.counts.running -= task.frames.length;
    job.counts.queued += task.frames.length;
    this.pushQueued(job, task);
  }

  private pushQueued(job: Job, task: Task): void {
    task.state = TaskState.Queued;
    job.requeued.push(task.index);
    job.queuedTasks += 1;
    this.enqueue(job);
  }

  /** A queued task ends without a dispatch (a late result, or replay). */
  private dropQueued(job: Job, task: Task): void {
    task.state = TaskState.Running; // leaves the queue; takeQueued skips non-queued entries
    this.took(job);
  }

  private enqueue(job: Job): void {
    if (job.inPending || !this.mayStart(job)) return;
    job.inPending = true;
    this.pendingVersion += 1;
    let lo = 0;
    let hi = this.pending.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (queueOrder(this.pending[mid]!, job) <= 0) lo = mid + 1;
      else hi = mid;
    }
    this.pending.splice(lo, 0, job);
  }
}

/** Lower priority number first; FIFO within a priority. */
function queueOrder(a: Job, b: Job): number {
  return a.prepared.priority - b.prepared.priority || a.seq - b.seq;
}

/** Adds to a count in a map, deleting it at zero. */
function bump<K>(m: Map<K, number>, key: K, by: number): void {
  const n = (m.get(key) ?? 0) + by;
  if (n > 0) m.set(key, n);
  else m.delete(key);
}

/** Memory a task may use (MB): raised after it ran out, else the job's; undefined: no limit. */
function memoryOf(job: Job, task: Task): number | undefined {
  return task.memoryMb ?? job.spec.memoryMb;
}

/** Whether a task's memory fits a host's RAM (unknown RAM, or an untouched task: yes). */
function fits(task: Task | undefined, hostRamMb: number | undefined): boolean {
  return hostRamMb === undefined || task?.memoryMb === undefined || task.memoryMb <= hostRamMb;
}

/** What a render server needs to sandbox the job's tasks: its files' folders, or a peer's job's tree. */
function sandboxOf(spec: JobSpec): { files?: string[]; root?: string } {
  if (typeof spec.sandbox === 'object') return { root: spec.sandbox.root };
  return { files: [spec.scene, ...(spec.supportFiles ?? [])] };
}

/** A job that said `site: auto` and was placed here: it renders as if it had named no site. */
export function placedHere(j: Job): boolean {
  return j.spec.site === AUTO_SITE && j.placement !== undefined && j.placement.peer === undefined;
}
