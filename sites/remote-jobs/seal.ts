import { randomBytes } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { sealFile, type BundleSource } from '../bundles/index.ts';
import type { RemoteJobPaths } from './path-map.ts';

/**
 * The vendor's half of encrypted results (docs/federation.md, "Encrypted results"): each file of
 * a bundle about a job that asked for it is encrypted to the studio's key before it goes in, and
 * the job's clear files are purged once its result and bill are sent.
 */

/** Where files are encrypted before they go into a bundle: ciphertext only, removed once the bundle is written. */
export const sealingDir = (dataDir: string) => join(dataDir, 'fed', 'sealing');

/**
 * The files of a bundle, each encrypted to `to` (`age1…`) in a folder of its own under
 * `<data>/fed/sealing/`: the sources to write instead (with their plaintext's hash), and the
 * clean-up that removes the folder (call it whether the bundle was written or not).
 */
export async function sealSources(dataDir: string, to: string, files: readonly BundleSource[]): Promise<{ files: BundleSource[]; cleanup(): Promise<void> }> {
  const dir = join(sealingDir(dataDir), randomBytes(8).toString('hex'));
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const cleanup = () => rm(dir, { recursive: true, force: true });
  try {
    const out: BundleSource[] = [];
    for (const [i, src] of files.entries()) {
      const { path, from } = typeof src === 'string' ? { path: src, from: src } : src;
      const sealed = join(dir, `${i}.age`);
      out.push({ path, from: sealed, plain: await sealFile(from, sealed, to) });
    }
    return { files: out, cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/**
 * Removes a job's clear files here once everything of it was sent encrypted: its frames and task
 * logs (`out/`) and its sample thumbnails (`samples/`). What stays is its input tree (kept for a
 * re-render) and the ciphertext in the bundles (outgoing/, processed/, the link's store).
 */
export async function purgeClear(p: RemoteJobPaths, log: Logger): Promise<void> {
  await rm(p.out, { recursive: true, force: true });
  await rm(p.samples, { recursive: true, force: true });
  log.info({ out: p.out, samples: p.samples }, 'clear copies of a peer\'s results purged: only the encrypted bundles keep them');
}
