/** Report periods a host may stay silent before its leases expire (as the registry's missed heartbeats). */
export const LEASE_TTL_PERIODS = 3;
/** Assumed report period of a host that has not reported yet (the render server's default heartbeat). */
export const DEFAULT_REPORT_EVERY_MS = 2_000;

/**
 * When each leaseholding host last reported its leases, and which have gone silent: pure data.
 * While the scheduler itself is cut off from the bus nobody's reports can arrive, so the clocks
 * stop (`pause`) and restart from the moment it is back (`resume`): hosts that were fine all
 * along do not lose their frames to the scheduler's own outage.
 */
export class HostLiveness {
  private readonly seen = new Map<string, { at: number; everyMs: number; serverId?: string }>();
  private paused = false;

  /** A report arrived; returns true when it comes from a new instance of the host (it restarted). */
  report(host: string, serverId: string, everyMs: number, now: number): boolean {
    const was = this.seen.get(host);
    this.seen.set(host, { at: now, everyMs, serverId });
    return was?.serverId !== undefined && was.serverId !== serverId;
  }

  /** Of these leaseholding hosts, the ones silent for longer than their lease lasts. */
  overdue(hosts: Iterable<string>, now: number): string[] {
    if (this.paused) return [];
    const out: string[] = [];
    for (const host of hosts) {
      let s = this.seen.get(host);
      if (!s) {
        // leased before its first report: its clock starts now
        s = { at: now, everyMs: DEFAULT_REPORT_EVERY_MS };
        this.seen.set(host, s);
      }
      if (now - s.at > LEASE_TTL_PERIODS * s.everyMs) out.push(host);
    }
    return out;
  }

  forget(host: string): void {
    this.seen.delete(host);
  }

  pause(): void {
    this.paused = true;
  }

  /** Back on the bus: every host gets a full lease period from now to report again. */
  resume(now: number): void {
    this.paused = false;
    for (const s of this.seen.values()) s.at = now;
  }
}
