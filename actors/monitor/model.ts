import { eventFrames, JobState, type FrameEvent, type HostEvent, type HostRecord, type JobEvent, type JobSummary, type LinkStatus, type LiveStats, type SickHost, type SlotInfo } from '../../protocol/index.ts';
import { SlotRuns, type Span } from './slot-runs.ts';

/**
 * The monitor's view of the farm, built from events (`rb.<site>.evt.>`) and periodic snapshots
 * (`sched.query {what:'jobs'}`, `reg.list`). Pure: no I/O, no clock; every time comes from an
 * event or from the caller. One model serves `/metrics` and the web monitor's live view.
 *
 * Every change bumps `version` and stamps what changed with it, so a client that holds the state
 * of version n asks `changesSince(n)` for exactly what is newer (the web monitor's live stream).
 */

/** An event as the monitor hears it, already decoded by the subject it came on. */
export type MonitorEvent = { kind: 'job'; evt: JobEvent } | { kind: 'frame'; evt: FrameEvent } | { kind: 'host'; evt: HostEvent };

export type SlotState = SlotInfo['state'];

export interface HostView {
  host: string;
  up: boolean;
  /** Sick: the scheduler said it failed too many frames lately (`sick` event); the scheduler's sick list, polled with the snapshots, sets and clears it. */
  sick: boolean;
  /** Until when it stays sick unless an operator clears it (from the sick list). */
  sickUntil?: number;
  /** CPUs and RAM, from the registry's snapshot. */
  cpus?: number;
  ramMb?: number;
  /** Slot index → state. Empty until a snapshot or a slot event says. */
  slots: Map<number, SlotState>;
  /** 1-minute load average, from the registry's snapshot. */
  load?: number;
  /** Time of the latest news about this host (event `at`, or a snapshot's time). */
  seenAt: number;
  /** Model version of its last change. */
  v: number;
}

export interface JobView {
  summary: JobSummary;
  seenAt: number;
  v: number;
}

/** A frame's state as the live view shows it, from one frame event. */
export interface FrameChange {
  v: number;
  jobId: string;
  frame: number;
  /** The event that moved it (dispatched, started, progress, done, failed, retrying). */
  event: string;
  state: 'queued' | 'running' | 'done' | 'failed';
  at: number;
  host?: string;
  slot?: number;
  attempt?: number;
  percent?: number;
  output?: string;
  error?: string;
  /** Running events: true when handed to its slot (dispatched) and not started yet (held in hand), false once started. */
  inHand?: boolean;
}

/** A host as the live view shows it: its slots with what runs there, and those tasks' figures summed. */
export interface HostLive {
  host: string;
  up: boolean;
  sick: boolean;
  sickUntil?: number;
  load?: number;
  cpus?: number;
  ramMb?: number;
  slots: { index: number; state: SlotState; run?: { jobId: string; attempt: number; frames: number[]; startedAt: number; live?: LiveStats } }[];
  /** CPU use of its running tasks (100 = one core), from their latest `stats` events. */
  cpuPercent: number;
  /** Resident memory of its running tasks. */
  rssKb: number;
}

/**
 * The site's links to its peers, as its link service last answered `link.status` (the web
 * monitor's Sites panel; `renderbus sites` asks the same). Absent until the service answered once:
 * a farm that is no linked site has none.
 */
export interface SitesLive {
  /** The link service answered the last time it was asked; false: `links` are as it said before. */
  answered: boolean;
  links: LinkStatus[];
  /** When it was asked (caller's clock). */
  at: number;
}

/** What changed after a version: the live stream's message. `full`: the client's base is too old (or none), this is everything and replaces what it held. */
export interface FarmDelta {
  version: number;
  full: boolean;
  jobs: JobSummary[];
  removedJobs: string[];
  hosts: HostLive[];
  spans: Omit<Span, 'v'>[];
  frames: Omit<FrameChange, 'v'>[];
  /** The site's links, when they changed after that version (always in a full answer, once known). */
  sites?: SitesLive;
}

/** Frame changes and job removals kept for clients catching up; one further behind gets everything anew. */
export const MAX_FRAME_CHANGES = 20_000;

/**
 * Dispatch latency, in seconds: for each frame `started` event that carries `waitMs`, the time
 * the slot stood idle, with no task, before this task reached it (measured by the render host
 * on its own monotonic clock; 0 when the task was already in hand). It is independent of the
 * scheduler's clock and of how long a job was queued: it measures the farm's dispatch path, not
 * the queue. Every frame of a chunk carries its task's wait, so a chunk of n frames counts n times.
 */
export const LATENCY_BUCKETS_S = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] as const;

export interface LatencyHistogram {
  /** Upper bounds in seconds (LATENCY_BUCKETS_S); `counts[i]` is observations ≤ `bounds[i]` (cumulative). */
  bounds: readonly number[];
  counts: number[];
  count: number;
  /** Sum of the observations, seconds. */
  sum: number;
}

/** What applying an event observed, for whoever mirrors the model (e.g. a Prometheus histogram). */
export interface Applied {
  /** The event changed the model. */
  used: boolean;
  /** A dispatch latency observed, seconds. */
  latencyS?: number;
}

export interface FarmFigures {
  jobsByState: Record<JobState, number>;
  framesDone: number;
  framesFailed: number;
  framesRetried: number;
  slots: { busy: number; free: number; draining: number };
  hostsUp: number;
  /** Hosts the scheduler holds sick (up or not). */
  hostsSick: number;
  hostLoad: { host: string; load: number }[];
  latency: LatencyHistogram;
}

const JOB_STATES = new Set<string>(Object.values(JobState));
const SLOT_STATES = new Set<string>(['idle', 'busy', 'draining']);

export class FarmModel {
  readonly jobs = new Map<string, JobView>();
  readonly hosts = new Map<string, HostView>();
  /** Frames rendered (`done` events), since the monitor started. */
  framesDone = 0;
  /** Frames given up (`failed` events: out of attempts), since the monitor started. */
  framesFailed = 0;
  /** Attempts that failed and were queued again (`retrying` events). */
  framesRetried = 0;
  /** Events ignored: unknown event names or payloads the model cannot use. */
  ignored = 0;
  readonly latency: LatencyHistogram = { bounds: LATENCY_BUCKETS_S, counts: LATENCY_BUCKETS_S.map(() => 0), count: 0, sum: 0 };
  /** When the last snapshot of each kind came in (caller's clock), or undefined. */
  jobsSnapshotAt: number | undefined;
  hostsSnapshotAt: number | undefined;
  /** Bumped by every change; what changed carries the version it was changed in. */
  version = 0;
  /** The site's links (applyLinks), with the version they last changed in. */
  sites: (SitesLive & { v: number }) | undefined;
  /** What runs on each slot, and the timeline of task attempts on slots. */
  readonly runs = new SlotRuns();
  private readonly frameChanges: FrameChange[] = [];
  private readonly removed: { v: number; jobId: string }[] = [];
  /** The newest version whose frame changes or removals were forgotten: a client behind it gets everything. */
  private forgotten = 0;

  apply(e: MonitorEvent): Applied {
    const r = e.kind === 'job' ? this.job(e.evt) : e.kind === 'frame' ? this.frame(e.evt) : e.kind === 'host' ? this.hostEvent(e.evt) : { used: false };
    if (!r.used) this.ignored++;
    return r;
  }

  /**
   * The scheduler's whole job list, asked for at `at`: it replaces every job heard of no later
   * than `at` (news that came in while the query was on its way wins over it).
   */
  applyJobs(jobs: readonly JobSummary[], at: number): void {
    const listed = new Set<string>();
    const v = ++this.version;
    for (const j of jobs) {
      if (!JOB_STATES.has(j.state)) continue;
      listed.add(j.jobId);
      const had = this.jobs.get(j.jobId);
      if (had && had.seenAt > at) continue;
      // a summary equal to the one held is no news for the live view
      const same = had !== undefined && JSON.stringify(had.summary) === JSON.stringify(j);
      this.jobs.set(j.jobId, { summary: j, seenAt: at, v: same ? had.v : v });
    }
    for (const [id, view] of this.jobs) {
      if (listed.has(id) || view.seenAt > at) continue;
      this.jobs.delete(id);
      this.remember(this.removed, { v, jobId: id });
    }
    this.jobsSnapshotAt = at;
  }

  /** The registry's whole database, asked for at `at`: hosts listed are up with these slots; others heard of no later than `at` are down. */
  applyHosts(records: readonly HostRecord[], at: number): void {
    const listed = new Set<string>();
    const v = ++this.version;
    for (const r of records) {
      listed.add(r.host);
      const had = this.hosts.get(r.host);
      const inventory = { cpus: r.inventory.cpu.count, ramMb: r.inventory.ramMb };
      this.runs.snapshot(r.host, r.slots, at, v); // runs and spans follow the slots' own news
      if (had && had.seenAt > at) {
        if (r.load !== undefined) had.load = r.load;
        Object.assign(had, inventory, { v });
        continue;
      }
      const slots = new Map<number, SlotState>();
      for (const s of r.slots) slots.set(s.index, r.draining && s.state === 'idle' ? 'draining' : s.state);
      const sick = { sick: had?.sick ?? false, ...(had?.sickUntil !== undefined ? { sickUntil: had.sickUntil } : {}) };
      this.hosts.set(r.host, { host: r.host, up: true, ...sick, slots, ...(r.load !== undefined ? { load: r.load } : {}), ...inventory, seenAt: at, v });
    }
    for (const [name, h] of this.hosts) {
      if (!listed.has(name) && h.seenAt <= at && h.up) {
        h.up = false;
        h.slots.clear();
        h.v = v;
        this.runs.hostDown(name, at, v);
      }
    }
    this.hostsSnapshotAt = at;
  }

  /**
   * The scheduler's sick list (`sched.hosts {action:'sick'}`), asked for at `at`: the hosts on it
   * are sick until their time, every other host is not (an operator cleared it, or its time passed).
   */
  applySick(sick: readonly SickHost[], at: number): void {
    const v = ++this.version;
    const until = new Map(sick.map((s) => [s.host, s.until]));
    for (const h of this.hosts.values()) {
      const u = until.get(h.host);
      if (u === undefined && h.sick && h.seenAt <= at) {
        h.sick = false;
        delete h.sickUntil;
        h.v = v;
      } else if (u !== undefined && (!h.sick || h.sickUntil !== u)) {
        h.sick = true;
        h.sickUntil = u;
        h.v = v;
      }
    }
  }

  /**
   * The link service's answer to `link.status`, asked for at `at`; null: it did not answer (no
   * service runs: a farm that is no linked site, or it is down). Once it answered, a missing
   * answer keeps the links it gave, marked unanswered.
   */
  applyLinks(links: readonly LinkStatus[] | null, at: number): void {
    if (links === null) {
      if (!this.sites?.answered) return;
      this.sites = { ...this.sites, answered: false, at, v: ++this.version };
      return;
    }
    const next = [...links].sort((a, b) => a.peer.localeCompare(b.peer));
    if (this.sites?.answered && JSON.stringify(this.sites.links) === JSON.stringify(next)) return;
    this.sites = { answered: true, links: next, at, v: ++this.version };
  }

  /** What changed after version `since` (everything when `since` is absent or older than what is kept). */
  changesSince(since?: number): FarmDelta {
    const full = since === undefined || since < this.forgotten || since > this.version;
    const after = full ? -1 : since;
    const strip = <T extends { v: number }>({ v: _v, ...rest }: T) => rest;
    return {
      version: this.version,
      full,
      jobs: [...this.jobs.values()].filter((j) => j.v > after).map((j) => j.summary),
      removedJobs: full ? [] : this.removed.filter((r) => r.v > after).map((r) => r.jobId),
      hosts: [...this.hosts.values()].filter((h) => h.v > after).sort((a, b) => a.host.localeCompare(b.host)).map((h) => this.hostLive(h)),
      spans: this.runs.spansSince(after).map(strip),
      // a full answer has no frame changes: the client asks the scheduler for the frames it shows
      frames: full ? [] : this.frameChanges.filter((c) => c.v > after).map(strip),
      ...(this.sites && this.sites.v > after ? { sites: strip(this.sites) } : {}),
    };
  }

  /** A host with its slots, what runs on them and their figures. */
  hostLive(h: HostView): HostLive {
    let cpuPercent = 0;
    let rssKb = 0;
    const slots = [...h.slots].sort(([a], [b]) => a - b).map(([index, state]) => {
      const r = this.runs.run(h.host, index);
      if (!r) return { index, state };
      if (r.live) {
        cpuPercent += r.live.cpuPercent;
        rssKb += r.live.rssKb;
      }
      return { index, state, run: { jobId: r.jobId, attempt: r.attempt, frames: [...r.frames], startedAt: r.startedAt, ...(r.live ? { live: r.live } : {}) } };
    });
    const opt = <K extends 'sickUntil' | 'load' | 'cpus' | 'ramMb'>(k: K) => (h[k] !== undefined ? { [k]: h[k] } : {});
    return { host: h.host, up: h.up, sick: h.sick, ...opt('sickUntil'), ...opt('load'), ...opt('cpus'), ...opt('ramMb'), slots, cpuPercent, rssKb };
  }

  figures(): FarmFigures {
    const jobsByState = Object.fromEntries(Object.values(JobState).map((s) => [s, 0])) as Record<JobState, number>;
    for (const { summary } of this.jobs.values()) jobsByState[summary.state]++;
    const slots = { busy: 0, free: 0, draining: 0 };
    let hostsUp = 0;
    let hostsSick = 0;
    const hostLoad: { host: string; load: number }[] = [];
    for (const h of [...this.hosts.values()].sort((a, b) => a.host.localeCompare(b.host))) {
      if (h.sick) hostsSick++;
      if (!h.up) continue;
      hostsUp++;
      if (h.load !== undefined) hostLoad.push({ host: h.host, load: h.load });
      for (const s of h.slots.values()) {
        if (s === 'idle') slots.free++;
        else slots[s]++;
      }
    }
    return {
      jobsByState,
      framesDone: this.framesDone,
      framesFailed: this.framesFailed,
      framesRetried: this.framesRetried,
      slots,
      hostsUp,
      hostsSick,
      hostLoad,
      latency: { ...this.latency, counts: [...this.latency.counts] },
    };
  }

  private job(evt: JobEvent): Applied {
    const j = evt.job;
    if (!j || j.jobId !== evt.jobId || !JOB_STATES.has(j.state)) return { used: false };
    const had = this.jobs.get(j.jobId);
    if (had && had.seenAt > evt.at) return { used: false }; // older than what we hold
    const v = ++this.version;
    this.jobs.set(j.jobId, { summary: j, seenAt: evt.at, v });
    if (j.state === JobState.Cancelled) this.touchHostsOf(this.runs.jobCancelled(j.jobId, evt.at, v) ? j.jobId : null, v);
    return { used: true };
  }

  /** A frame event, for each frame it is about (a task's event names all of its frames); a task's wait is observed once. */
  private frame(evt: FrameEvent): Applied {
    let applied: Applied = { used: false };
    let first = true;
    const { frames: _all, outputs: _outputs, output: _output, ...rest } = evt;
    for (const f of eventFrames(evt)) {
      const r = this.oneFrame({ ...rest, ...f }, first);
      first = false;
      if (r.used && !applied.used) applied = r;
    }
    return applied;
  }

  private oneFrame(evt: FrameEvent, observeWait: boolean): Applied {
    const { host, slot } = evt;
    const onSlot = host !== undefined && slot !== undefined;
    const v = this.version + 1;
    const change = (state: FrameChange['state'], extra: Partial<FrameChange> = {}) => {
      this.version = v;
      const c: FrameChange = { v, jobId: evt.jobId, frame: evt.frame, event: evt.event, state, at: evt.at, ...extra };
      if (host !== undefined) c.host = host;
      if (slot !== undefined) c.slot = slot;
      if (evt.attempt !== undefined) c.attempt = evt.attempt;
      this.remember(this.frameChanges, c);
    };
    const ended = (outcome: 'done' | 'failed' | 'retrying') => {
      if (onSlot && this.runs.frameEnded(host, slot, evt.jobId, evt.frame, outcome, evt.at, v)) this.touchHost(host, v);
    };
    switch (evt.event) {
      case 'done':
        this.framesDone++;
        ended('done');
        change('done', evt.output !== undefined ? { output: evt.output } : {});
        return { used: true };
      case 'failed':
        this.framesFailed++;
        ended('failed');
        change('failed', evt.error !== undefined ? { error: evt.error } : {});
        return { used: true };
      case 'retrying':
        this.framesRetried++;
        ended('retrying');
        change('queued', evt.error !== undefined ? { error: evt.error } : {});
        return { used: true };
      case 'started': {
        const ms = evt.waitMs;
        if (ms !== undefined && (!Number.isFinite(ms) || ms < 0)) return { used: false }; // a broken event: none of it is trusted
        if (onSlot && this.runs.started(host, slot, evt.jobId, evt.frame, evt.attempt ?? 0, evt.at, v, evt.log)) this.touchHost(host, v);
        change('running', { inHand: false });
        if (ms === undefined || !observeWait) return { used: true };
        const s = ms / 1000;
        this.latency.count++;
        this.latency.sum += s;
        this.latency.bounds.forEach((b, i) => {
          if (s <= b) this.latency.counts[i]!++;
        });
        return { used: true, latencyS: s };
      }
      case 'dispatched':
        change('running', { inHand: true });
        return { used: true };
      case 'progress':
        change('running', evt.percent !== undefined ? { percent: evt.percent } : {});
        return { used: true };
      case 'stats':
        if (!onSlot || !evt.live) return { used: false };
        if (this.runs.live(host, slot, evt.jobId, evt.live, v)) {
          this.version = v;
          this.touchHost(host, v);
        }
        return { used: true };
      default:
        return { used: false };
    }
  }

  /** Appends to a bounded log of changes; what falls off the front marks clients behind it for a full answer. */
  private remember<T extends { v: number }>(list: T[], item: T): void {
    list.push(item);
    if (list.length > MAX_FRAME_CHANGES) {
      const dropped = list.splice(0, list.length - MAX_FRAME_CHANGES);
      this.forgotten = Math.max(this.forgotten, dropped[dropped.length - 1]!.v);
    }
  }

  private touchHost(name: string, v: number): void {
    const h = this.hosts.get(name);
    if (h) h.v = v;
  }

  /** Marks every host that ran the job's tasks as changed (their runs ended). */
  private touchHostsOf(jobId: string | null, v: number): void {
    if (jobId === null) return;
    for (const s of this.runs.spansSince(v - 1)) if (s.jobId === jobId) this.touchHost(s.host, v);
  }

  private hostEvent(evt: HostEvent): Applied {
    const name = evt.host;
    const v = this.version + 1;
    const h = this.hosts.get(name) ?? { host: name, up: false, sick: false, slots: new Map<number, SlotState>(), seenAt: evt.at, v };
    switch (evt.event) {
      case 'up':
        h.up = true;
        h.slots.clear(); // a new instance: its slots come with the next snapshot or slot events
        this.runs.hostDown(name, evt.at, v); // what the old instance ran is gone
        break;
      case 'down':
        h.up = false;
        h.slots.clear();
        this.runs.hostDown(name, evt.at, v);
        break;
      case 'slot': {
        const s = evt.slot;
        if (!s || !SLOT_STATES.has(s.state)) return { used: false };
        h.slots.set(s.index, s.state);
        h.up = true; // a slot event comes from a running render server
        break;
      }
      case 'sick':
        h.sick = true;
        break;
      case 'draining':
        for (const [i, s] of h.slots) if (s === 'idle') h.slots.set(i, 'draining');
        break;
      case 'undrained':
        for (const [i, s] of h.slots) if (s === 'draining') h.slots.set(i, 'idle');
        break;
      default:
        return { used: false };
    }
    h.seenAt = Math.max(h.seenAt, evt.at);
    h.v = v;
    this.version = v;
    this.hosts.set(name, h);
    return { used: true };
  }
}
