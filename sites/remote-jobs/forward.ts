import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FarmError, forwardRoute, token, type BundleBill, type JobDetail, type JobSpec, type JobSummary } from '../../protocol/index.ts';
import type { BundleSource } from '../bundles/index.ts';
import { remoteJobPaths } from './path-map.ts';
import type { RemoteJobRecord, RemoteJobRecords } from './records.ts';

/*
 * Chaining at the site in the middle (docs/federation.md, "Chaining"): a peer's job that no host
 * here can render, whose owner consented, is accepted and our scheduler sends it on by the site's
 * policy. This module is where the owner's job and ours meet: the bundle we pass on is the owner's
 * description and files (from the tree the intake made), the news coming back lands in our job's
 * folder, and our bill to the owner carries the next site's bill as it came.
 */

/** A peer's job as this site passes it on: the owner's description, its files from our tree, its path. */
export interface ForwardedJob {
  spec: JobSpec;
  files: BundleSource[];
  route: string[];
}

export interface Forwarder {
  /** For the packer: the bundle to write for a job of ours that is a peer's job passed on, or undefined for our own jobs. */
  jobFor(job: JobDetail): Promise<ForwardedJob | undefined>;
  /** For our ownJob half: the output folder the next site was given (the owner's), for a job passed on. */
  outputDirFor(job: JobDetail): string | undefined;
}

export function forwarder(o: { site: string; dataDir: string; records: RemoteJobRecords }): Forwarder {
  const recordOf = (job: Pick<JobSummary, 'jobId' | 'origin'>): RemoteJobRecord | undefined => {
    const rec = job.origin ? o.records.get(job.origin.site, job.origin.job) : undefined;
    return rec?.jobId === job.jobId ? rec : undefined;
  };
  return {
    async jobFor(job) {
      const rec = recordOf(job);
      if (!rec) return undefined;
      const paths = remoteJobPaths(o.dataDir, rec.peer, rec.originJob);
      // every file the owner sent, at its original path, from the tree the intake made of it
      const files = (await treeFiles(paths.root)).map((rel) => ({ path: `/${rel}`, from: join(paths.root, rel) }));
      // the owner's own description: its paths and output folder, its consent; nothing of ours (the tree, the sandbox root, peer:<owner>)
      return { spec: rec.theirSpec, files, route: forwardRoute(rec.route ?? [rec.peer], o.site) };
    },
    outputDirFor(job) {
      return recordOf(job)?.theirSpec.output?.dir;
    },
  };
}

/** The regular files under `root`, as paths relative to it (the intake's tree holds only files and folders). */
async function treeFiles(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name).slice(root.length + 1)).sort();
}

/** The bill of the site a job was passed on to, as this site's ownJob half kept it (sites/outsource/own-job.ts). */
export interface KeptBill {
  site: string;
  manifest: Uint8Array;
  signature?: Uint8Array;
  bill: BundleBill;
}

/**
 * The bills `peer` sent for our job `jobId`, kept under `<data>/fed/bills/<peer>/<jobId>.<bundleId>.json`
 * with the manifest's bytes and signature as they came (`raw`); a bill kept without them (a peer
 * allowed unsigned bundles, an older kept file) cannot be forwarded and is skipped.
 */
export async function keptBills(dataDir: string, peer: string, jobId: string): Promise<KeptBill[]> {
  const dir = join(dataDir, 'fed', 'bills', token('site', peer));
  const names = await readdir(dir).catch(() => [] as string[]);
  const out: KeptBill[] = [];
  for (const name of names.filter((n) => n.startsWith(`${jobId}.`) && n.endsWith('.json')).sort()) {
    let kept: { raw?: { manifest: string; signature?: string }; bill: BundleBill };
    try {
      kept = JSON.parse(await readFile(join(dir, name), 'utf8')) as typeof kept;
    } catch (cause) {
      throw new FarmError('RB_BAD_ARGUMENT', `${join(dir, name)} is damaged: ${(cause as Error).message}`, { cause });
    }
    if (!kept.raw) continue;
    out.push({ site: peer, manifest: Buffer.from(kept.raw.manifest, 'base64'), ...(kept.raw.signature ? { signature: Buffer.from(kept.raw.signature, 'base64') } : {}), bill: kept.bill });
  }
  return out;
}

/**
 * Our bill to the owner of a job we passed on (pure): our own lines (frames rendered here, usually
 * none), our margin (the rate card's `forwardMinor`) added to our amount, and the next site's
 * bills as they came. The owner adds them up; currencies may differ, so we do not.
 */
export function chainedBill(own: BundleBill, marginMinor: number, via: readonly KeptBill[]): BundleBill {
  return {
    ...own,
    totals: { ...own.totals, amountMinor: own.totals.amountMinor + marginMinor },
    marginMinor,
    via: via.map((v) => ({ site: v.site, manifest: v.manifest, ...(v.signature ? { signature: v.signature } : {}) })),
  };
}

/** The task logs the site we passed a job on to sent back, as our ownJob half wrote them (`<out>/.rb-logs/remote-<peer>/`). */
export async function forwardedLogs(out: string, peer: string): Promise<string[]> {
  const dir = join(out, '.rb-logs', `remote-${token('site', peer)}`);
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile() && !e.name.endsWith('.part')).map((e) => join(dir, e.name)).sort();
}

/** The route of our news about a job we passed on: us, then where it went (`[v1, v2]`). */
export function newsRoute(site: string, job: Pick<JobSummary, 'outsourced'>): string[] | undefined {
  const out = job.outsourced;
  return out ? [site, out.site, ...(out.via ?? [])] : undefined;
}
