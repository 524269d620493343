import { STORAGE_RETRY_MS } from './host-health.ts';
import type { HostInventory, MatchBody, TaskAssignment, WaitReason } from '../../protocol/index.ts';
import type { Job, JobBook } from './job-book.ts';
import { keptAwayReason } from './wait-reasons.ts';

/** What the scheduler remembers of a host from the registry's answers. */
export interface KnownHost {
  serverId: string;
  inventory: HostInventory;
}

export interface DispatchPlan {
  /** Assignments to send, by host. */
  byHost: Map<string, TaskAssignment[]>;
  /** Jobs that received no slot this round and run nothing, with the reason. */
  waiting: Map<Job, WaitReason>;
}

/**
 * One dispatch round, pure: leases queued tasks to the free slots of the hosts the registry says
 * match them. A slot is free when the registry reports it idle and the scheduler holds no lease
 * on it. Without fair share, jobs are served in queue order, each taking every free slot it
 * matches. With fair share on, slots go one at a time to the project furthest under its share.
 */
export function planDispatch(
  book: JobBook,
  jobs: readonly Job[],
  matchFor: (job: Job) => MatchBody | undefined,
  now: number,
): DispatchPlan {
  const round = new Round(book, now);
  const candidates: Candidate[] = [];
  for (const job of jobs) {
    const match = matchFor(job);
    if (match) candidates.push({ job, match, at: 0, given: 0 });
  }
  if (!book.shares.enabled) {
    for (const c of candidates) while (round.give(c));
  } else {
    const byProject = new Map<string, Candidate[]>();
    for (const c of candidates) {
      const list = byProject.get(c.job.project);
      if (list) list.push(c);
      else byProject.set(c.job.project, [c]);
    }
    for (;;) {
      // the project with work that holds the fewest slots per unit of weight
      let best: Candidate[] | undefined;
      let least = Infinity;
      for (const [project, list] of byProject) {
        if (list.length === 0) continue;
        const u = book.shares.usage(project);
        if (u < least) {
          least = u;
          best = list;
        }
      }
      if (!best) break;
      if (!round.give(best[0]!)) best.shift();
    }
  }
  const waiting = new Map<Job, WaitReason>();
  for (const c of candidates) {
    if (c.given > 0 || c.job.counts.running > 0) continue;
    waiting.set(c.job, whyNoSlot(book, c, now));
  }
  return { byHost: round.byHost, waiting };
}

/** A job in a dispatch round: the hosts that match it, and how far through them it got. */
interface Candidate {
  job: Job;
  match: MatchBody;
  /** Index in match.hosts of the next host to try. */
  at: number;
  given: number;
}

/** The free slots of one dispatch round, and the assignments made from them. */
class Round {
  readonly byHost = new Map<string, TaskAssignment[]>();
  /** host → idle, unleased slot indexes not yet used this round */
  private free = new Map<string, number[]>();

  constructor(
    private readonly book: JobBook,
    private readonly now: number,
  ) {}

  /** Leases one more task of the candidate's job to a free slot it matches; false when it can take no more. */
  give(c: Candidate): boolean {
    const { job, match } = c;
    while (c.at < match.hosts.length && job.queuedTasks > 0) {
      const h = match.hosts[c.at]!;
      const free = this.freeOn(h);
      if (free.length === 0 || this.book.keptAway(job, h.host) || this.book.health.isSick(h.host, this.now)) {
        c.at += 1;
        continue;
      }
      const a = this.book.lease(job, h.host, free[0]!, this.now, h.inventory.ramMb);
      if (!a) {
        // a limit, a frame dependency or memory keeps its next task off this host
        c.at += 1;
        continue;
      }
      free.shift();
      c.given += 1;
      const list = this.byHost.get(h.host);
      if (list) list.push(a);
      else this.byHost.set(h.host, [a]);
      return true;
    }
    return false;
  }

  private freeOn(h: MatchBody['hosts'][number]): number[] {
    let free = this.free.get(h.host);
    if (!free) {
      free = h.slots.filter((s) => s.state === 'idle' && !this.book.isLeased(h.host, s.index)).map((s) => s.index);
      this.free.set(h.host, free);
    }
    return free;
  }
}

/** Why a job got no slot this round. */
function whyNoSlot(book: JobBook, c: Candidate, now: number): WaitReason {
  const { job, match } = c;
  if (job.storageFullUntil !== undefined && now < job.storageFullUntil) {
    // kind no-match, as for memory: no host can take it now, whatever the hosts
    const why = [...job.tasks.touchedTasks()].find((t) => t.error?.startsWith('RB_OUTPUT_DISK_FULL'))?.error ?? 'RB_OUTPUT_DISK_FULL';
    return { kind: 'no-match', closest: [], text: `its output disk is full; its frames are tried again every ${STORAGE_RETRY_MS / 1000} s (${why})` };
  }
  if (job.memoryRaised && match.hosts.length > 0) {
    const biggest = Math.max(...match.hosts.map((h) => h.inventory.ramMb));
    const need = book.memoryBlocked(job, biggest);
    if (need !== undefined) {
      return { kind: 'no-match', closest: [], text: `its frames that ran out of memory now need ${need} MB; the free hosts that match have at most ${biggest} MB` };
    }
  }
  const away = keptAwayReason(book, job, match.hosts.map((h) => h.host));
  if (away) return away;
  return waitingReason(match, book.badHosts(job), () => book.busyBreakdown(job), book.health.list(now).map((s) => s.host), () => book.shareReason(job));
}

/** Why a job got no slot: in words an artist can act on, and in fields a tool can read. */
export function waitingReason(
  m: MatchBody,
  badHosts: readonly string[] = [],
  busy?: () => NonNullable<WaitReason['busy']>,
  sickHosts: readonly string[] = [],
  share?: () => WaitReason | undefined,
): WaitReason {
  if (m.totalHosts === 0) return { kind: 'no-hosts', text: 'no render hosts are registered' };
  const sick = new Set(sickHosts);
  const kept = m.hosts.filter((h) => !badHosts.includes(h.host));
  if (kept.length > 0 && kept.every((h) => sick.has(h.host))) {
    const hosts = kept.map((h) => h.host);
    return { kind: 'sick-hosts', hosts, text: `the free hosts that match are sick (they failed frames of several jobs) and get no work for a while: ${hosts.slice(0, 3).join(', ')} (renderbus sick <host> --clear once fixed)` };
  }
  const bad = new Set(badHosts);
  if (m.hosts.length > 0 && m.hosts.every((h) => bad.has(h.host))) {
    const hosts = [...bad];
    return { kind: 'bad-hosts', hosts, text: `the free hosts that match failed too many of its frames and are kept away from it (${hosts.slice(0, 3).join(', ')}); it waits for other hosts, or fix them and retry the job` };
  }
  if (m.hosts.length === 0 && m.closest.length > 0) {
    const near = m.closest.slice(0, 2).map((c) => `${c.host} ${c.missing.join(', ')}`).join('; ');
    return { kind: 'no-match', closest: m.closest, text: `no host matches the requirements (${near})` };
  }
  const overShare = share?.();
  if (overShare) return overShare;
  const b = busy?.();
  if (!b) return { kind: 'busy', text: 'all matching slots are busy' };
  const parts = [b.moreUrgent > 0 ? `${b.moreUrgent} with more urgent jobs` : '', b.samePriority > 0 ? `${b.samePriority} with jobs of its priority submitted earlier` : '', b.lessUrgent > 0 ? `${b.lessUrgent} with less urgent jobs that started first (their frames finish, then it goes first)` : ''].filter(Boolean);
  return { kind: 'busy', busy: b, text: `all matching slots are busy${parts.length > 0 ? `: ${parts.join(', ')}` : ''}` };
}
