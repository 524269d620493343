import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rename, rm, stat } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { pack as tarPack } from 'tar-stream';
import {
  BUNDLE_ENTRY, BUNDLE_VERSION, FarmError, checkBundlePaths, checkManifest, encodeManifest,
  type BundleChunk, type BundleFile, type BundleManifest,
} from '../../protocol/index.ts';
import { CHUNK_FILES_ABOVE, ContentChunker } from './content-chunker.ts';

/** What a bundle says besides its files; the writer fills in version, createdAt and files[]. */
export type BundleHead = Omit<BundleManifest, 'version' | 'createdAt' | 'files'> & { createdAt?: number };

/**
 * A file to carry: its absolute path, or `{ path, from }`: the path the manifest gives it (its
 * original path, e.g. a frame under the studio's output.dir) and the local file holding it; with
 * `plain`, `from` is that file encrypted (result-crypto.ts) and `plain` its plaintext's hash and size.
 */
export type BundleSource = string | { path: string; from: string; plain?: BundleFile['plain'] };

export interface WriteBundleOptions {
  head: BundleHead;
  /** The files to carry (for a job: its scene and support files; for a result: its frames and logs). */
  files: readonly BundleSource[];
  /** The bundle's final path, `X.rbb`; it appears only once complete (written as `X.rbb.part`, then renamed). */
  out: string;
  /** The sending site's data directory, for the path rules (its files never travel). */
  dataDir: string;
  /** Signs the manifest's exact bytes (`manifest.sig`): the site key (sites/links/site-key.ts loadSiteKey). */
  sign?: { sign(bytes: Uint8Array): Uint8Array };
}

/**
 * A file's sha256 and, when it is larger than CHUNK_FILES_ABOVE, its content-defined chunks (each
 * with its own sha256), in one read of the file.
 */
async function hashFile(path: string, size: number): Promise<{ sha256: string; chunks?: BundleChunk[] }> {
  const whole = createHash('sha256');
  if (size <= CHUNK_FILES_ABOVE) {
    for await (const piece of createReadStream(path)) whole.update(piece as Buffer);
    return { sha256: whole.digest('hex') };
  }
  const chunker = new ContentChunker();
  const chunks: BundleChunk[] = [];
  let part = createHash('sha256');
  let partSize = 0;
  for await (const piece of createReadStream(path, { highWaterMark: 1 << 20 })) {
    const buf = piece as Buffer;
    whole.update(buf);
    let at = 0;
    for (const cut of chunker.push(buf)) {
      part.update(buf.subarray(at, cut));
      chunks.push({ sha256: part.digest('hex'), size: partSize + cut - at });
      part = createHash('sha256');
      partSize = 0;
      at = cut;
    }
    part.update(buf.subarray(at));
    partSize += buf.length - at;
  }
  if (partSize > 0) chunks.push({ sha256: part.digest('hex'), size: partSize });
  return { sha256: whole.digest('hex'), chunks };
}

/** A manifest's file with the local file its bytes are read from. */
type Sourced = BundleFile & { from: string };

/** The files of a manifest, each stat'ed and sha256'd (streaming); the same path twice is one file. */
async function describeFiles(sources: readonly BundleSource[]): Promise<Sourced[]> {
  const files: Sourced[] = [];
  const seen = new Map<string, string>();
  for (const src of sources) {
    const { path, from, plain } = typeof src === 'string' ? { path: src, from: src, plain: undefined } : src;
    const had = seen.get(path);
    if (had === from) continue;
    if (had !== undefined) throw new FarmError('RB_BAD_BUNDLE', `bundle file ${path} is given twice, from ${had} and from ${from}`);
    seen.set(path, from);
    const st = await stat(from).catch((cause: unknown) => {
      throw new FarmError('RB_INPUT_NOT_FOUND', `bundle file ${path}${from !== path ? ` (from ${from})` : ''}: ${(cause as Error).message}`, { cause });
    });
    if (!st.isFile()) throw new FarmError('RB_BAD_BUNDLE', `bundle file ${from} is not a regular file`);
    // rw/x only: the receiver gets 0644 or 0755, never setuid, setgid or another owner's bits
    files.push({ path, from, size: st.size, mode: st.mode & 0o111 ? 0o755 : 0o644, ...(await hashFile(from, st.size)), ...(plain ? { plain } : {}) });
  }
  return files;
}

/** The manifest for a list of files: each stat'ed and sha256'd, streaming; path rules checked. */
export async function buildManifest(head: BundleHead, sources: readonly BundleSource[], dataDir: string): Promise<BundleManifest> {
  return (await build(head, sources, dataDir)).manifest;
}

async function build(head: BundleHead, sources: readonly BundleSource[], dataDir: string): Promise<{ manifest: BundleManifest; files: Sourced[] }> {
  const sourced = await describeFiles(sources);
  const files: BundleFile[] = sourced.map(({ from: _from, ...f }) => f);
  const { createdAt, ...rest } = head;
  const m = checkManifest({ version: BUNDLE_VERSION, createdAt: createdAt ?? Date.now(), ...rest, files });
  checkBundlePaths(m, { dataDir });
  return { manifest: m, files: sourced };
}

/**
 * Writes a bundle: a tar of `manifest.msgpack` first (a reader checks it before any blob), with
 * `sign`: `manifest.sig` (Ed25519 over the manifest's exact bytes) right after it, then one
 * `blobs/<sha256>` per distinct content: a file up to CHUNK_FILES_ABOVE whole, a larger one as its
 * content-defined chunks (content-chunker.ts), so a small edit to it changes one blob, not all. A file that changes while it is written fails the bundle
 * (its hash no longer matches).
 */
export async function writeBundle(o: WriteBundleOptions): Promise<BundleManifest> {
  const { manifest, files } = await build(o.head, o.files, o.dataDir);
  // each distinct content once: a small file whole, a large one as its chunks (a range of the file)
  const blobs = new Map<string, { from: string; start: number; size: number }>();
  for (const f of files) {
    if (!f.chunks) {
      if (!blobs.has(f.sha256)) blobs.set(f.sha256, { from: f.from, start: 0, size: f.size });
      continue;
    }
    let start = 0;
    for (const c of f.chunks) {
      if (!blobs.has(c.sha256)) blobs.set(c.sha256, { from: f.from, start, size: c.size });
      start += c.size;
    }
  }
  const manifestBytes = Buffer.from(encodeManifest(manifest));
  const signature = o.sign ? Buffer.from(o.sign.sign(manifestBytes)) : null;
  const part = `${o.out}.part`;
  const pack = tarPack();
  const fill = async () => {
    const entry = (name: string, size: number) => pack.entry({ name, size, mode: 0o644, mtime: new Date(manifest.createdAt) });
    await new Promise<void>((res, rej) => pack.entry({ name: BUNDLE_ENTRY.manifest, mode: 0o644, mtime: new Date(manifest.createdAt) }, manifestBytes, (e) => (e ? rej(e) : res())));
    if (signature) await new Promise<void>((res, rej) => pack.entry({ name: BUNDLE_ENTRY.signature, mode: 0o644, mtime: new Date(manifest.createdAt) }, signature, (e) => (e ? rej(e) : res())));
    for (const [sha256, f] of blobs) {
      if (f.size === 0) {
        await new Promise<void>((res, rej) => pack.entry({ name: `${BUNDLE_ENTRY.blobPrefix}${sha256}`, mode: 0o644 }, Buffer.alloc(0), (e) => (e ? rej(e) : res())));
        continue;
      }
      const h = createHash('sha256');
      const sink = entry(`${BUNDLE_ENTRY.blobPrefix}${sha256}`, f.size);
      await pipeline(createReadStream(f.from, { start: f.start, end: f.start + f.size - 1, highWaterMark: 1 << 20 }).on('data', (c) => h.update(c as Buffer)), sink);
      if (h.digest('hex') !== sha256) throw new FarmError('RB_BAD_BUNDLE', `bundle file ${f.from} changed while the bundle was written`);
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
