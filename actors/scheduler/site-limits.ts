import type { LimitCount, LimitUse } from '../../protocol/index.ts';
import type { LeaseHolder, LeaseTable } from './lease-table.ts';

/** What keeps one more task off a host: a limit at its maximum, or one not set on this farm (`max` undefined). */
export interface LimitBlock {
  name: string;
  inUse: number;
  max?: number;
}

/**
 * The site's named limits (licences), pure data: a job's tasks count against those it names in
 * `limits`, per task or per host. What is in use is counted by the lease table.
 */
export class SiteLimits {
  private readonly byName = new Map<string, { max: number; per: LimitCount }>();

  constructor(private readonly leases: Pick<LeaseTable<LeaseHolder, unknown>, 'hostUses' | 'limitUse'>) {}

  has(name: string): boolean {
    return this.byName.has(name);
  }

  /** How the limit counts (per task or per host), when it is set. */
  per(name: string): LimitCount | undefined {
    return this.byName.get(name)?.per;
  }

  /** Sets a limit, or removes it (`max` undefined). */
  set(name: string, max: number | undefined, per: LimitCount = 'task'): void {
    if (max === undefined) this.byName.delete(name);
    else this.byName.set(name, { max, per });
  }

  /** Every limit with how much of it is in use. */
  uses(): LimitUse[] {
    return [...this.byName].map(([name, l]) => ({ name, max: l.max, per: l.per, inUse: this.leases.limitUse(name, l.per) })).sort((a, b) => a.name.localeCompare(b.name));
  }

  /**
   * The first of `names` that keeps one more task off a host (any host when none is named): one
   * at its maximum, or one not set on this farm (nothing may use an unknown licence). A per-host
   * limit already counted for that host costs nothing more there.
   */
  blocking(names: readonly string[], host?: string): LimitBlock | undefined {
    for (const name of names) {
      const l = this.byName.get(name);
      if (!l) return { name, inUse: 0 };
      if (l.per === 'host' && host !== undefined && this.leases.hostUses(host, name)) continue;
      const inUse = this.leases.limitUse(name, l.per);
      if (inUse >= l.max) return { name, inUse, max: l.max };
    }
    return undefined;
  }
}
