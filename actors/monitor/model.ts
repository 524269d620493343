import { JobState, type FrameEvent, type HostEvent, type HostRecord, type JobEvent, type JobSummary, type SlotInfo } from '../../protocol/index.ts';

/**
 * The monitor's view of the farm, built from events (`rb.<site>.evt.>`) and periodic snapshots
 * (`sched.query {what:'jobs'}`, `reg.list`). Pure: no I/O, no clock; every time comes from an
 * event or from the caller. One model serves `/metrics` now and the web monitor later.
 */

/** An event as the monitor hears it, already decoded by the subject it came on. */
export type MonitorEvent = { kind: 'job'; evt: JobEvent } | { kind: 'frame'; evt: FrameEvent } | { kind: 'host'; evt: HostEvent };

export type SlotState = SlotInfo['state'];

export interface HostView {
  host: string;
  up: boolean;
  /** Sick: the scheduler said it failed too many frames lately (`sick` event). No event clears it yet, so it stays set until the monitor restarts. */
  sick: boolean;
  /** Slot index → state. Empty until a snapshot or a slot event says. */
  slots: Map<number, SlotState>;
  /** 1-minute load average, from the registry's snapshot. */
  load?: number;
  /** Time of the latest news about this host (event `at`, or a snapshot's time). */
  seenAt: number;
}

export interface JobView {
  summary: JobSummary;
  seenAt: number;
}

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
    for (const j of jobs) {
      if (!JOB_STATES.has(j.state)) continue;
      listed.add(j.jobId);
      const had = this.jobs.get(j.jobId);
      if (!had || had.seenAt <= at) this.jobs.set(j.jobId, { summary: j, seenAt: at });
    }
    for (const [id, v] of this.jobs) if (!listed.has(id) && v.seenAt <= at) this.jobs.delete(id);
    this.jobsSnapshotAt = at;
  }

  /** The registry's whole database, asked for at `at`: hosts listed are up with these slots; others heard of no later than `at` are down. */
  applyHosts(records: readonly HostRecord[], at: number): void {
    const listed = new Set<string>();
    for (const r of records) {
      listed.add(r.host);
      const had = this.hosts.get(r.host);
      if (had && had.seenAt > at) {
        if (r.load !== undefined) had.load = r.load;
        continue;
      }
      const slots = new Map<number, SlotState>();
      for (const s of r.slots) slots.set(s.index, r.draining && s.state === 'idle' ? 'draining' : s.state);
      this.hosts.set(r.host, { host: r.host, up: true, sick: had?.sick ?? false, slots, ...(r.load !== undefined ? { load: r.load } : {}), seenAt: at });
    }
    for (const [name, h] of this.hosts) {
      if (!listed.has(name) && h.seenAt <= at) {
        h.up = false;
        h.slots.clear();
      }
    }
    this.hostsSnapshotAt = at;
  }

  figures(): FarmFigures {
    const jobsByState = Object.fromEntries(Object.values(JobState).map((s) => [s, 0])) as Record<JobState, number>;
    for (const { summary } of this.jobs.values()) jobsByState[summary.state]++;
    const slots = { busy: 0, free: 0, draining: 0 };
    let hostsUp = 0;
    const hostLoad: { host: string; load: number }[] = [];
    for (const h of [...this.hosts.values()].sort((a, b) => a.host.localeCompare(b.host))) {
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
      hostLoad,
      latency: { ...this.latency, counts: [...this.latency.counts] },
    };
  }

  private job(evt: JobEvent): Applied {
    const j = evt.job;
    if (!j || j.jobId !== evt.jobId || !JOB_STATES.has(j.state)) return { used: false };
    const had = this.jobs.get(j.jobId);
    if (had && had.seenAt > evt.at) return { used: false }; // older than what we hold
    this.jobs.set(j.jobId, { summary: j, seenAt: evt.at });
    return { used: true };
  }

  private frame(evt: FrameEvent): Applied {
    switch (evt.event) {
      case 'done':
        this.framesDone++;
        return { used: true };
      case 'failed':
        this.framesFailed++;
        return { used: true };
      case 'retrying':
        this.framesRetried++;
        return { used: true };
      case 'started': {
        const ms = evt.waitMs;
        if (ms === undefined || !Number.isFinite(ms) || ms < 0) return { used: false };
        const s = ms / 1000;
        this.latency.count++;
        this.latency.sum += s;
        this.latency.bounds.forEach((b, i) => {
          if (s <= b) this.latency.counts[i]!++;
        });
        return { used: true, latencyS: s };
      }
      case 'dispatched':
      case 'progress':
        return { used: true }; // nothing counted from them (yet)
      default:
        return { used: false };
    }
  }

  private hostEvent(evt: HostEvent): Applied {
    const name = evt.host;
    const h = this.hosts.get(name) ?? { host: name, up: false, sick: false, slots: new Map<number, SlotState>(), seenAt: evt.at };
    switch (evt.event) {
      case 'up':
        h.up = true;
        h.slots.clear(); // a new instance: its slots come with the next snapshot or slot events
        break;
      case 'down':
        h.up = false;
        h.slots.clear();
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
      default:
        return { used: false };
    }
    h.seenAt = Math.max(h.seenAt, evt.at);
    this.hosts.set(name, h);
    return { used: true };
  }
}
