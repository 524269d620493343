import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rename, rm, stat } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { pack as tarPack } from 'tar-stream';
import {
  BUNDLE_ENTRY, BUNDLE_VERSION, FarmError, checkBundlePaths, checkManifest, encodeManifest,
  type BundleFile, type BundleManifest,
} from '../../protocol/index.ts';

/** What a bundle says besides its files; the writer fills in version, createdAt and files[]. */
export type BundleHead = Omit<BundleManifest, 'version' | 'createdAt' | 'files'> & { createdAt?: number };

export interface WriteBundleOptions {
  head: BundleHead;
  /** Absolute paths of the files to carry (for a job: its scene and support files). */
  files: readonly string[];
  /** The bundle's final path, `X.rbb`; it appears only once complete (written as `X.rbb.part`, then renamed). */
  out: string;
  /** The sending site's data directory, for the path rules (its files never travel). */
  dataDir: string;
}

async function hashFile(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** The manifest for a list of files: each stat'ed and sha256'd, streaming; path rules checked. */
export async function buildManifest(head: BundleHead, paths: readonly string[], dataDir: string): Promise<BundleManifest> {
  const files: BundleFile[] = [];
  for (const path of [...new Set(paths)]) {
    const st = await stat(path).catch((cause: unknown) => {
      throw new FarmError('RB_INPUT_NOT_FOUND', `bundle file ${path}: ${(cause as Error).message}`, { cause });
    });
    if (!st.isFile()) throw new FarmError('RB_BAD_BUNDLE', `bundle file ${path} is not a regular file`);
    // rw/x only: the receiver gets 0644 or 0755, never setuid, setgid or another owner's bits
    files.push({ path, size: st.size, mode: st.mode & 0o111 ? 0o755 : 0o644, sha256: await hashFile(path) });
  }
  const { createdAt, ...rest } = head;
  const m = checkManifest({ version: BUNDLE_VERSION, createdAt: createdAt ?? Date.now(), ...rest, files });
  checkBundlePaths(m, { dataDir });
  return m;
}

/**
 * Writes a bundle: a tar of `manifest.msgpack` first (a reader checks it before any blob), then
 * one `blobs/<sha256>` per distinct content. `manifest.sig` is reserved for signing (a later
 * issue). A file that changes while it is written fails the bundle (its hash no longer matches).
 */
export async function writeBundle(o: WriteBundleOptions): Promise<BundleManifest> {
  const manifest = await buildManifest(o.head, o.files, o.dataDir);
  const blobs = new Map<string, BundleFile>();
  for (const f of manifest.files) if (!blobs.has(f.sha256)) blobs.set(f.sha256, f);
  const part = `${o.out}.part`;
  const pack = tarPack();
  const fill = async () => {
    const entry = (name: string, size: number) => pack.entry({ name, size, mode: 0o644, mtime: new Date(manifest.createdAt) });
    await new Promise<void>((res, rej) => pack.entry({ name: BUNDLE_ENTRY.manifest, mode: 0o644, mtime: new Date(manifest.createdAt) }, Buffer.from(encodeManifest(manifest)), (e) => (e ? rej(e) : res())));
    for (const [sha256, f] of blobs) {
      if (f.size === 0) {
        await new Promise<void>((res, rej) => pack.entry({ name: `${BUNDLE_ENTRY.blobPrefix}${sha256}`, mode: 0o644 }, Buffer.alloc(0), (e) => (e ? rej(e) : res())));
        continue;
      }
      const h = createHash('sha256');
      const sink = entry(`${BUNDLE_ENTRY.blobPrefix}${sha256}`, f.size);
      await pipeline(createReadStream(f.path, { start: 0, end: f.size - 1 }).on('data', (c) => h.update(c as Buffer)), sink);
      if (h.digest('hex') !== sha256) throw new FarmError('RB_BAD_BUNDLE', `bundle file ${f.path} changed while the bundle was written`);
    }
    pack.finalize();
  };
  // exclusive: another writer's .part (or a leftover) is never overwritten, nor removed below
  const fh = await open(part, 'wx', 0o644).catch((cause: unknown) => {
    throw new FarmError('RB_OUTPUT_FAILED', `cannot create ${part}: ${(cause as Error).message}`, { cause });
  });
  try {
    await Promise.all([pipeline(pack, fh.createWriteStream()), fill().catch((e: unknown) => { pack.destroy(e as Error); throw e; })]);
    await rename(part, o.out);
  } catch (err) {
    await rm(part, { force: true });
    throw FarmError.from(err, 'RB_OUTPUT_FAILED');
  }
  return manifest;
}

/** A fresh bundle id: time-ordered, unique enough across sites. */
export function newBundleId(now = Date.now()): string {
  return `b-${now.toString(36)}-${randomBytes(6).toString('hex')}`;
}
