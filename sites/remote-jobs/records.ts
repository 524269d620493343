import { mkdir, open, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { FarmError, token, type JobSpec } from '../../protocol/index.ts';
import { syncDir } from '../cas/index.ts';
import { writeFileAtomically } from '../write-atomically.ts';

/**
 * What this site knows of a peer's job, kept in `<data>/fed/remote-jobs/<peer>/<their job>.json`
 * so a restart finds it: whether it was taken, the job it became here, and the studio's own spec
 * (its output.dir is where the results go back to).
 */
export interface RemoteJobRecord {
  v: 1;
  peer: string;
  originJob: string;
  /** The job bundle it came in. */
  bundleId: string;
  state: 'accepted' | 'rejected';
  reason?: string;
  /** The job's id here (accepted). */
  jobId?: string;
  /** The spec as the peer sent it (its paths, its output.dir). */
  theirSpec: JobSpec;
  /** Frames whose thumbnails go back (first, last, middle). */
  samples: number[];
  /** The job bundle asked for encrypted results (its manifest's `encryptResults`): every file goes back encrypted to `to`. */
  encryptResults?: { to: string; purge: boolean };
  /** The path the job came along, ending with the peer (protocol/bundles/chain.ts); absent: just the peer. */
  route?: string[];
  /** Accepted though no host here can render it: it is passed on to this peer (chaining). */
  forwardTo?: string;
  at: number;
  /** A re-render: the peer's job whose kept inputs it renders from (rerender.ts). */
  rerenderOf?: string;
  /** The retention sweep removed its tree (and CAS reference) at `at`, `keptMs` after it ended (retention.ts). */
  inputsGone?: { at: number; keptMs: number };
}

export const remoteJobsDir = (dataDir: string) => join(dataDir, 'fed', 'remote-jobs');

/**
 * The records, and which bundles of each job were dropped: one marker file per bundle id in
 * `<their job>.sent/`, made once the bundle is in outgoing/, so a replayed event finds it sent.
 */
export class RemoteJobRecords {
  private readonly dir: string;
  private readonly byJob = new Map<string, RemoteJobRecord>();
  private readonly byOrigin = new Map<string, RemoteJobRecord>();

  private constructor(dataDir: string) {
    this.dir = remoteJobsDir(dataDir);
  }

  /** Loads every record (a damaged one is refused by name: a guess could send a job's results to the wrong place). */
  static async open(dataDir: string): Promise<RemoteJobRecords> {
    const r = new RemoteJobRecords(dataDir);
    await mkdir(r.dir, { recursive: true, mode: 0o700 });
    for (const peer of await readdir(r.dir)) {
      const names = await readdir(join(r.dir, peer)).catch(() => [] as string[]);
      for (const name of names.filter((n) => n.endsWith('.json'))) {
        const path = join(r.dir, peer, name);
        try {
          r.remember(JSON.parse(await readFile(path, 'utf8')) as RemoteJobRecord);
        } catch (cause) {
          throw new FarmError('RB_BAD_ARGUMENT', `${path} is damaged: ${(cause as Error).message}`, { cause });
        }
      }
    }
    return r;
  }

  get(peer: string, originJob: string): RemoteJobRecord | undefined {
    return this.byOrigin.get(`${peer}/${originJob}`);
  }

  ofJob(jobId: string): RemoteJobRecord | undefined {
    return this.byJob.get(jobId);
  }

  /** Every record held (the retention sweep walks them). */
  all(): RemoteJobRecord[] {
    return [...this.byOrigin.values()];
  }

  /** Writes a record (temp file, fsync, rename, folder fsync) and keeps it. */
  async put(rec: RemoteJobRecord): Promise<void> {
    const dir = join(this.dir, token('site', rec.peer));
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const file = join(dir, `${token('job', rec.originJob)}.json`);
    await writeFileAtomically(file, JSON.stringify(rec), 0o600);
    await syncDir(dir);
    this.remember(rec);
  }

  private remember(rec: RemoteJobRecord): void {
    this.byOrigin.set(`${rec.peer}/${rec.originJob}`, rec);
    if (rec.jobId !== undefined) this.byJob.set(rec.jobId, rec);
  }

  private sentDir(rec: Pick<RemoteJobRecord, 'peer' | 'originJob'>): string {
    return join(this.dir, token('site', rec.peer), `${token('job', rec.originJob)}.sent`);
  }

  async wasSent(rec: Pick<RemoteJobRecord, 'peer' | 'originJob'>, bundleId: string): Promise<boolean> {
    return readFile(join(this.sentDir(rec), bundleId)).then(() => true, () => false);
  }

  /** When the bundle was marked sent (its marker's mtime), or undefined when it was not. */
  async sentAt(rec: Pick<RemoteJobRecord, 'peer' | 'originJob'>, bundleId: string): Promise<number | undefined> {
    return stat(join(this.sentDir(rec), bundleId)).then((st) => st.mtimeMs, () => undefined);
  }

  async markSent(rec: Pick<RemoteJobRecord, 'peer' | 'originJob'>, bundleId: string): Promise<void> {
    const dir = this.sentDir(rec);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const fh = await open(join(dir, bundleId), 'w', 0o600);
    await fh.close();
    await syncDir(dir);
  }
}
