import { createReadStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { BUNDLE_ENTRY, BundleKind, FarmError, RemoteJobState, type BundleManifest } from '../../protocol/index.ts';
import { readBundle, type BundleLimits } from '../bundles/index.ts';
import { verifySiteSignature } from '../links/site-key.ts';
import { checkQuota, peerUse } from './quota.ts';

/** A bundle that arrived from a peer, read and verified (every blob matches its hash). */
export interface ArrivedBundle {
  /** The peer whose incoming/ folder it came through. */
  peer: string;
  /** The bundle file, still in incoming/<peer>/ (the watcher moves it after the handler). */
  file: string;
  manifest: BundleManifest;
  /** sha256 → a verified file holding that blob; removed after the handler returns. */
  blobs: Map<string, string>;
  /** Whether manifest.sig verified with the peer's key (false only for a peer allowed unsigned bundles). */
  signed: boolean;
  /** The manifest's exact bytes and its signature, as they came (a chained job's bill is forwarded so). */
  manifestBytes?: Uint8Array;
  signature?: Uint8Array;
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
  /**
   * Told of a signed job bundle refused for the peer's quota (RB_QUOTA_EXCEEDED) before it goes to
   * failed/, so the sender can be answered; no blob of it was read (`blobs` is empty).
   */
  refused?(b: ArrivedBundle, err: FarmError): Promise<void>;
}

export interface RouterOptions {
  site: string;
  dataDir: string;
  handlers: IntakeHandlers;
  /**
   * The peer's site key as this site holds it (base64url SPKI: from the invitation, or recorded
   * from the link's first hello); undefined while it is not known. Every bundle's manifest.sig is
   * checked with it (checkSignature).
   */
  peerKey(peer: string): string | undefined;
  /** Take this peer's bundles without a signature (`site invite|join --allow-unsigned`); a signature present must still verify. */
  allowUnsigned?(peer: string): boolean;
  /** Keys of other sites this site knows (its own, its other peers'), to name the signer of a bundle signed by the wrong site. */
  knownKeys?(): Iterable<readonly [site: string, key: string]>;
  limits?: Partial<BundleLimits>;
  /**
   * Bytes `peer` may store here (its content store and job trees: quota.ts), or undefined for no
   * limit. Asked for each job bundle, which is refused (RB_QUOTA_EXCEEDED) before any blob is written.
   */
  quotaBytes?(peer: string): number | undefined;
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
 * Whether a bundle from `peer` proves it was issued by `peer` (docs/federation.md, "Signatures and
 * quarantine at the intake"): its manifest.sig must verify over the exact manifest bytes with the
 * peer's key. Resolves to whether it is signed; throws the rule it breaks: no signature
 * (RB_BUNDLE_UNSIGNED), another known site's signature (RB_WRONG_SIGNER), a signature that verifies
 * with no key we hold, i.e. a manifest changed after signing or a stranger's key (RB_BAD_SIGNATURE),
 * or no key of the peer yet (RB_PEER_KEY_UNKNOWN, retryable: the intake holds such a peer's
 * bundles, so this is only the race of a key being recorded). A peer allowed unsigned bundles
 * passes without a signature, or with one no key of it checks; never with a bad one.
 */
export function checkSignature(o: Pick<RouterOptions, 'peerKey' | 'allowUnsigned' | 'knownKeys'>, peer: string, b: { manifest: BundleManifest; manifestBytes: Uint8Array; signature?: Uint8Array }): boolean {
  const id = b.manifest.bundleId;
  const allowed = o.allowUnsigned?.(peer) === true;
  const key = o.peerKey(peer);
  if (!b.signature) {
    if (allowed) return false;
    throw new FarmError('RB_BUNDLE_UNSIGNED', `bundle ${id} carries no signature (${BUNDLE_ENTRY.signature}): ${peer}'s bundles must be signed with ${peer}'s site key`);
  }
  if (!key) {
    if (allowed) return false;
    throw new FarmError('RB_PEER_KEY_UNKNOWN', `bundle ${id}: ${peer}'s site key is not known yet (it comes with the link's first hello), so its signature cannot be checked`, { retryable: true });
  }
  if (verifySiteSignature(key, b.manifestBytes, b.signature)) return true;
  for (const [site, other] of o.knownKeys?.() ?? []) {
    if (other !== key && verifySiteSignature(other, b.manifestBytes, b.signature)) {
      throw new FarmError('RB_WRONG_SIGNER', `bundle ${id} came through ${peer}'s folder but is signed by ${site}'s site key, not ${peer}'s`);
    }
  }
  throw new FarmError('RB_BAD_SIGNATURE', `bundle ${id}: ${BUNDLE_ENTRY.signature} does not verify with ${peer}'s site key: the manifest was changed after it was signed, or a key this site does not know signed it`);
}

/**
 * Reads one bundle from incoming/<peer>/ (every blob verified), checks its signature
 * (checkSignature) and routes it to a half, and removes the reader's temp files afterwards.
 * Nothing reaches a handler before every check passed. A handler's error propagates (the hot
 * folder watcher retries or fails the bundle with its reason).
 */
export async function routeBundle(o: RouterOptions, peer: string, file: string): Promise<void> {
  const tempDir = join(o.dataDir, 'fed', 'tmp');
  await mkdir(tempDir, { recursive: true, mode: 0o700 });
  // the peer's quota is checked on the manifest, before the reader writes any blob; a refusal of
  // a bundle the peer signed is told to the peerJob half, which answers it
  let overQuota: { b: ArrivedBundle; err: FarmError } | undefined;
  const onManifest = async (r: { manifest: BundleManifest; manifestBytes: Buffer; signature?: Buffer }) => {
    const m = r.manifest;
    const quota = o.quotaBytes?.(peer);
    if (quota === undefined || m.kind !== BundleKind.Job || m.from !== peer) return;
    try {
      checkQuota(peer, m.bundleId, await peerUse(o.dataDir, peer, m), quota);
    } catch (err) {
      const signed = checkSignature(o, peer, r); // a bundle not the peer's own is refused for that, and never answered
      if (routeOf(o.site, peer, m) === 'peerJob') overQuota = { b: { peer, file, manifest: m, blobs: new Map(), signed }, err: err as FarmError };
      throw err;
    }
  };
  let read;
  try {
    read = await readBundle({ source: createReadStream(file), tempDir, dataDir: o.dataDir, onManifest, ...(o.limits ? { limits: o.limits } : {}) });
  } catch (err) {
    if (overQuota && o.handlers.refused) await o.handlers.refused(overQuota.b, overQuota.err);
    throw err;
  }
  try {
    const signed = checkSignature(o, peer, read);
    const route = routeOf(o.site, peer, read.manifest);
    await o.handlers[route]({ peer, file, manifest: read.manifest, blobs: read.blobs, signed, manifestBytes: read.manifestBytes, ...(read.signature ? { signature: read.signature } : {}) });
  } finally {
    await rm(read.dir, { recursive: true, force: true });
  }
}
