import type { HostInventory, MatchBody, TaskAssignment, WaitReason } from '../../protocol/index.ts';
import type { Job, JobBook } from './job-book.ts';

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
 * One dispatch round, pure: walks the queue in priority order and leases each job's tasks
 * to the free slots of the hosts the registry says match it. A slot is free when the
 * registry reports it idle and the scheduler holds no lease on it.
 */
export function planDispatch(
  book: JobBook,
  jobs: readonly Job[],
  matchFor: (job: Job) => MatchBody | undefined,
  now: number,
): DispatchPlan {
  const byHost = new Map<string, TaskAssignment[]>();
  const waiting = new Map<Job, WaitReason>();
  const freeSlots = new Map<string, number[]>(); // host → idle, unleased slot indexes not yet used this round
  for (const job of jobs) {
    const match = matchFor(job);
    if (!match) continue;
    let given = 0;
    for (const h of match.hosts) {
      if (book.isBadHost(job, h.host) || book.health.isSick(h.host, now)) continue;
      let free = freeSlots.get(h.host);
      if (!free) {
        free = h.slots.filter((s) => s.state === 'idle' && !book.isLeased(h.host, s.index)).map((s) => s.index);
        freeSlots.set(h.host, free);
      }
      while (free.length > 0 && job.queuedTasks > 0) {
        const a = book.lease(job, h.host, free[0]!, now);
        if (!a) break;
        free.shift();
        given += 1;
        const list = byHost.get(h.host) ?? [];
        list.push(a);
        byHost.set(h.host, list);
      }
      if (job.queuedTasks === 0) break;
    }
    if (given === 0 && job.machine.getSnapshot().context.running === 0) waiting.set(job, waitingReason(match, book.badHosts(job), () => book.busyBreakdown(job), book.health.list(now).map((s) => s.host)));
  }
  return { byHost, waiting };
}

/** Why a job got no slot: in words an artist can act on, and in fields a tool can read. */
export function waitingReason(m: MatchBody, badHosts: readonly string[] = [], busy?: () => NonNullable<WaitReason['busy']>, sickHosts: readonly string[] = []): WaitReason {
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
  const b = busy?.();
  if (!b) return { kind: 'busy', text: 'all matching slots are busy' };
  const parts = [b.moreUrgent > 0 ? `${b.moreUrgent} with more urgent jobs` : '', b.samePriority > 0 ? `${b.samePriority} with jobs of its priority submitted earlier` : '', b.lessUrgent > 0 ? `${b.lessUrgent} with less urgent jobs that started first (their frames finish, then it goes first)` : ''].filter(Boolean);
  return { kind: 'busy', busy: b, text: `all matching slots are busy${parts.length > 0 ? `: ${parts.join(', ')}` : ''}` };
}
