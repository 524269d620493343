import { createHash } from 'node:crypto';
import { lstat, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { BundleManifest } from '../../protocol/index.ts';
import { writeBundle, type BundleHead, type BundleSource } from '../bundles/index.ts';
import { ensureHotFolders } from '../hotfolders/index.ts';
import type { SiteKey } from '../links/site-key.ts';
import type { RemoteJobRecord, RemoteJobRecords } from './records.ts';
import { sealSources } from './seal.ts';

/**
 * A bundle's id, the same every time for the same news of the same job, so a replayed event or
 * a restart writes no second bundle: `<our site>.<their job>.<what>` (what: `accepted`,
 * `started`, `t<task>-a<attempt>`, `sample-f<frame>`, `result`, `bill`, …). An id too long for
 * the manifest's 128 characters becomes `r-<sha256 of it>`, still deterministic.
 */
export function bundleIdFor(site: string, originJob: string, what: string): string {
  const id = `${site}.${originJob}.${what}`;
  return id.length <= 128 ? id : `r-${createHash('sha256').update(id).digest('hex')}`;
}

export interface OutboxOptions {
  site: string;
  dataDir: string;
  records: RemoteJobRecords;
  key: () => Promise<SiteKey>;
}

export type OutgoingBundle = Pick<BundleHead, 'kind'> & Partial<Pick<BundleManifest, 'status' | 'outputs' | 'logs' | 'bill' | 'job' | 'route'>> & {
  what: string;
  files?: readonly BundleSource[];
};

/**
 * Drops one bundle about a peer's job into `outgoing/<peer>/`, at most once per id: a bundle
 * recorded as sent, or whose file is still in outgoing/ or already in processed/ or failed/
 * (a crash between the drop and the record), is not written again. When the job asked for
 * encrypted results, its files go in encrypted to the studio's key (seal.ts).
 */
export async function sendOnce(o: OutboxOptions, rec: Pick<RemoteJobRecord, 'peer' | 'originJob'> & Partial<Pick<RemoteJobRecord, 'encryptResults'>>, b: OutgoingBundle): Promise<'sent' | 'already'> {
  const bundleId = bundleIdFor(o.site, rec.originJob, b.what);
  if (await o.records.wasSent(rec, bundleId)) return 'already';
  const dirs = await ensureHotFolders(o.dataDir, rec.peer);
  const name = `${bundleId}.rbb`;
  for (const dir of [dirs.outgoing, dirs.processed, dirs.failed]) {
    if (await lstat(join(dir, name)).then(() => true, () => false)) {
      await o.records.markSent(rec, bundleId);
      return 'already';
    }
  }
  const head: BundleHead = {
    kind: b.kind,
    bundleId,
    from: o.site,
    to: rec.peer,
    route: b.route ?? [], // a job passed on: [us, the peer we passed it to, …] (protocol/bundles/chain.ts)
    jobRef: { site: rec.peer, job: rec.originJob },
    ...(b.status ? { status: b.status } : {}),
    ...(b.job ? { job: b.job } : {}),
    ...(b.outputs ? { outputs: b.outputs } : {}),
    ...(b.logs ? { logs: b.logs } : {}),
    ...(b.bill ? { bill: b.bill } : {}),
  };
  // a .part left by a crash mid-write is ours (same id): writeBundle refuses to overwrite it
  await rm(join(dirs.outgoing, `${name}.part`), { force: true });
  const sealed = rec.encryptResults && b.files?.length ? await sealSources(o.dataDir, rec.encryptResults.to, b.files) : null;
  try {
    await writeBundle({ head, files: sealed?.files ?? b.files ?? [], out: join(dirs.outgoing, name), dataDir: o.dataDir, sign: await o.key() }); // every bundle signed: the peer's intake requires it
  } finally {
    await sealed?.cleanup();
  }
  await o.records.markSent(rec, bundleId);
  return 'sent';
}
