import { join } from 'node:path';
import { FarmError, manifestBlobs, type BundleManifest } from '../../protocol/index.ts';
import { diskUse, PeerCas } from '../cas/index.ts';

/** What a peer stores at this site now, and what a bundle would add. */
export interface PeerUse {
  /** Bytes of its content store and its job trees (each inode once). */
  used: number;
  /** Bytes of the bundle's blobs the store does not hold yet. */
  adding: number;
}

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

/** Bytes for a person: `1.5 GiB`, `12 MiB`, `300 bytes`. */
export function humanBytes(n: number): string {
  if (n >= GiB) return `${+(n / GiB).toFixed(2)} GiB`;
  if (n >= MiB) return `${+(n / MiB).toFixed(2)} MiB`;
  if (n >= 1024) return `${+(n / 1024).toFixed(2)} KiB`;
  return `${n} bytes`;
}

/** Refuses a bundle that would take its peer past its quota (pure): RB_QUOTA_EXCEEDED naming use, size and quota. */
export function checkQuota(peer: string, bundleId: string, u: PeerUse, quotaBytes: number): void {
  if (u.adding === 0 || u.used + u.adding <= quotaBytes) return;
  throw new FarmError(
    'RB_QUOTA_EXCEEDED',
    `bundle ${bundleId} would store ${humanBytes(u.adding)} (${u.adding} bytes) for ${peer}, which already uses ${humanBytes(u.used)} (${u.used} bytes) of its quota of ${humanBytes(quotaBytes)} (${quotaBytes} bytes) here: nothing of it was stored ('renderbus site ${peer} --quota SIZE' raises it)`,
  );
}

/** The folders a peer's stored bytes live in: its content store and its job trees (sites/remote-jobs/path-map.ts). */
export const peerAreas = (dataDir: string, peer: string): string[] => [join(dataDir, 'fed', 'cas', peer), join(dataDir, 'fed', 'jobs', peer)];

/** What `peer` stores here now and what the manifest's blobs would add (those its store lacks). */
export async function peerUse(dataDir: string, peer: string, m?: BundleManifest): Promise<PeerUse> {
  const used = await diskUse(peerAreas(dataDir, peer));
  if (!m) return { used, adding: 0 };
  const sizes = manifestBlobs(m);
  // a file sent in chunks is stored whole as well (sites/remote-jobs/peer-job.ts)
  for (const f of m.files) if (f.chunks) sizes.set(f.sha256, f.size);
  if (sizes.size === 0) return { used, adding: 0 };
  const cas = await PeerCas.open(dataDir, peer);
  let adding = 0;
  for (const h of await cas.has([...sizes.keys()])) adding += sizes.get(h) ?? 0;
  return { used, adding };
}
