import { createReadStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { BundleKind, FarmError, RemoteJobState, type BundleManifest } from '../../protocol/index.ts';
import { readBundle, type BundleLimits } from '../bundles/index.ts';
import { verifySiteSignature } from '../links/site-key.ts';

/** A bundle that arrived from a peer, read and verified (every blob matches its hash). */
export interface ArrivedBundle {
  /** The peer whose incoming/ folder it came through. */
  peer: string;
  /** The bundle file, still in incoming/<peer>/ (the watcher moves it after the handler). */
  file: string;
  manifest: BundleManifest;
  /** sha256 → a verified file holding that blob; removed after the handler returns. */
  blobs: Map<string, string>;
  /** Whether manifest.sig is present and verified with the peer's key. */
  signed: boolean;
}

/**
 * The two halves of a site's intake. A bundle about one of our own jobs (`jobRef.site` is us) is
 * news of work we sent out: status, results, the bill. A bundle about the sender's job is work for
 * us: the job itself, or the sender's cancel of it.
 */
export interface IntakeHandlers {
  /** Work for us: a `job` bundle, or a `status` bundle whose state is `cancel`. */
  peerJob(b: ArrivedBundle): Promise<void>;
  /** News of a job we sent to the peer: `status`, `partial-result`, `result`, `bill`. */
  ownJob(b: ArrivedBundle): Promise<void>;
}

export interface RouterOptions {
  site: string;
  dataDir: string;
  handlers: IntakeHandlers;
  /** The peer's public key (base64url SPKI, from its record): manifest.sig is checked with it. */
  peerKey?(peer: string): string | undefined;
  /** Refuse a bundle without a valid signature (peers may be allowed unsigned bundles dropped by hand). */
  requireSignature?(peer: string): boolean;
  limits?: Partial<BundleLimits>;
}

const bad = (msg: string) => new FarmError('RB_BAD_BUNDLE', msg);

/**
 * Which half a bundle goes to, or why it goes to none (pure). The sender and the addressee must be
 * the folder's peer and us; a job is always the sender's own, so is a cancel; news is always of
 * ours. Anything else (a vendor sending a "job" of ours back, a result for a third site's job) is
 * refused with the rule it broke.
 */
export function routeOf(site: string, peer: string, m: BundleManifest): 'peerJob' | 'ownJob' {
  if (m.from !== peer) throw bad(`bundle ${m.bundleId} says it is from '${m.from}', but came through ${peer}'s folder`);
  if (m.to !== site) throw bad(`bundle ${m.bundleId} is addressed to '${m.to}', not to this site (${site})`);
  const ref = m.jobRef;
  if (!ref) throw bad(`bundle ${m.bundleId} (${m.kind}) names no job (jobRef)`);
  const isCancel = m.kind === BundleKind.Status && m.status?.state === RemoteJobState.Cancel;
  if (m.kind === BundleKind.Job || isCancel) {
    if (ref.site !== peer) throw bad(`bundle ${m.bundleId}: a ${isCancel ? 'cancel' : 'job'} from ${peer} must be about one of ${peer}'s jobs, not ${ref.site}'s job ${ref.job}`);
    if (m.kind === BundleKind.Job && !m.job) throw bad(`bundle ${m.bundleId} is a job bundle without a job description`);
    return 'peerJob';
  }
  if (ref.site !== site) throw bad(`bundle ${m.bundleId} (${m.kind}) is about ${ref.site}'s job ${ref.job}, which this site never sent to ${peer}`);
  if (m.kind === BundleKind.Status && !m.status) throw bad(`bundle ${m.bundleId} is a status bundle without a status`);
  return 'ownJob';
}

/**
 * Reads one bundle from incoming/<peer>/ (every blob verified, signature checked), routes it to a
 * half, and removes the reader's temp files afterwards. A handler's error propagates (the hot
 * folder watcher retries or fails the bundle with its reason).
 */
export async function routeBundle(o: RouterOptions, peer: string, file: string): Promise<void> {
  const tempDir = join(o.dataDir, 'fed', 'tmp');
  await mkdir(tempDir, { recursive: true, mode: 0o700 });
  const read = await readBundle({ source: createReadStream(file), tempDir, dataDir: o.dataDir, ...(o.limits ? { limits: o.limits } : {}) });
  try {
    const key = o.peerKey?.(peer);
    let signed = false;
    // a signature we hold no key for proves nothing: the bundle counts as unsigned (the peer's key
    // arrives with its first hello); a signature that does not match the key we hold is a forgery
    if (read.signature && key) {
      signed = verifySiteSignature(key, read.manifestBytes, read.signature);
      if (!signed) throw bad(`bundle ${read.manifest.bundleId}: manifest.sig does not match ${peer}'s key`);
    }
    if (!signed && o.requireSignature?.(peer)) {
      throw bad(`bundle ${read.manifest.bundleId} is not signed${read.signature ? ` with a key this site holds for ${peer}` : ''}, and ${peer}'s bundles must be`);
    }
    const route = routeOf(o.site, peer, read.manifest);
    await o.handlers[route]({ peer, file, manifest: read.manifest, blobs: read.blobs, signed });
  } finally {
    await rm(read.dir, { recursive: true, force: true });
  }
}
