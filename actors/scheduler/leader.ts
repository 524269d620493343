import { listen } from '../bus/index.ts';
import { runForLeadership } from '../leadership/index.ts';
import { codecs, lastToken, subjects } from '../../protocol/index.ts';
import { ADOPT_WINDOW_MS } from './machine.ts';
import { startSchedulerTerm, type SchedulerHandle, type SchedulerOptions } from './runtime.ts';
import type { LeadershipTiming } from '../leadership/index.ts';

export interface SchedulerLeaderOptions extends SchedulerOptions {
  /** The leadership lease's clock (tests shorten it); default DEFAULT_LEADERSHIP_TIMING. */
  leadership?: Partial<LeadershipTiming>;
}

export interface SchedulerLeaderHandle extends SchedulerHandle {
  /** Whether this process leads now (a standby does not). */
  leading(): boolean;
}

/**
 * A scheduler that may stand by: it runs for the site's scheduler lease and runs a term
 * (runtime.ts: replay the journal, adopt, serve) while it holds it. Several may run; one leads,
 * and when its lease lapses (its process died, or it lost the bus) a standby takes over: the
 * journal is the whole state, so a takeover is the recovery a restart makes. Meanwhile every
 * candidate listens to the render servers' lease reports, so a takeover knows which servers are
 * alive and stops adopting once each has reported (docs/cluster.md).
 */
export async function startScheduler(o: SchedulerLeaderOptions): Promise<SchedulerLeaderHandle> {
  const { nc, site } = o;
  const log = o.log.child({ actor: 'scheduler', site });
  /** Render servers heard from, standing by or leading: when, and how often each reports. */
  const heard = new Map<string, { at: number; everyMs: number }>();
  const listeningSince = Date.now();
  const reports = listen(nc, subjects.allSchedLeases(site), codecs.leaseReport, log, (rep, subject) => {
    if (lastToken(subject) === rep.host) heard.set(rep.host, { at: Date.now(), everyMs: rep.everyMs });
  });
  /** The servers alive now, once this process has listened for a whole adopt window (before that it cannot know). */
  const alive = (): ReadonlySet<string> | undefined => {
    const now = Date.now();
    if (now - listeningSince < ADOPT_WINDOW_MS) return undefined;
    const hosts = new Set<string>();
    for (const [host, h] of heard) {
      if (now - h.at <= 2 * h.everyMs + 500) hosts.add(host);
      else heard.delete(host);
    }
    return hosts;
  };
  const leadership = await runForLeadership({
    nc, site, role: 'scheduler', log, replicas: o.replicas, holdAtFence: true, ...(o.leadership ? { timing: o.leadership } : {}),
    lead: (lease) => {
      const adoptHosts = alive();
      return startSchedulerTerm({ ...o, leaseValid: lease.valid, ...(adoptHosts ? { adoptHosts } : {}) });
    },
  });
  try {
    // a term waits up to 30 s to serve; this waits for the lease's store, the same way
    const role = await leadership.settledWithin(30_000);
    if (role === 'standby') log.info('standing by: another scheduler leads this site');
    if (role === 'unsettled') log.warn('the scheduler cannot reach its leaders bucket yet; it keeps trying');
  } catch (err) {
    reports.unsubscribe();
    await leadership.stop();
    throw err;
  }
  return {
    leading: () => leadership.leading(),
    async stop() {
      await leadership.stop();
      reports.unsubscribe();
    },
  };
}
