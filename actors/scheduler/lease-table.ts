/** What a lease needs of its job: what it counts against, and its count of leases. */
export interface LeaseHolder {
  project: string;
  /** Leases its tasks hold (running, or in hand); kept by the table. */
  leased: number;
  /** Of those, tasks whose slot has not started them yet (held in hand), and their frames; kept by the table. */
  inHandTasks: number;
  inHandFrames: number;
  spec: { limits?: string[] };
}

/** One lease: which slot holds the task, and how sure the scheduler is that it still does. */
export interface Lease<J> {
  job: J;
  host: string;
  slot: number;
  grantedAt: number;
  /** Lease reports from its host since the grace period that did not list it. */
  unconfirmed: number;
  /** Its slot started the task (a lease report or its result said so); until then it is in hand. */
  started: boolean;
  /** Frames of the task (counted in hand until it starts). */
  frames: number;
}

/**
 * Every lease, by task, with the counts dispatch asks for at each step kept up to date (per slot,
 * per host, per job, per project, per named limit), so nothing on the path of a dispatch walks
 * them all. Pure data.
 */
export class LeaseTable<J extends LeaseHolder, T> {
  /** Each running task's lease: where it is. A slot holds up to two: the task it renders and one in hand. */
  private readonly leases = new Map<T, Lease<J>>();
  /** `host/slot` → the tasks leased to that slot (one or two). */
  private readonly perSlot = new Map<string, T[]>();
  private readonly hostLeases = new Map<string, Set<T>>();
  /** Jobs holding at least one lease. */
  readonly leasedJobs = new Set<J>();
  private readonly projectLeases = new Map<string, number>();
  /** Limit name → leases of jobs that name it, and → host → such leases on that host. */
  private readonly limitLeases = new Map<string, number>();
  private readonly limitHostLeases = new Map<string, Map<string, number>>();

  get size(): number {
    return this.leases.size;
  }

  get(task: T): Lease<J> | undefined {
    return this.leases.get(task);
  }

  add(job: J, task: T, host: string, slot: number, now: number, frames: number, started = false): void {
    this.leases.set(task, { job, host, slot, grantedAt: now, unconfirmed: 0, started: false, frames });
    job.inHandTasks += 1;
    job.inHandFrames += frames;
    if (started) this.start(task);
    const key = `${host}/${slot}`;
    const onSlot = this.perSlot.get(key);
    if (onSlot) onSlot.push(task);
    else this.perSlot.set(key, [task]);
    let tasks = this.hostLeases.get(host);
    if (!tasks) this.hostLeases.set(host, (tasks = new Set()));
    tasks.add(task);
    job.leased += 1;
    this.leasedJobs.add(job);
    bump(this.projectLeases, job.project, 1);
    for (const name of job.spec.limits ?? []) {
      bump(this.limitLeases, name, 1);
      let hosts = this.limitHostLeases.get(name);
      if (!hosts) this.limitHostLeases.set(name, (hosts = new Map()));
      bump(hosts, host, 1);
    }
  }

  drop(task: T): void {
    const l = this.leases.get(task);
    if (!l) return;
    this.leases.delete(task);
    if (!l.started) {
      l.job.inHandTasks -= 1;
      l.job.inHandFrames -= l.frames;
    }
    const key = `${l.host}/${l.slot}`;
    const onSlot = this.perSlot.get(key)?.filter((t) => t !== task);
    if (onSlot && onSlot.length > 0) this.perSlot.set(key, onSlot);
    else this.perSlot.delete(key);
    const tasks = this.hostLeases.get(l.host);
    tasks?.delete(task);
    if (tasks?.size === 0) this.hostLeases.delete(l.host);
    l.job.leased -= 1;
    if (l.job.leased === 0) this.leasedJobs.delete(l.job);
    bump(this.projectLeases, l.job.project, -1);
    for (const name of l.job.spec.limits ?? []) {
      bump(this.limitLeases, name, -1);
      const hosts = this.limitHostLeases.get(name);
      if (hosts) {
        bump(hosts, l.host, -1);
        if (hosts.size === 0) this.limitHostLeases.delete(name);
      }
    }
  }

  /** The slot started the task: it is no longer in hand. False when it has no lease, or had started. */
  start(task: T): boolean {
    const l = this.leases.get(task);
    if (!l || l.started) return false;
    l.started = true;
    l.job.inHandTasks -= 1;
    l.job.inHandFrames -= l.frames;
    return true;
  }

  /** The slot still holds the task in hand after all (a start was inferred too early). False when it has no lease, or had not started. */
  unstart(task: T): boolean {
    const l = this.leases.get(task);
    if (!l || !l.started) return false;
    l.started = false;
    l.job.inHandTasks += 1;
    l.job.inHandFrames += l.frames;
    return true;
  }

  /** The tasks leased to one slot. */
  slotTasks(host: string, slot: number): readonly T[] {
    return this.perSlot.get(`${host}/${slot}`) ?? [];
  }

  /** Tasks leased to a slot: the one it renders and the one it holds in hand. */
  onSlot(host: string, slot: number): number {
    return this.perSlot.get(`${host}/${slot}`)?.length ?? 0;
  }

  /** The tasks leased to a host (a copy: the caller may drop them as it goes). */
  onHost(host: string): T[] {
    return [...(this.hostLeases.get(host) ?? [])];
  }

  /** Hosts that hold at least one lease. */
  hosts(): Set<string> {
    return new Set(this.hostLeases.keys());
  }

  /** Leases of a project's jobs. */
  ofProject(project: string): number {
    return this.projectLeases.get(project) ?? 0;
  }

  /** Projects whose jobs hold leases. */
  projects(): IterableIterator<string> {
    return this.projectLeases.keys();
  }

  /** Whether a host already runs (or holds) a task counted against a limit. */
  hostUses(host: string, name: string): boolean {
    return (this.limitHostLeases.get(name)?.get(host) ?? 0) > 0;
  }

  /** Running (and in-hand) tasks that count against a limit, or the hosts running any of them. */
  limitUse(name: string, per: 'host' | 'task'): number {
    return per === 'host' ? (this.limitHostLeases.get(name)?.size ?? 0) : (this.limitLeases.get(name) ?? 0);
  }
}

/** Adds to a count in a map, deleting it at zero. */
function bump<K>(m: Map<K, number>, key: K, by: number): void {
  const n = (m.get(key) ?? 0) + by;
  if (n > 0) m.set(key, n);
  else m.delete(key);
}
