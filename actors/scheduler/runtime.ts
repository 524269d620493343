import { dirname, resolve as resolvePath } from 'node:path';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { createActor, fromPromise, waitFor } from 'xstate';
import {
  aboutFrames, AUTO_SITE, checkNotify, parseBudget, codecs, taskId, encodeAny, FarmError, lastToken, MAX_PAYLOAD, newInstanceId, newJobId, prepareJob, PROTOCOL_MAJOR, subjects,
  type CtlRequest, type FrameEvent, type HeldLease, type JobEvent, type JournalRecord, type LeaseReport, type MatchBody, type QueryRequest,
  type HostsRequest, type JobOrigin, type Money, type PeerQuote, type PlacementSummary, type LimitsRequest, type RemoteUpdate, type SharesRequest, type BudgetsRequest, type SubmitRequest, type TaskAssignment, type TaskResult, type WaitReason,
} from '../../protocol/index.ts';
import { call, callerOf, listen, serve, timedOut } from '../bus/index.ts';
import { planDispatch, type KnownHost } from './dispatch.ts';
import { JobBook, projectOf, type Job, type Task } from './job-book.ts';
import { keptAwayHosts, retryWouldChange } from './job-errors.ts';
import { Journal } from './journal.ts';
import { readHostTurns } from './host-turns.ts';
import { jobPage, jobsPage } from './query-pages.ts';
import { checkQueueLimits, queueLimits, type QueueLimits } from './queue-limits.ts';
import { applyControl as applyControlTo, applyRecord, rebuildJob } from './replay.ts';
import { jobsToEvict, retention, type Retention } from './retention.ts';
import { HostLiveness } from './liveness.ts';
import { intakeRequests } from './job-origin.ts';
import { schedulerMachine } from './machine.ts';
import { applyPlacement, applyRemote, checkOutsource, outsource, remoteStarted, shouldOutsource } from './outsource.ts';
import { queueLoad } from './queue-load.ts';
import { applySplit, partsOf, splitChoice, syncParent } from './split-jobs.ts';
import { chooseSite, localSide, mayOverflow, roomHere, staysHere } from './site-choice.ts';
import { checkPolicy, noLocalHost, unrenderableVerdict, withPolicyNote } from './outsource-policy.ts';

export interface SchedulerOptions {
  nc: NatsConnection;
  site: string;
  log: Logger;
  /** Clock, for tests. */
  now?: () => number;
  /** Frames it takes in (site, per user, per job); defaults: DEFAULT_QUEUE_LIMITS. */
  limits?: Partial<QueueLimits>;
  /** Finished jobs it keeps in memory; defaults: DEFAULT_RETENTION. */
  retention?: Partial<Retention>;
  /**
   * The site's linked peers: a job naming one (`site`) is sent there; naming another site is
   * refused. A function is asked at each submit (a linked site's peers change while it runs).
   */
  peers?: readonly string[] | (() => readonly string[]);
  /**
   * The site's policy for a job no local host can render (outsource-policy.ts): peers in order of
   * preference; such a job goes to the first one linked, as if it had said `site`. None: it waits.
   */
  outsourceUnrenderable?: readonly string[];
  /** The site's policy: every job renders in the I/O wrapper (docs/security.md, "The sandbox"), whatever it says. */
  sandboxAll?: boolean;
  /**
   * The site's overflow policy (site-choice.ts): a job that names no site is quoted by these
   * linked peers when the farm here is busy, and sent to one that finishes it first. None: off.
   */
  outsourceOverflow?: readonly string[];
  /** How long a `site: auto` job's quotes are awaited from each peer (default QUOTE_TIMEOUT_MS). */
  quoteTimeoutMs?: number;
  /**
   * What is left of a project's budget: a peer's quote over it is skipped as one over the job's
   * own budget (site-choice.ts). Default: the scheduler's own (`renderbus budget`, project-budgets.ts).
   */
  projectLeft?: (project: string) => Money | undefined;
  /** Replicas of the journal, the event stream and the leaders bucket (default: as the server says, replicasOf). */
  replicas?: number;
}

export interface SchedulerTermOptions extends SchedulerOptions {
  /**
   * The render servers alive when this term began, known by a standby that heard their lease
   * reports: adopting ends once each has reported, rather than after the whole window. Absent:
   * the whole window (a scheduler that just started knows no host).
   */
  adoptHosts?: ReadonlySet<string>;
  /** Whether the lease still holds at this moment (actors/leadership, LeaseCheck): nothing is accepted or leased without it. */
  leaseValid?: () => boolean;
}

export interface SchedulerHandle {
  stop(): Promise<void>;
}

/** A term of the leading scheduler, which the lease holds and resumes (leader.ts). */
export interface SchedulerTermHandle extends SchedulerHandle {
  /** The lease went unrenewed for its fence: hold still (machine.ts, `held`). */
  hold(): void;
  /** The lease was renewed again: dispatch again. */
  resume(): void;
}

interface Leased {
  job: Job;
  assignment: TaskAssignment;
}

/** How many queued jobs one dispatch round looks at (the most urgent ones). */
const ROUND_JOBS = 500;
/** Room left in a reply for its envelope, around the page. */
const REPLY_MARGIN = 1_024;
/** Jobs read back from the journal kept for the next pages of their view: at most this many, this long. */
const READ_BACK_KEPT = 4;
const READ_BACK_MS = 60_000;
/** How often finished jobs are checked against the retention rule's age, besides when a job ends. */
const RETENTION_EVERY_MS = 60_000;
/** A job's progress event goes out at most this often; watchers also poll, and the end always goes out. */
const PROGRESS_EVERY_MS = 250;
/** How long each peer's quote is awaited (docs/federation.md: no answer means no offer). */
export const QUOTE_TIMEOUT_MS = 5_000;
/** Beyond the peers' wait: the site's services hash the job's files first. */
const QUOTES_MARGIN_MS = 10_000;

/**
 * One term of the scheduler as the site's leader (leader.ts runs it while this process holds the
 * lease): binds the scheduler machine to NATS, the queue in a JobBook, its journal in JetStream.
 */
export async function startSchedulerTerm(o: SchedulerTermOptions): Promise<SchedulerTermHandle> {
  const { nc, site } = o;
  const log = o.log.child({ actor: 'scheduler', site });
  const now = o.now ?? Date.now;
  const queueCaps = queueLimits(o.limits);
  const keep = retention(o.retention);
  const peers = () => (typeof o.peers === 'function' ? o.peers() : (o.peers ?? []));
  const policy = o.outsourceUnrenderable ?? [];
  checkPolicy(policy, site);
  const overflow = o.outsourceOverflow ?? [];
  checkPolicy(overflow, site, 'outsource-overflow');
  const unlinked = policy.filter((p) => !peers().includes(p));
  if (unlinked.length > 0) log.warn({ policy, unlinked, peers: peers() }, 'the policy for jobs no local host can render names peers that are not linked (yet): it skips them while they are not');
  /** Since when the registry has said, round after round, that no local host can render a job (the policy's settle time). */
  const unrenderableSince = new WeakMap<Job, number>();
  let book = new JobBook();
  let journal: Journal | null = null;
  const schedulerId = newInstanceId();
  const liveness = new HostLiveness();
  const hosts = new Map<string, KnownHost>();
  const subs: Subscription[] = [];
  const lastProgress = new Map<string, number>();
  /**
   * The tasks handed to a slot in the reply to a task's result. A slot sends its result again
   * only when no reply reached it in time, so the tasks of that lost reply are handed again
   * rather than left leased to a slot that never heard of them (until lease reports take them
   * back, and they are dispatched a second time).
   */
  const handedWith = new WeakMap<Task, { attempt: number; leased: TaskAssignment[] }>();
  /** Each task's journal write of the result last applied: a duplicate of that result waits for it. */
  const journaled = new WeakMap<Task, { attempt: number; write: Promise<void> }>();
  /** Results applied whose journal write failed: reported once a resend stores them. */
  const unreported = new WeakMap<Task, () => void>();

  // --- events out -------------------------------------------------------------------
  const publish = (subject: string, data: Uint8Array) => {
    try {
      nc.publish(subject, data);
    } catch (err) {
      log.warn({ err, subject }, 'could not publish event');
    }
  };
  const jobEvent = (job: Job, event: string): JobEvent => {
    const evt: JobEvent = { v: PROTOCOL_MAJOR, jobId: job.id, event, at: now(), job: book.summary(job) };
    if (event === 'failed') evt.failures = book.failures(job);
    publish(subjects.jobEvent(site, job.id, event), codecs.jobEvent.encode(evt));
    if (job.partOf !== undefined) partMoved(job);
    return evt;
  };
  /** A part of a split job was told about: its parent is brought up to date, and told when it started or ended (split-jobs.ts). */
  const partMoved = (part: Job) => {
    const parent = book.jobs.get(part.partOf!);
    if (!parent) return;
    const change = syncParent(book, parent, now());
    if (change === 'started') jobEvent(parent, 'started');
    else if (change !== undefined) finishJob(parent);
  };
  /**
   * One event for a task's frames, not one per frame: at 20,000 frames a second, events per frame
   * were most of nats-server's work, and their stored outcomes more than JetStream writes here.
   */
  const frameEvent = (job: Job, frames: readonly number[], event: string, extra: Partial<FrameEvent>, outputs?: TaskResult['outputs']) => {
    const about = aboutFrames(frames, outputs);
    publish(subjects.frameEvent(site, job.id, about.frame, event), codecs.frameEvent.encode({ v: PROTOCOL_MAJOR, jobId: job.id, ...about, event, at: now(), ...extra }));
  };
  /** Jobs whose first task started (taken in hand does not count): each is announced once. */
  const announceStarts = () => {
    for (const job of book.takeFirstStarts()) jobEvent(job, 'started');
  };
  const onLeased = (job: Job, a: TaskAssignment) => {
    frameEvent(job, a.frames, 'dispatched', { slot: a.slot, attempt: a.attempt, host: job.tasks.peek(a.taskIndex)?.host });
  };
  const announcedEnd = new Set<string>();
  /** Announces a job's end (event, log): once per job, whatever path ended it. The notifier actor tells people. */
  const finishJob = (job: Job) => {
    if (announcedEnd.has(job.id)) return;
    announcedEnd.add(job.id);
    const state = book.state(job);
    lastProgress.delete(job.id);
    const evt = jobEvent(job, state);
    log.info({ jobId: job.id, state, counts: evt.job.counts, ...(evt.job.error ? { error: evt.job.error } : {}) }, 'job ended');
    // jobs that run after this one start now (done), or say why they cannot (failed, cancelled)
    if (state !== 'done') for (const d of job.dependents) if (!book.isFinished(d)) jobEvent(d, 'waiting');
    retentionSoon();
  };
  /** A task's ended attempt as a journal record; its id makes a retried write a no-op. */
  const taskRecord = (r: TaskResult, task: Task, retry: boolean, at: number, jobFailed?: string): [JournalRecord, string] => [
    {
      v: PROTOCOL_MAJOR, kind: 'task', jobId: r.jobId, taskIndex: r.taskIndex, status: r.status === 'done' ? 'done' : 'failed', attempt: r.attempt,
      host: r.host, slot: r.slot, outputs: r.outputs, stats: r.stats, at, ...(task.startedAt !== undefined ? { startedAt: task.startedAt } : {}),
      ...(task.error && r.status === 'failed' ? { error: task.error } : {}), ...(retry ? { retry } : {}),
      ...(task.rechunk && r.status === 'done' ? { rechunk: task.rechunk } : {}),
      ...(jobFailed !== undefined ? { jobFailed } : {}),
    },
    `task-${r.jobId}-${r.taskIndex}-${r.attempt}`,
  ];
  /** Tells a host to drop a task that is no longer its own. */
  const killTask = (host: string, taskId: string, why: string, attempt?: number) => {
    log.info({ host, taskId, attempt, why }, 'telling a host to drop a task');
    const msg = codecs.hostCtl.encode({ v: PROTOCOL_MAJOR, action: 'kill-task', taskId, ...(attempt !== undefined ? { attempt } : {}) });
    nc.request(subjects.hostCtl(site, host), msg, { timeout: 3_000 }).catch((err: unknown) => log.warn({ err, host, taskId }, 'could not tell a host to drop a task'));
  };

  // --- requests ---------------------------------------------------------------------
  /**
   * A result's frames must lie in its job's output folder: the monitor and the notifier read them
   * (thumbnails), so a host's word must not make them read /etc/shadow.
   */
  const checkOutputs = (r: TaskResult) => {
    const dir = book.jobs.get(r.jobId)?.prepared.outputDir;
    if (dir === undefined) return; // an unknown job: the book says so
    const root = `${resolvePath(dir)}/`;
    const outside = r.outputs.find((o) => !resolvePath(o.path).startsWith(root));
    if (outside) throw new FarmError('RB_FORBIDDEN', `frame ${outside.frame}'s file ${outside.path} is not in its job's output folder ${dir}`);
  };
  const forOperators = (what: string) => new FarmError('RB_FORBIDDEN', `${what} is for operators: use an operator's credential (renderbus credentials add operator <name>)`);
  const leaseValid = o.leaseValid ?? (() => true);
  const serving = () => actor.getSnapshot().matches('serving') && leaseValid();
  const requireServing = () => {
    if (serving()) return;
    if (actor.getSnapshot().matches('held') || !leaseValid()) {
      throw new FarmError('RB_SCHEDULER_UNAVAILABLE', 'the scheduler cannot renew its lease right now (the bus is electing a new leader for it) and holds still; try again shortly', { retryable: true });
    }
    throw new FarmError('RB_SCHEDULER_UNAVAILABLE', 'the scheduler is still recovering its queue; try again shortly', { retryable: true });
  };

  /**
   * A job submitted by `user`: the one its credential names (the subject's last token), never the
   * message's word. `origin`: a peer's job, from the intake (job-origin.ts).
   */
  async function submit(req: SubmitRequest, user: string, origin?: JobOrigin) {
    requireServing();
    if (req.spec.user !== undefined && req.spec.user !== user) {
      throw new FarmError('RB_FORBIDDEN', `the job says user '${req.spec.user}' but was submitted with the credential of '${user}': a job belongs to whoever submits it`);
    }
    req = { ...req, spec: { ...req.spec, user, ...(o.sandboxAll && !req.spec.sandbox ? { sandbox: true } : {}) } };
    // a tree shown at original paths is where the intake unpacked a peer's job: nobody else names one
    if (typeof req.spec.sandbox === 'object' && !origin) throw new FarmError('RB_BAD_SPEC', 'sandbox.root is set by the intake for a peer\'s job only; a job of this site says sandbox: true');
    const prepared = prepareJob(req.spec);
    checkNotify(req.spec.notify); // contradictions the schema cannot see (progress without everyPercent)
    checkOutsource(req.spec, site, peers());
    const jobId = req.jobId ?? newJobId(now());
    const counts = { jobId, frames: prepared.frames.count, tasks: prepared.taskCount };
    if (book.jobs.has(jobId) || book.archived.has(jobId)) return counts; // a retried submit: already queued
    // a spent budget stops new outsourcing (docs/federation.md, "Bills and budgets"); local rendering never
    if (req.spec.site !== undefined) book.budgets.check(projectOf(req.spec), `job not sent to ${req.spec.site}`);
    for (const field of ['after', 'afterFrames'] as const) {
      const unknown = (req.spec[field] ?? []).filter((id) => !book.jobs.has(id) && !book.archived.has(id));
      if (unknown.length > 0) throw new FarmError('RB_BAD_JOB', `${field}: no job ${unknown.map((id) => `'${id}'`).join(', ')} on this farm (a job can only run after jobs already submitted)`);
      // a job that left memory ended long ago: done, it holds nothing back; otherwise it never will be
      const ended = (req.spec[field] ?? []).filter((id) => book.archived.has(id) && book.archived.get(id)!.state !== 'done');
      if (ended.length > 0) throw new FarmError('RB_BAD_JOB', `${field}: job ${ended.map((id) => `'${id}' ${book.archived.get(id)!.state}`).join(', ')} long ago, so this job would never start`);
    }
    // a flood of submits is refused here, before it costs memory or a journal write
    checkQueueLimits(book, req.spec.user ?? 'unknown', counts.frames, queueCaps);
    const at = now();
    const seq = await journal!.appendAt({ v: PROTOCOL_MAJOR, kind: 'submit', jobId, spec: req.spec, at, ...(origin ? { origin } : {}) }, `submit-${jobId}`);
    if (book.jobs.has(jobId)) return counts;
    const job = book.add(jobId, req.spec, prepared, at, origin);
    job.journalSeq = seq;
    log.info({ jobId, frames: counts.frames, tasks: counts.tasks, priority: prepared.priority }, 'job queued');
    jobEvent(job, 'submitted');
    // the submit record is the outsource decision (outsource.ts): no second write, no window between two
    if (shouldOutsource(book, job)) sendOut(job);
    else if (book.whyWaiting(job)) jobEvent(job, 'waiting');
    if (job.spec.site === AUTO_SITE) {
      unplaced.add(job);
      placeWaiting();
    } else if (overflow.length > 0 && mayOverflow(job)) void placeOverflow(job);
    actor.send({ type: 'dispatch.wanted' });
    return counts;
  }

  /** A job joins the outsourced queue; its `outsourced` event (stored) is what the packer writes its bundle on. */
  function sendOut(job: Job, byPolicy?: { peer: string; why: string }): void {
    const r = outsource(book, job, byPolicy);
    log.info({ jobId: job.id, peer: r.peer, bundleId: r.bundleId, ...(r.why !== undefined ? { policy: r.why } : {}) }, 'job outsourced');
    jobEvent(job, 'outsourced');
  }

  /**
   * The site's policy sends a job no local host can render to a peer: the `outsource` record
   * first (a restarted scheduler keeps it sent), then as for a job that named the site. A job
   * cancelled meanwhile stays here, cancelled.
   */
  async function sendByPolicy(job: Job, peer: string, why: string): Promise<void> {
    await journal!.append({ v: PROTOCOL_MAJOR, kind: 'outsource', jobId: job.id, peer, why, at: now() }, `outsource-${job.id}`);
    if (job.remote || book.isFinished(job)) return;
    sendOut(job, { peer, why });
  }

  /** `auto` jobs not placed yet (site-choice.ts); those being placed now. */
  const unplaced = new Set<Job>();
  const placing = new Set<Job>();
  const quoteTimeoutMs = o.quoteTimeoutMs ?? QUOTE_TIMEOUT_MS;

  /** Places every `auto` job that waits for it (not held, not ended): called at submit, and each dispatch round. */
  function placeWaiting(): void {
    for (const job of unplaced) {
      if (job.placement !== undefined || book.isFinished(job)) unplaced.delete(job);
      else if (!job.held && !placing.has(job)) void place(job);
    }
  }

  /**
   * Where a `site: auto` job renders: here, or at the linked peer that finishes it first within
   * its budget (site-choice.ts). The quotes come from the site's services (`link.quotes`, which
   * ask every peer in parallel); the choice is journaled (a `place` record) before it is applied,
   * so a restarted scheduler keeps it. A failed write leaves it unplaced: the next round tries again.
   */
  async function place(job: Job): Promise<void> {
    placing.add(job);
    try {
      const linked = peers();
      const keep = staysHere(job, linked);
      let choice: Omit<PlacementSummary, 'at'>;
      if (keep !== undefined) choice = { text: `placed here: ${keep}`, options: [] };
      else {
        setWaiting(job, { kind: 'quotes', text: `site: auto: asking ${linked.join(', ')} for quotes (up to ${Math.round(quoteTimeoutMs / 1000)} s)` });
        const load = queueLoad(book, job.prepared.renderer, job.prepared.priority, job);
        const [match, answers] = await Promise.all([matchAll(job), askQuotes(job, linked, load.frameMs)]);
        const local = localSide(site, match, load);
        choice = splitChoice(job, chooseSite({
          frames: job.counts.total, project: job.project, local, answers,
          ...(job.spec.budget !== undefined ? { budget: parseBudget(job.spec.budget) } : {}),
          projectLeft,
        }), local, answers);
      }
      if (job.placement !== undefined || book.isFinished(job)) return;
      const at = now();
      await journal!.append({ v: PROTOCOL_MAJOR, kind: 'place', jobId: job.id, ...(choice.peer !== undefined ? { peer: choice.peer } : {}), text: choice.text, options: choice.options, ...(choice.parts ? { parts: choice.parts } : {}), at }, `place-${job.id}`);
      const sent = choice.parts ? startParts(job, { ...choice, at }) : applyPlacement(book, job, { ...choice, at });
      unplaced.delete(job);
      log.info({ jobId: job.id, peer: choice.peer ?? null, placement: choice.text }, 'auto job placed');
      if (sent) jobEvent(job, 'outsourced');
      else jobEvent(job, 'progress');
      actor.send({ type: 'dispatch.wanted' });
    } catch (err) {
      log.warn({ err, jobId: job.id }, 'could not place an auto job; tried again next round');
    } finally {
      placing.delete(job);
    }
  }

  /**
   * A split job's parts are made (split-jobs.ts), after its `place` record: each told as a submitted
   * job, the peers' ones as outsourced (the packer's trigger). Returns nothing: the parent itself
   * goes nowhere.
   */
  function startParts(parent: Job, p: PlacementSummary): undefined {
    const { made } = applySplit(book, parent, p);
    for (const part of made) {
      log.info({ jobId: part.id, partOf: parent.id, frames: part.spec.frames, peer: part.remote?.peer ?? null }, 'split part queued');
      jobEvent(part, 'submitted');
      if (part.remote) jobEvent(part, 'outsourced');
    }
    return undefined;
  }

  // what is left of a project's budget (renderbus budget; the bills' spend): a quote over it is skipped
  const projectLeft = o.projectLeft ?? ((project: string) => book.budgets.left(project));

  /**
   * The site's overflow policy for a job that names no site: when the farm here has no room for it
   * now, the policy's linked peers are asked for quotes (the job held out of the queue meanwhile:
   * its frames must not start here and go there too) and it goes where it finishes first, here
   * included; the choice is journaled as an `auto` job's (a `place` record). A restart while the
   * quotes are awaited leaves it here.
   */
  async function placeOverflow(job: Job): Promise<void> {
    const linked = overflow.filter((p) => peers().includes(p));
    if (linked.length === 0 || placing.has(job)) return;
    placing.add(job);
    try {
      const load = queueLoad(book, job.prepared.renderer, job.prepared.priority, job);
      const local = localSide(site, await matchAll(job), load);
      if (roomHere(local) || !mayOverflow(job)) return;
      book.setQuoting(job, `the farm here is busy: asking ${linked.join(', ')} for quotes (the site's overflow policy, up to ${Math.round(quoteTimeoutMs / 1000)} s)`);
      jobEvent(job, 'waiting');
      let choice: Omit<PlacementSummary, 'at'>;
      try {
        const answers = await askQuotes(job, linked, load.frameMs);
        choice = splitChoice(job, chooseSite({
          frames: job.counts.total, project: job.project, local, answers,
          ...(job.spec.budget !== undefined ? { budget: parseBudget(job.spec.budget) } : {}),
          projectLeft,
        }), local, answers);
        if (book.isFinished(job) || job.placement !== undefined || job.remote) return;
        const at = now();
        await journal!.append({ v: PROTOCOL_MAJOR, kind: 'place', jobId: job.id, ...(choice.peer !== undefined ? { peer: choice.peer } : {}), text: choice.text, options: choice.options, ...(choice.parts ? { parts: choice.parts } : {}), at }, `place-${job.id}`);
        const sent = choice.parts ? startParts(job, { ...choice, at }) : applyPlacement(book, job, { ...choice, at });
        log.info({ jobId: job.id, peer: choice.peer ?? null, placement: choice.text }, 'job weighed by the overflow policy');
        if (sent) jobEvent(job, 'outsourced');
      } finally {
        book.setQuoting(job, undefined);
        actor.send({ type: 'dispatch.wanted' });
      }
    } catch (err) {
      log.warn({ err, jobId: job.id }, 'the overflow policy could not weigh a job; it renders here');
    } finally {
      placing.delete(job);
    }
  }

  /** Every host matching the job's requirements, busy or not (the local side of a quote); undefined when the registry does not answer. */
  async function matchAll(job: Job): Promise<MatchBody | undefined> {
    try {
      return await call(nc, subjects.regMatch(site), codecs.matchRequest, { v: PROTOCOL_MAJOR, requirements: job.prepared.requirements }, codecs.matchReply, { timeoutMs: 3_000, unavailable: 'RB_REGISTRY_UNAVAILABLE' });
    } catch (err) {
      log.debug({ err }, 'registry match failed');
      return undefined;
    }
  }

  /** The peers' quotes through the site's services; when those do not answer, every peer "did not answer". */
  async function askQuotes(job: Job, linked: readonly string[], frameMs: number | undefined): Promise<PeerQuote[]> {
    const scene = job.spec.scene;
    const paths = [scene, ...(job.spec.supportFiles ?? []).map((f) => resolvePath(dirname(scene), f))];
    const quoteJob = { frames: job.counts.total, renderer: job.prepared.renderer, priority: job.prepared.priority, requirements: job.prepared.requirements, ...(frameMs !== undefined ? { frameMs } : {}) };
    try {
      const body = await call(nc, subjects.linkQuotes(site), codecs.quotesRequest, { v: PROTOCOL_MAJOR, jobId: job.id, job: quoteJob, paths, timeoutMs: quoteTimeoutMs }, codecs.quotesReply, { timeoutMs: quoteTimeoutMs + QUOTES_MARGIN_MS, unavailable: 'RB_QUOTES_UNAVAILABLE' });
      // a peer the services do not know (linked since they started) did not answer either
      return linked.map((p) => body.answers.find((a) => a.peer === p) ?? { peer: p, error: 'not asked: the site\'s services do not know it yet', ms: 0 });
    } catch (err) {
      log.warn({ err, jobId: job.id }, 'the site\'s quote service did not answer');
      return linked.map((p) => ({ peer: p, error: `not asked: the site's quote service did not answer (${FarmError.from(err).code})`, ms: 0 }));
    }
  }

  /**
   * News of an outsourced job from the intake, on `sched.remote.<peer>`: only the intake's
   * credential may publish there, and the subject's last token is the peer the bundle came from,
   * so an update is taken only for a job sent to that same peer. Journaled before it is applied
   * (once per bundle), then told as the events of a local job: frames done, the job's end.
   */
  async function remoteUpdate(u: RemoteUpdate, peer: string) {
    requireServing();
    const job = book.jobs.get(u.jobId);
    if (!job) throw new FarmError('RB_UNKNOWN_JOB', book.archived.has(u.jobId) ? `job '${u.jobId}' ended long ago and left the scheduler's memory` : `no job '${u.jobId}'`);
    const r = job.remote;
    if (!r || r.peer !== peer) throw new FarmError('RB_FORBIDDEN', `job ${job.id} was ${r ? `sent to ${r.peer}` : 'not sent to any site'}, not to ${peer}: ${peer} cannot report on it`);
    const answer = () => ({ applied: false, state: book.state(job), back: r.back.size });
    if (r.applied.has(u.bundleId)) return answer();
    const root = `${resolvePath(job.prepared.outputDir)}/`;
    const outside = (u.outputs ?? []).find((o) => !resolvePath(o.path).startsWith(root));
    if (outside) throw new FarmError('RB_FORBIDDEN', `frame ${outside.frame}'s file ${outside.path} is not in its job's output folder ${job.prepared.outputDir}`);
    const at = now();
    await journal!.append({ v: PROTOCOL_MAJOR, kind: 'remote', jobId: job.id, peer, update: u, at }, `remote-${job.id}-${u.bundleId}`);
    const change = applyRemote(book, job, u, at);
    if (!change.applied) return answer();
    log.info({ jobId: job.id, peer, bundleId: u.bundleId, state: u.state, frames: change.newFrames.length, back: r.back.size, ended: change.ended }, 'news of an outsourced job');
    if (remoteStarted(job, at)) jobEvent(job, 'started');
    for (let i = 0; i < change.newFrames.length; i += 1_000) {
      const part = change.newFrames.slice(i, i + 1_000);
      frameEvent(job, part.map((f) => f.frame), 'done', {}, part);
    }
    if (change.ended) finishJob(job);
    else if (!book.isFinished(job)) jobEvent(job, 'progress'); // a bill after the end is no progress
    return { applied: true, state: book.state(job), back: r.back.size };
  }

  /** A reply's room: one message, less its envelope. */
  const replyBudget = () => Math.min(MAX_PAYLOAD, nc.info?.max_payload ?? MAX_PAYLOAD) - REPLY_MARGIN;
  const bytes = (v: unknown) => encodeAny(v).length;

  /** Answers a page: `jobs` after a cursor, or a job's view with its frames after one (paged: see QueryRequest). */
  async function query(req: QueryRequest) {
    requireServing();
    const budget = replyBudget();
    if (req.what === 'jobs') return jobsPage(book, req.after, { budget, fixed: bytes({ jobs: [], more: true, next: 'e'.padEnd(24, '9') }), sizeOf: bytes, ...(req.limit ? { limit: req.limit } : {}) });
    const live = book.jobs.get(req.jobId);
    const found = live ? { job: live, from: book } : await readBack(req.jobId);
    if (!found) throw new FarmError('RB_UNKNOWN_JOB', `no job '${req.jobId}'`);
    const page = jobPage(found.from, found.job, req.afterFrame, { budget, sizeOf: bytes, sizeOfHead: (head) => bytes({ job: head, more: true, archived: true }), ...(req.limit ? { limit: req.limit } : {}) });
    return live ? page : { ...page, archived: true };
  }

  /** Jobs read back from the journal lately: the next pages of a view do not read it again. */
  const readBackCache = new Map<string, { at: number; found: Promise<{ job: Job; from: JobBook } | undefined> }>();
  /** A job that left memory (retention), rebuilt on its own from its journal records. */
  function readBack(jobId: string): Promise<{ job: Job; from: JobBook } | undefined> {
    const archived = book.archived.get(jobId);
    if (!archived) return Promise.resolve(undefined);
    const t = now();
    for (const [id, c] of readBackCache) if (t - c.at > READ_BACK_MS) readBackCache.delete(id);
    const had = readBackCache.get(jobId);
    if (had) return had.found;
    const found = journal!.jobRecords(jobId, archived.seq).then((records) => {
      const from = new JobBook();
      const job = rebuildJob(from, jobId, records, archived.seq);
      return job ? { job, from } : undefined;
    });
    found.catch(() => readBackCache.delete(jobId));
    readBackCache.set(jobId, { at: t, found });
    while (readBackCache.size > READ_BACK_KEPT) readBackCache.delete(readBackCache.keys().next().value!);
    return found;
  }

  let lastRetention = 0;
  let retentionDue = false;
  /** The retention rule, once after whatever ended a job has been answered (jobs ending together: once for all). */
  const retentionSoon = () => {
    if (retentionDue) return;
    retentionDue = true;
    setImmediate(() => {
      retentionDue = false;
      applyRetention();
    });
  };
  /** Finished jobs past the retention rule leave memory (they stay readable from the journal). */
  function applyRetention(): void {
    lastRetention = now();
    const gone = jobsToEvict(book, lastRetention, keep);
    for (const job of gone) {
      book.evict(job);
      announcedEnd.delete(job.id);
      lastProgress.delete(job.id);
    }
    if (gone.length > 0) log.info({ jobs: gone.length, kept: book.jobs.size }, 'finished jobs left memory (retention); they are read back from the journal when asked for');
  }

  /**
   * Steers a job, for its owner (`user`, from the credential) or for an operator (`user` null, on
   * `op.ctl`). Each accepted action is journaled before it is applied and answered, so it is durable.
   */
  async function control(req: CtlRequest, user: string | null) {
    requireServing();
    const job = book.jobs.get(req.jobId);
    if (!job && book.archived.has(req.jobId)) throw new FarmError('RB_UNKNOWN_JOB', `job '${req.jobId}' ${book.archived.get(req.jobId)!.state} long ago and left the scheduler's memory: it can still be read (renderbus job ${req.jobId}), not changed`);
    if (!job) throw new FarmError('RB_UNKNOWN_JOB', `no job '${req.jobId}'`);
    if (user !== null && job.spec.user !== user) {
      throw new FarmError('RB_FORBIDDEN', `job ${job.id} belongs to '${job.spec.user ?? 'nobody'}': only its owner or an operator may ${req.action} it`);
    }
    const at = now();
    const state = book.state(job);
    if (req.action === 'cancel') {
      if (book.isFinished(job)) return { job: book.summary(job) };
      await journal!.append({ v: PROTOCOL_MAJOR, kind: 'cancel', jobId: job.id, at }, `cancel-${job.id}`);
      const running = book.cancel(job, at);
      for (const t of running) if (t.host) killTask(t.host, `${job.id}.${t.index}`, 'job cancelled');
      finishJob(job);
      // a split job's cancel cancels its parts, each journaled and told as any job's (an outsourced one's vendor too)
      for (const part of partsOf(book, job)) if (!book.isFinished(part)) await control({ v: PROTOCOL_MAJOR, action: 'cancel', jobId: part.id }, null);
      return { job: book.summary(job) };
    }
    const refuse = (why: string) => new FarmError('RB_BAD_ARGUMENT', `cannot ${req.action} job ${job.id}: ${why}`);
    if (state === 'cancelled') throw refuse('it was cancelled');
    if (job.parts && ['pause', 'resume', 'retry', 'release'].includes(req.action)) throw refuse(`it is split into parts (${job.parts.join(', ')}): ${req.action} them`);
    if (job.remote && ['pause', 'resume', 'retry'].includes(req.action)) {
      throw refuse(`it was sent to ${job.remote.peer}, which renders it: only cancel reaches it there (then submit it again)`);
    }
    if (req.action === 'priority' && req.priority === undefined) throw new FarmError('RB_BAD_ARGUMENT', 'priority needs the new priority (0 to 1000, lower is more urgent)');
    if (req.action === 'release' && !job.held) throw refuse('it is not held');
    // a held job naming a site goes out when released: that is new outsourcing, which a spent budget stops
    if (req.action === 'release' && job.spec.site !== undefined && !job.remote) book.budgets.check(job.project, `cannot release job ${job.id} to ${job.spec.site}`);
    if ((req.action === 'pause' || req.action === 'resume') && book.isFinished(job)) throw refuse(`it is ${state}`);
    if (req.action === 'retry' && req.frames) {
      const unknown = req.frames.filter((f) => !job.tasks.hasFrame(f));
      if (unknown.length > 0) throw refuse(`it has no frame ${unknown.slice(0, 5).join(', ')}${unknown.length > 5 ? ', …' : ''}`);
    }
    if (req.action === 'retry' && !retryWouldChange(book, job, req.frames)) {
      throw refuse(req.frames ? 'none of those frames has ended, and no host is kept away from it' : `no frame failed and no host is kept away from it (it is ${state})`);
    }
    const forgiven = req.action === 'retry' ? keptAwayHosts(book, job) : [];
    await journal!.append({ v: PROTOCOL_MAJOR, kind: 'ctl', jobId: job.id, action: req.action, at, ...(req.priority !== undefined ? { priority: req.priority } : {}), ...(req.frames ? { frames: req.frames } : {}) });
    const wentOut = job.remote;
    const retried = applyControl(job, req);
    if (!wentOut && job.remote) {
      log.info({ jobId: job.id, peer: job.remote.peer, bundleId: job.remote.bundleId }, 'job outsourced');
      jobEvent(job, 'outsourced');
    }
    if (req.action === 'pause') returnInHand(job);
    jobEvent(job, req.action === 'retry' ? 'retried' : req.action === 'priority' ? 'priority' : `${req.action}d`);
    log.info({ jobId: job.id, action: req.action, priority: req.priority, frames: retried, ...(forgiven.length > 0 ? { forgiven } : {}) }, 'job control');
    actor.send({ type: 'dispatch.wanted' });
    return { job: book.summary(job), ...(req.action === 'retry' ? { retried: { frames: retried, hosts: forgiven } } : {}) };
  }

  /**
   * A paused job starts nothing new: the tasks its slots hold in hand are asked back. A slot hands
   * one back unstarted (a `returned` result: queued again, no attempt used); one it started
   * meanwhile goes on, as running tasks of a paused job do.
   */
  function returnInHand(job: Job): void {
    for (const t of book.inHand(job)) askBack(t.host!, job.id, t.index, t.attempt);
  }
  const askBack = (host: string, jobId: string, taskIndex: number, attempt: number) => {
    log.info({ host, jobId, taskIndex, attempt }, 'asking a slot to hand back a task of a paused job');
    const msg = codecs.hostCtl.encode({ v: PROTOCOL_MAJOR, action: 'return-task', taskId: taskId(jobId, taskIndex), attempt });
    nc.request(subjects.hostCtl(site, host), msg, { timeout: 3_000 }).catch((err: unknown) => log.warn({ err, host, jobId }, 'could not ask for a task in hand back'));
  };

  /** Applies a control action other than cancel; returns how many frames were queued again. */
  function applyControl(job: Job, c: { action: CtlRequest['action']; priority?: number; frames?: number[] }): number {
    const queued = applyControlTo(book, job, c);
    if (!book.isFinished(job)) announcedEnd.delete(job.id); // it may end, and be announced, again
    return queued;
  }

  /** Lists, sets or removes the site's named limits; a change is journaled before it is answered. */
  async function limits(req: LimitsRequest, operator: boolean) {
    requireServing();
    if (req.action !== 'list') {
      if (!operator) throw forOperators('changing limits');
      const at = now();
      const rec: Extract<JournalRecord, { kind: 'limit' }> = req.action === 'set' ? { v: PROTOCOL_MAJOR, kind: 'limit', name: req.limit.name, max: req.limit.max, per: req.limit.per, at } : { v: PROTOCOL_MAJOR, kind: 'limit', name: req.name, at };
      if (req.action === 'remove' && !book.limits.has(req.name)) throw new FarmError('RB_BAD_ARGUMENT', `no limit '${req.name}' on this farm`);
      await journal!.append(rec);
      book.setLimit(rec.name, rec.max, rec.per);
      log.info({ limit: rec.name, max: rec.max, per: rec.per }, req.action === 'set' ? 'limit set' : 'limit removed');
      actor.send({ type: 'dispatch.wanted' });
    }
    return { limits: book.limits.uses() };
  }

  /** Lists, sets or removes the projects' fair-share weights; a change is journaled before it is answered. */
  async function shares(req: SharesRequest, operator: boolean) {
    requireServing();
    if (req.action !== 'list') {
      if (!operator) throw forOperators('changing shares');
      if (req.action === 'remove' && !book.shares.has(req.project)) throw new FarmError('RB_BAD_ARGUMENT', `no share set for project '${req.project}'`);
      const rec: Extract<JournalRecord, { kind: 'share' }> = req.action === 'set'
        ? { v: PROTOCOL_MAJOR, kind: 'share', project: req.share.project, weight: req.share.weight, at: now() }
        : { v: PROTOCOL_MAJOR, kind: 'share', project: req.project, at: now() };
      await journal!.append(rec);
      book.shares.set(rec.project, rec.weight);
      log.info({ project: rec.project, weight: rec.weight }, req.action === 'set' ? 'share set' : 'share removed');
      actor.send({ type: 'dispatch.wanted' });
    }
    return { enabled: book.shares.enabled, projects: book.shareUses() };
  }

  /** Lists, sets or clears the projects' outsourcing budgets; a change is journaled before it is answered. */
  async function budgets(req: BudgetsRequest, operator: boolean) {
    requireServing();
    if (req.action !== 'list') {
      if (!operator) throw forOperators('changing budgets');
      if (req.action === 'clear' && !book.budgets.has(req.project)) throw new FarmError('RB_BAD_ARGUMENT', `no budget set for project '${req.project}'`);
      const rec: Extract<JournalRecord, { kind: 'budget' }> = req.action === 'set'
        ? { v: PROTOCOL_MAJOR, kind: 'budget', project: req.budget.project, currency: req.budget.currency, amountMinor: req.budget.amountMinor, at: now() }
        : { v: PROTOCOL_MAJOR, kind: 'budget', project: req.project, at: now() };
      await journal!.append(rec);
      book.budgets.set(rec.project, rec.currency !== undefined && rec.amountMinor !== undefined ? { currency: rec.currency, amountMinor: rec.amountMinor } : undefined);
      log.info({ project: rec.project, currency: rec.currency, amountMinor: rec.amountMinor }, req.action === 'set' ? 'budget set' : 'budget cleared');
      actor.send({ type: 'dispatch.wanted' });
    }
    return { projects: book.budgets.uses() };
  }

  /** The sick hosts, or an operator clearing one. */
  async function hostsRequest(req: HostsRequest, operator: boolean) {
    requireServing();
    if (req.action === 'clear') {
      if (!operator) throw forOperators('clearing a sick host');
      if (!book.health.clear(req.host)) throw new FarmError('RB_UNKNOWN_HOST', `host '${req.host}' is not sick`);
      log.info({ host: req.host }, 'sick host cleared by an operator');
      actor.send({ type: 'dispatch.wanted' });
    }
    const sick = book.health.list(now());
    return req.action === 'sick' && req.turns ? { sick, turns: await readHostTurns(nc, site, 3_000) } : { sick };
  }

  /**
   * A task ended on a slot. The reply is the acknowledgement: it goes out only once the result is
   * in the journal, so a render server holds a result until it is durable. It hands that slot its
   * next task when one fits, and one more to hold in hand when the slot has room
   * (docs/architecture.md, "a task in hand").
   */
  async function result(r: TaskResult, msg: Msg) {
    requireServing();
    callerOf(msg.subject, 'the result', r.host); // only the host that holds the lease can end its task
    checkOutputs(r);
    const at = now();
    const outcome = book.result(r, at);
    // the slot started the task it held when this one ended (said once: a resend is a duplicate)
    const startedHeld = r.want === 1 && r.status !== 'returned' && outcome.kind !== 'duplicate' ? book.heldStarted(r.host, r.slot, at) : undefined;
    // nothing is handed out while lease reports may still bring back tasks that are running
    const adopting = actor.getSnapshot().matches({ serving: { dispatch: 'adopting' } });
    if (adopting && outcome.kind === 'stale' && outcome.task.state === 'queued') {
      // its lease may be about to come back in its host's report: ask for the result again then
      throw new FarmError('RB_SCHEDULER_UNAVAILABLE', 'the scheduler is taking back running tasks after a restart; send the result again shortly', { retryable: true });
    }
    // decided now: by the time the deferred report runs, a later result may have ended the job
    const endedJob = outcome.kind === 'accepted' && book.isFinished(outcome.job);
    if (outcome.kind === 'accepted' || outcome.kind === 'duplicate') {
      const { task } = outcome;
      const last = journaled.get(task);
      const earlier = last?.attempt === r.attempt ? last.write : undefined;
      // A duplicate whose record is stored, or on its way, waits for that write instead of making
      // another: when the scheduler falls behind, slots resend results it is still writing, and
      // writing each again only made it fall further behind. A failed write throws
      // RB_SCHEDULER_UNAVAILABLE: the slot sends the result again, and that one writes it.
      const retry = outcome.kind === 'accepted' ? outcome.retried : task.state === 'queued';
      const write = (await earlier?.then(() => true, () => false)) ? earlier! : journal!.append(...taskRecord(r, task, retry, at, outcome.kind === 'accepted' ? outcome.jobFailed : undefined));
      journaled.set(task, { attempt: r.attempt, write });
      try {
        await write;
      } catch (err) {
        // applied but not stored (a full disk): its events and the job's end go out with the resend that stores it
        if (outcome.kind === 'accepted') unreported.set(task, () => reportResult(r, outcome, [], at, endedJob));
        throw err;
      }
      const report = unreported.get(task);
      unreported.delete(task);
      if (report) setImmediate(report);
    }
    if (outcome.kind === 'duplicate') {
      const lost = handedWith.get(outcome.task);
      const again = lost?.attempt === r.attempt ? lost.leased.filter((a) => book.holds(a.jobId, a.taskIndex, a.attempt, r.host, r.slot)) : [];
      if (again.length > 0) return { next: again[0]!, following: again[1] ?? null };
    }
    // a slot holds at most two leases: the task it renders and one in hand (none while held: the
    // lease may have been lost during the write)
    const want = adopting || !serving() ? 0 : Math.min(r.want ?? (r.wantNext ? 1 : 0), 2 - book.leasesOn(r.host, r.slot));
    const leased: Leased[] = [];
    // the clock read again: while this result was being written, another may have ended a job
    // and freed the jobs after it, which must not start before that end
    const leasedAt = now();
    for (let i = 0; i < want; i++) {
      const l = leaseNext(r.host, r.slot, leasedAt, i > 0 || book.leasesOn(r.host, r.slot) > 0);
      if (!l) break;
      leased.push(l);
    }
    if ((outcome.kind === 'accepted' || outcome.kind === 'duplicate') && leased.length > 0) handedWith.set(outcome.task, { attempt: r.attempt, leased: leased.map((l) => l.assignment) });
    // The slot waits for this reply: answer first, tell the world right after (events and the
    // journal go out on the next turn of the loop, after the reply has been written).
    setImmediate(() => reportResult(r, outcome, leased, at, endedJob, startedHeld));
    return { next: leased[0]?.assignment ?? null, following: leased[1]?.assignment ?? null };
  }

  function reportResult(r: TaskResult, outcome: ReturnType<JobBook['result']>, leased: Leased[], at: number, endedJob: boolean, startedHeld?: Job): void {
    announceStarts();
    for (const l of leased) onLeased(l.job, l.assignment);
    if (startedHeld && startedHeld !== (outcome.kind === 'unknown' ? undefined : outcome.job)) progressSoon(startedHeld, at);
    if (outcome.kind === 'unknown') {
      log.warn({ jobId: r.jobId, taskIndex: r.taskIndex, host: r.host }, 'result for an unknown task acknowledged and dropped');
      return;
    }
    if (outcome.kind === 'stale') {
      log.info({ jobId: r.jobId, taskIndex: r.taskIndex, attempt: r.attempt, current: outcome.task.attempt }, 'stale result ignored');
      return;
    }
    if (outcome.kind === 'duplicate') return;
    if (outcome.kind === 'returned') {
      log.info({ jobId: r.jobId, taskIndex: r.taskIndex, host: r.host }, 'task handed back unrendered; queued again');
      actor.send({ type: 'dispatch.wanted' });
      return;
    }
    const { job, task, retried } = outcome;
    if (r.status === 'done') frameEvent(job, task.frames, 'done', { host: r.host, slot: r.slot, attempt: r.attempt, stats: r.stats }, r.outputs);
    else frameEvent(job, task.frames, retried ? 'retrying' : 'failed', { host: r.host, slot: r.slot, attempt: r.attempt, ...(task.error !== undefined ? { error: task.error } : {}) });
    if (outcome.sick) {
      log.warn({ host: r.host, until: outcome.sick.until, jobs: outcome.sick.jobs, error: task.error }, 'host is sick: it failed frames of several jobs, or cannot see files other hosts render; it gets no work for a while');
      const reason = r.error?.code === 'RB_INPUT_NOT_FOUND' ? `cannot see the files of job ${job.id}, which other hosts render (${task.error})` : `failed frames of jobs ${outcome.sick.jobs.join(', ')}`;
      publish(subjects.hostEvent(site, r.host, 'sick'), codecs.hostEvent.encode({ v: PROTOCOL_MAJOR, host: r.host, event: 'sick', at, reason }));
    }
    for (const t of outcome.stopped ?? []) if (t.host) killTask(t.host, `${job.id}.${t.index}`, 'its job failed', t.attempt);
    if (endedJob) finishJob(job);
    else progressSoon(job, at);
  }

  /** The job's progress event, unless one went out within PROGRESS_EVERY_MS. */
  function progressSoon(job: Job, at: number): void {
    if (book.isFinished(job) || at - (lastProgress.get(job.id) ?? 0) < PROGRESS_EVERY_MS) return;
    lastProgress.set(job.id, at);
    jobEvent(job, 'progress');
  }

  /**
   * The most urgent queued task this host can take, leased to a slot that reported a result.
   * A task to hold in hand (`inHand`) comes only from that same most urgent job, and only while
   * the job has more queued tasks than running ones: the last tasks of a job spread over the
   * slots that free up next instead of queueing behind each other in one slot.
   */
  function leaseNext(host: string, slot: number, at: number, inHand: boolean): Leased | null {
    const known = hosts.get(host);
    if (!known) return null;
    for (const job of book.forSlot()) {
      if (!book.matches(job, host, known.inventory)) continue;
      if (inHand && job.queuedTasks <= job.runningTasks) return null;
      const assignment = book.lease(job, host, slot, at, known.inventory.ramMb);
      if (assignment) return { job, assignment };
    }
    return null;
  }

  // --- dispatch ---------------------------------------------------------------------
  const rememberHost = (host: string, serverId: string, inventory: KnownHost['inventory']) => {
    const known = hosts.get(host);
    if (known && known.serverId !== serverId) forgetHost(host, 'restarted');
    hosts.set(host, { serverId, inventory });
  };
  const forgetHost = (host: string, reason: string) => {
    hosts.delete(host);
    liveness.forget(host);
    book.forgetHost(host);
    const touched = book.releaseHost(host);
    if (touched.length > 0) log.warn({ host, reason, jobs: touched.map((j) => j.id) }, 'tasks of a lost host requeued');
  };

  async function dispatchRound(): Promise<void> {
    placeWaiting(); // auto jobs released, or whose placement could not be journaled
    let jobs = book.queue().slice(0, ROUND_JOBS);
    if (jobs.length === 0) return;
    const byProfile = new Map<string, Job>();
    for (const j of jobs) if (!byProfile.has(j.profileKey)) byProfile.set(j.profileKey, j);
    const matches = new Map<string, MatchBody>();
    let registryDown = false;
    await Promise.all(
      [...byProfile].map(async ([key, j]) => {
        try {
          const body = await call(nc, subjects.regMatch(site), codecs.matchRequest, { v: PROTOCOL_MAJOR, requirements: j.prepared.requirements, freeOnly: true }, codecs.matchReply, { timeoutMs: 3_000, unavailable: 'RB_REGISTRY_UNAVAILABLE' });
          matches.set(key, body);
          for (const h of body.hosts) rememberHost(h.host, h.serverId, h.inventory);
        } catch (err) {
          registryDown = true;
          log.debug({ err }, 'registry match failed');
        }
      }),
    );
    if (registryDown) {
      for (const j of jobs) if (!matches.has(j.profileKey) && j.runningTasks === 0) setWaiting(j, { kind: 'registry', text: 'the resource registry is not answering' });
    }
    // the site's policy: jobs no local host can render go to a peer before the round (outsource-policy.ts)
    const kept = new Map<Job, string>();
    const sends: Promise<void>[] = [];
    if (policy.length > 0) {
      const t = now();
      for (const j of jobs) {
        const m = matches.get(j.profileKey);
        if (!noLocalHost(m)) unrenderableSince.delete(j);
        else if (!unrenderableSince.has(j)) unrenderableSince.set(j, t);
        // a project whose budget is spent sends nothing out: the job waits here, saying why
        const v = unrenderableVerdict(j, m, t - (unrenderableSince.get(j) ?? t), policy, peers(), book.budgets.spentWhy(j.project));
        if (v && 'send' in v) sends.push(sendByPolicy(j, v.send, v.why).catch((err: unknown) => log.warn({ err, jobId: j.id, peer: v.send }, 'could not journal sending a job by policy; tried again next round')));
        else if (v) kept.set(j, v.keep);
      }
    }
    if (sends.length > 0) {
      await Promise.all(sends);
      // while the records were written, jobs may have gone out, ended, or been paused: the queue as it is now
      const queued = new Set(book.queue());
      jobs = jobs.filter((j) => queued.has(j));
    }
    if (!serving()) return; // held while the registry answered: nothing is leased without the lease
    const plan = planDispatch(book, jobs, (j) => matches.get(j.profileKey), now());
    for (const [job, reason] of plan.waiting) {
      const keep = kept.get(job);
      setWaiting(job, keep !== undefined && reason.kind === 'no-match' ? withPolicyNote(reason, keep) : reason);
    }
    // the leases are in the book already: the round does not wait for the hosts' answers (one
    // slow host would hold up every other dispatch for the whole timeout)
    for (const [host, list] of plan.byHost) void sendAssignments(host, list);
  }

  const setWaiting = (job: Job, reason: WaitReason) => {
    if (job.waiting?.text === reason.text) return;
    job.waiting = reason;
    jobEvent(job, 'waiting');
  };

  async function sendAssignments(host: string, list: TaskAssignment[]): Promise<void> {
    announceStarts();
    for (const a of list) onLeased(book.jobs.get(a.jobId)!, a);
    try {
      const body = await call(nc, subjects.hostAssign(site, host), codecs.assignRequest, { v: PROTOCOL_MAJOR, host, assignments: list }, codecs.assignReply, { timeoutMs: 3_000 });
      for (const r of body.rejected) {
        const a = list.find((x) => x.taskId === r.taskId);
        if (a) book.unlease(a.jobId, a.taskIndex, a.attempt);
        log.info({ host, taskId: r.taskId, code: r.code }, 'assignment refused; task requeued');
      }
    } catch (err) {
      if (timedOut(err)) {
        // a host that is there but slow (a loaded machine) may have taken them: requeued now, they
        // would run twice. Its lease reports settle it: listed, they run; left out twice, or the
        // host silent for three report periods, they are requeued (JobBook.renew, expireLeases).
        log.info({ host, tasks: list.length }, 'assignment not answered in time; the host\'s lease reports will settle it');
        return;
      }
      for (const a of list) book.unlease(a.jobId, a.taskIndex, a.attempt);
      log.warn({ err, host, tasks: list.length }, 'assignment not delivered; tasks requeued');
    }
  }

  // --- leases -----------------------------------------------------------------------
  /** A render server's lease report: renews, re-adopts, and sorts out leases that are not its own any more. */
  function onLeaseReport(rep: LeaseReport, subject: string): void {
    if (!actor.getSnapshot().matches('serving')) return; // the queue is not rebuilt yet; reports repeat
    if (lastToken(subject) !== rep.host) {
      log.warn({ subject, host: rep.host }, 'ignored a lease report sent for another host');
      return;
    }
    if (yetToReport !== null) {
      yetToReport.delete(rep.host);
      if (yetToReport.size === 0) adoptDone();
    }
    const at = now();
    if (liveness.report(rep.host, rep.serverId, rep.everyMs, at)) {
      forgetHost(rep.host, 'restarted'); // the leases of its previous instance are gone with it
      liveness.report(rep.host, rep.serverId, rep.everyMs, at);
    }
    const out = book.renew(rep.host, onOurClock(rep, at), at);
    announceStarts();
    if (out.adopted.length > 0) log.info({ host: rep.host, tasks: out.adopted.length }, 'running tasks re-adopted');
    // tasks that left the hand and started: their jobs' running counts changed
    for (const job of new Set(out.started)) progressSoon(job, at);
    // a task of a paused job still in hand (its lease was on its way when the job was paused, or
    // it was re-adopted after a restart) is asked back again
    for (const h of rep.tasks) {
      if (h.state === 'held' && book.jobs.get(h.jobId)?.paused && book.holds(h.jobId, h.taskIndex, h.attempt, rep.host, h.slot)) askBack(rep.host, h.jobId, h.taskIndex, h.attempt);
    }
    for (const h of out.foreign) dropForeign(rep.host, h);
    if (out.lost.length > 0) {
      log.warn({ host: rep.host, jobs: out.lost.map((j) => j.id) }, 'leases the host no longer holds were requeued');
      actor.send({ type: 'dispatch.wanted' });
    }
  }

  /** A report's start times, from the host's clock to ours (by the report's age: the hosts' clocks may be off). */
  const onOurClock = (rep: LeaseReport, at: number): HeldLease[] =>
    rep.tasks.map((h) => (h.startedAt === undefined ? h : { ...h, startedAt: at - Math.max(0, rep.at - h.startedAt) }));

  const dropForeign = (host: string, h: HeldLease) => {
    const task = book.jobs.get(h.jobId)?.tasks.view(h.taskIndex);
    const why = !task ? 'unknown job' : task.state === 'running' ? `attempt ${task.attempt} runs on ${task.host ?? '?'}` : `task is ${task.state}`;
    killTask(host, h.taskId, why, h.attempt);
  };

  /** Leases of hosts whose reports stopped go back to the queue (the machine calls this every second). */
  function expireLeases(): void {
    if (now() - lastRetention >= RETENTION_EVERY_MS) applyRetention();
    for (const host of liveness.overdue(book.leaseholders(), now())) {
      forgetHost(host, 'its lease reports stopped');
      actor.send({ type: 'dispatch.wanted' });
    }
  }

  /**
   * After a restart, the `outsourced` event of each job nothing was heard of yet goes out again:
   * it may have been lost with the old process right after the submit's journal write, and the
   * packer writes each bundle once however often it is told. (A `cancelled` event is not told
   * again: the notifier would tell the client twice.)
   */
  function tellOutsourcedAgain(): void {
    for (const job of book.jobs.values()) {
      if (job.remote?.state === 'sent' && book.state(job) === 'outsourced') jobEvent(job, 'outsourced');
    }
  }

  const announce = () => publish(subjects.schedHello(site), codecs.schedHello.encode({ v: PROTOCOL_MAJOR, schedulerId, at: now() }));
  /** The render servers alive at a takeover that have not reported to this term yet (null: adopt for the whole window). */
  let yetToReport: Set<string> | null = o.adoptHosts ? new Set(o.adoptHosts) : null;
  const adoptDone = () => {
    yetToReport = null;
    log.info({ hosts: o.adoptHosts?.size ?? 0 }, 'every render server alive has reported: dispatching');
    actor.send({ type: 'adopt.done' });
  };

  /** While this scheduler is off the bus no report can reach it: lease clocks stop, and restart when it is back. */
  async function watchBus(): Promise<void> {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') liveness.pause();
      else if (s.type === 'reconnect') {
        liveness.resume(now());
        if (actor.getSnapshot().matches('serving')) announce();
      }
    }
  }

  // --- machine ----------------------------------------------------------------------
  const machine = schedulerMachine.provide({
    actors: {
      openStore: fromPromise(async () => {
        journal = await Journal.open(nc, site, log, o.replicas !== undefined ? { replicas: o.replicas } : {});
      }),
      recover: fromPromise(async () => {
        book = new JobBook();
        const records = await journal!.replay((rec, seq) => {
          const retried = applyRecord(book, rec, seq);
          if (retried) announcedEnd.delete(retried.id);
        });
        book.finishReplay();
        // a split job's state is its parts' (not journaled of its own): an end found now was told before the restart
        for (const job of book.jobs.values()) if (job.parts && syncParent(book, job, now()) !== undefined && book.isFinished(job)) announcedEnd.add(job.id);
        applyRetention();
        tellOutsourcedAgain();
        // auto jobs the old process had not placed yet are asked about again
        unplaced.clear();
        for (const job of book.jobs.values()) if (job.spec.site === AUTO_SITE && job.placement === undefined && !book.isFinished(job)) unplaced.add(job);
        return records;
      }),
      dispatchRound: fromPromise(dispatchRound),
    },
    actions: {
      reportOpenFailure: ({ event }) => log.warn({ err: (event as { error?: unknown }).error }, 'durable store unavailable; retrying'),
      reportRecovered: ({ event }) => {
        log.info({ records: (event as { output?: number }).output, jobs: book.jobs.size }, 'journal replayed; serving');
        if (yetToReport?.size === 0) queueMicrotask(adoptDone); // no render server was alive to report
      },
      reportDispatchFailure: ({ event }) => log.error({ err: (event as { error?: unknown }).error }, 'dispatch round failed'),
      announce,
      expireLeases,
      pauseClocks: () => liveness.pause(),
      resumeClocks: () => liveness.resume(now()),
    },
  });

  const fromPeers = intakeRequests({
    book: () => book,
    submit,
    cancel: async (jobId) => (await control({ v: PROTOCOL_MAJOR, action: 'cancel', jobId }, null)).job,
  });

  const actor = createActor(machine);
  actor.subscribe({
    next: (s) => log.debug({ state: s.value }, 'scheduler state'),
    error: (err) => log.error({ err }, 'scheduler machine failed'),
  });

  subs.push(
    serve(nc, { subject: subjects.allSchedSubmit(site), request: codecs.submitRequest, reply: codecs.submitReply, handle: (req, msg) => submit(req, callerOf(msg.subject, 'the job')), log }),
    serve(nc, { subject: subjects.schedQuery(site), request: codecs.queryRequest, reply: codecs.queryReply, handle: query, log }),
    // the same requests twice: as a job's owner or a reader, and as an operator (op.*), which only
    // operators' credentials may publish (protocol/roles.ts)
    serve(nc, { subject: subjects.allSchedCtl(site), request: codecs.ctlRequest, reply: codecs.ctlReply, handle: (req, msg) => control(req, callerOf(msg.subject, 'the request')), log }),
    serve(nc, { subject: subjects.opCtl(site), request: codecs.ctlRequest, reply: codecs.ctlReply, handle: (req) => control(req, null), log }),
    // a peer's job, submitted or cancelled by the intake: the subject's last token is the peer
    serve(nc, { subject: subjects.allSchedIntake(site), request: codecs.intakeRequest, reply: codecs.intakeReply, handle: (req, msg) => fromPeers(req, lastToken(msg.subject)), log }),
    serve(nc, { subject: subjects.schedHosts(site), request: codecs.hostsRequest, reply: codecs.hostsReply, handle: (req) => hostsRequest(req, false), log }),
    serve(nc, { subject: subjects.opHosts(site), request: codecs.hostsRequest, reply: codecs.hostsReply, handle: (req) => hostsRequest(req, true), log }),
    serve(nc, { subject: subjects.schedLimits(site), request: codecs.limitsRequest, reply: codecs.limitsReply, handle: (req) => limits(req, false), log }),
    serve(nc, { subject: subjects.opLimits(site), request: codecs.limitsRequest, reply: codecs.limitsReply, handle: (req) => limits(req, true), log }),
    serve(nc, { subject: subjects.schedShares(site), request: codecs.sharesRequest, reply: codecs.sharesReply, handle: (req) => shares(req, false), log }),
    serve(nc, { subject: subjects.opShares(site), request: codecs.sharesRequest, reply: codecs.sharesReply, handle: (req) => shares(req, true), log }),
    serve(nc, { subject: subjects.schedBudgets(site), request: codecs.budgetsRequest, reply: codecs.budgetsReply, handle: (req) => budgets(req, false), log }),
    serve(nc, { subject: subjects.opBudgets(site), request: codecs.budgetsRequest, reply: codecs.budgetsReply, handle: (req) => budgets(req, true), log }),
    serve(nc, { subject: subjects.allSchedResults(site), request: codecs.taskResult, reply: codecs.taskResultReply, handle: result, log }),
    serve(nc, { subject: subjects.allSchedRemote(site), request: codecs.remoteUpdate, reply: codecs.remoteUpdateReply, handle: (u, msg) => remoteUpdate(u, lastToken(msg.subject)), log }),
    // the queue's load, for the quote this site gives a peer (sites/quotes): only its site-link may ask
    serve(nc, { subject: subjects.schedLoad(site), request: codecs.loadRequest, reply: codecs.loadReply, handle: (req) => {
      requireServing();
      return Promise.resolve(queueLoad(book, req.renderer, req.priority));
    }, log }),
    listen(nc, subjects.allSchedLeases(site), codecs.leaseReport, log, onLeaseReport),
    listen(nc, subjects.allHostEvents(site), codecs.hostEvent, log, (evt) => {
      if (evt.event === 'down') {
        forgetHost(evt.host, evt.reason ?? 'down');
        actor.send({ type: 'dispatch.wanted' });
      } else if (evt.event === 'up') {
        const known = hosts.get(evt.host);
        if (known && evt.serverId && known.serverId !== evt.serverId) forgetHost(evt.host, 'restarted');
        actor.send({ type: 'dispatch.wanted' });
      } else if (evt.event === 'slot' && evt.slot?.state === 'idle' && book.queue().length > 0) {
        actor.send({ type: 'dispatch.wanted' });
      }
    }),
  );
  void watchBus();
  actor.start();
  try {
    await waitFor(actor, (s) => s.matches('serving') || s.matches('held'), { timeout: 30_000 });
  } catch {
    log.warn('scheduler not serving after 30 s; it keeps trying');
  }

  return {
    hold: () => actor.send({ type: 'lease.held' }),
    resume: () => actor.send({ type: 'lease.resumed' }),
    async stop() {
      actor.send({ type: 'scheduler.stop' });
      for (const s of subs) s.unsubscribe();
      actor.stop();
    },
  };
}
