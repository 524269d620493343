import type { ShareUse } from '../../protocol/index.ts';
import type { LeaseHolder, LeaseTable } from './lease-table.ts';

/**
 * Fair share, pure data: projects' weights, and how many slots each holds per unit of weight.
 * Off while no weight is set; a project not named weighs 1. The slots a project holds are
 * counted by the lease table, so there is nothing here to keep in step with dispatch.
 */
export class FairShare {
  private readonly weights = new Map<string, number>();

  constructor(private readonly leases: Pick<LeaseTable<LeaseHolder, unknown>, 'ofProject' | 'projects'>) {}

  /** Whether any weight is set (fair share is on). */
  get enabled(): boolean {
    return this.weights.size > 0;
  }

  has(project: string): boolean {
    return this.weights.has(project);
  }

  /** A project's weight (1 unless set). */
  weight(project: string): number {
    return this.weights.get(project) ?? 1;
  }

  /** Slots a project holds per unit of its weight; the lowest goes first. */
  usage(project: string): number {
    return this.leases.ofProject(project) / this.weight(project);
  }

  /** Sets a project's weight, or removes it (`weight` undefined). */
  set(project: string, weight: number | undefined): void {
    if (weight === undefined) this.weights.delete(project);
    else this.weights.set(project, weight);
  }

  /** Every project that has a weight set or work on the farm, with what fair share gives it; `queued` is tasks queued by project. */
  uses(queued: ReadonlyMap<string, number>): ShareUse[] {
    const names = new Set([...this.weights.keys(), ...queued.keys(), ...this.leases.projects()]);
    const busy = (p: string) => (queued.get(p) ?? 0) + this.leases.ofProject(p) > 0;
    let total = 0;
    for (const p of names) if (busy(p)) total += this.weight(p);
    return [...names].sort().map((project) => ({
      project,
      weight: this.weight(project),
      set: this.weights.has(project),
      share: busy(project) ? this.weight(project) / total : 0,
      running: this.leases.ofProject(project),
      queued: queued.get(project) ?? 0,
    }));
  }
}
