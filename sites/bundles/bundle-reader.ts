import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { extract as tarExtract, type Header } from 'tar-stream';
import {
  BLOB_ENTRY, BUNDLE_ENTRY, FarmError, checkBundlePaths, decodeManifest, manifestBlobs, quote,
  type BundleManifest,
} from '../../protocol/index.ts';
import { TarHeaderTap } from './tar-header-tap.ts';

/** What a reader accepts at most; the caller sets them per peer. */
export interface BundleLimits {
  /** Bytes of `manifest.msgpack` (an unsplit manifest; about 10 000 files fit in 1 MiB). */
  manifestBytes: number;
  /** Entries of files[]. */
  files: number;
  /** Bytes of all blobs together. */
  totalBytes: number;
  /** Tar entries in all (manifest, signature and blobs), checked against the manifest's blob count. */
  entries: number;
}

export const DEFAULT_BUNDLE_LIMITS: BundleLimits = {
  manifestBytes: 1024 * 1024,
  files: 10_000,
  totalBytes: 64 * 1024 ** 3,
  // blobs + 2: with large files in chunks of ~1 MiB, as many as the 1 MiB manifest can list (and the link takes)
  entries: 20_002,
};

/** `manifest.sig` is a detached signature (Ed25519, a later issue): small. */
const MAX_SIGNATURE_BYTES = 4096;

export interface ReadBundleOptions {
  source: Readable;
  /** A directory the reader may write in: it makes one fresh `rbb-*` directory there and writes nothing else. */
  tempDir: string;
  /** The receiving site's data directory, for the path rules. */
  dataDir: string;
  limits?: Partial<BundleLimits>;
  /**
   * Told the manifest once it passed the format, path and limit checks, before the first blob
   * is written (so after the signature, which the writers put right after the manifest): what it
   * throws refuses the bundle (the intake checks the peer's quota here).
   */
  onManifest?(m: { manifest: BundleManifest; manifestBytes: Buffer; signature?: Buffer }): void | Promise<void>;
}

export interface ReadBundleResult {
  manifest: BundleManifest;
  /** The manifest as it was in the tar: the bytes `manifest.sig` signs. */
  manifestBytes: Buffer;
  /** The reader's own directory under tempDir; the caller moves the blobs out and removes it. */
  dir: string;
  /**
   * Each verified blob: sha256 → its file in `dir`; and each file that came in chunks, joined and
   * checked against its sha256, under that sha256 (so `blobs.get(file.sha256)` is every file's content).
   */
  blobs: Map<string, string>;
  signature?: Buffer;
}

const bad = (msg: string) => new FarmError('RB_BAD_BUNDLE', msg);

/**
 * Reads a bundle tar from a stream (docs/federation.md, "Bundles"). The manifest must come first
 * and is checked in full (schema, path rules, limits) before any blob is written; each blob is
 * then hashed and counted while it streams into the reader's own directory (a small one is
 * verified in memory first); the blob paths are returned only when every blob matches its name and
 * the manifest. On any refusal (RB_BAD_BUNDLE, naming the entry and the rule) the
 * reader's directory is removed, so nothing of a refused bundle stays.
 */
export async function readBundle(o: ReadBundleOptions): Promise<ReadBundleResult> {
  const limits = { ...DEFAULT_BUNDLE_LIMITS, ...o.limits };
  const dir = await mkdtemp(join(o.tempDir, 'rbb-'));
  const tap = new TarHeaderTap();
  const ex = tarExtract();
  const feeding = pipeline(o.source, tap, ex).then(() => null, (e: unknown) => e);
  let manifest: BundleManifest | undefined;
  let manifestBytes: Buffer = Buffer.alloc(0);
  let wanted = new Map<string, number>();
  let signature: Buffer | undefined;
  const blobs = new Map<string, string>();
  const seen = new Set<string>();
  const writes = new Writes();
  let told = false;
  const tell = async (m: BundleManifest) => {
    if (told) return;
    told = true;
    await o.onManifest?.({ manifest: m, manifestBytes, ...(signature ? { signature } : {}) });
  };
  try {
    for await (const entry of ex) {
      const h = entry.header;
      // No entry counter is needed: the manifest comes first, names at most entries - 2 blobs, and
      // every later entry must be one of those or the signature, each once (a tar bomb stops at its first stray).
      checkHeader(h, tap.headerAt((h as Header & { byteOffset: number }).byteOffset));
      const name = h.name;
      if (seen.has(name)) throw bad(`entry ${quote(name)} appears twice`);
      seen.add(name);
      if (!manifest) {
        if (name !== BUNDLE_ENTRY.manifest) throw bad(`the first entry must be ${BUNDLE_ENTRY.manifest}, not ${quote(name)}`);
        if (h.size > limits.manifestBytes) throw bad(`${BUNDLE_ENTRY.manifest} is ${h.size} bytes, at most ${limits.manifestBytes}`);
        manifestBytes = await readSmall(entry, h.size, name);
        manifest = decodeManifest(manifestBytes);
        wanted = checkLimits(manifest, limits, o.dataDir);
        continue;
      }
      if (name === BUNDLE_ENTRY.signature) {
        if (h.size > MAX_SIGNATURE_BYTES) throw bad(`${name} is ${h.size} bytes, at most ${MAX_SIGNATURE_BYTES}`);
        signature = await readSmall(entry, h.size, name);
        continue;
      }
      await tell(manifest);
      const sha256 = BLOB_ENTRY.exec(name)?.[1];
      if (!sha256) throw bad(`entry ${quote(name)} is not one a bundle may hold (${BUNDLE_ENTRY.manifest}, ${BUNDLE_ENTRY.signature}, ${BUNDLE_ENTRY.blobPrefix}<sha256>)`);
      const size = wanted.get(sha256);
      if (size === undefined) throw bad(`entry ${quote(name)} is a blob the manifest does not name`);
      if (h.size !== size) throw bad(`entry ${quote(name)}: its tar header says ${h.size} bytes, the manifest ${size}`);
      blobs.set(sha256, await storeBlob(entry, dir, sha256, size, writes));
    }
    const err = await feeding;
    if (err) throw err;
    await writes.drain();
    if (!manifest) throw bad(`the tar holds no ${BUNDLE_ENTRY.manifest}`);
    await tell(manifest); // a bundle without blobs
    for (const [sha256, size] of wanted) {
      if (!blobs.has(sha256)) {
        const f = manifest.files.find((x) => x.sha256 === sha256 || x.chunks?.some((c) => c.sha256 === sha256));
        throw bad(`blob ${sha256} (${size} bytes, of file ${quote(f?.path ?? '?')}) is missing from the tar`);
      }
    }
    await joinChunkedFiles(manifest, wanted, blobs, dir);
    return { manifest, manifestBytes, dir, blobs, ...(signature ? { signature } : {}) };
  } catch (err) {
    ex.destroy();
    o.source.destroy();
    await feeding;
    await writes.settle(); // a write still in flight would land after the rm
    await rm(dir, { recursive: true, force: true });
    throw asFarmError(err);
  }
}

/** The raw header must agree with what tar-stream decoded, and be a plain regular file. */
function checkHeader(h: Header, raw: ReturnType<TarHeaderTap['headerAt']>): void {
  const name = quote(h.name);
  if (h.pax || raw?.extendedBy) {
    const paxPath = (h.pax as { path?: string } | null | undefined)?.path;
    throw bad(`entry ${name} comes with an extended (pax or GNU) header${paxPath !== undefined && raw && paxPath !== raw.name ? ` renaming ustar ${quote(raw.name)}` : ''}; a bundle never needs one`);
  }
  if (!raw) throw bad(`entry ${name}: its tar header could not be found in the stream`);
  if (raw.nulInName) throw bad(`entry ${quote(raw.name)}: its name holds a NUL character`);
  if (raw.prefix) throw bad(`entry ${name}: its header has a ustar prefix; bundle names are short`);
  if (h.type !== 'file' || (raw.typeflag !== '0')) throw bad(`entry ${name} is a ${h.type === 'file' ? `type '${raw.typeflag}' entry` : h.type}; a bundle holds regular files only`);
}

/** Totals before any write: a header claiming 50 GiB is refused here, not after filling the disk. */
function checkLimits(m: BundleManifest, limits: BundleLimits, dataDir: string): Map<string, number> {
  if (m.files.length > limits.files) throw bad(`the manifest lists ${m.files.length} files, at most ${limits.files}`);
  checkBundlePaths(m, { dataDir });
  const blobs = manifestBlobs(m);
  let total = 0;
  for (const size of blobs.values()) total += size;
  if (total > limits.totalBytes) throw bad(`the manifest's blobs add up to ${total} bytes, at most ${limits.totalBytes}`);
  if (blobs.size + 2 > limits.entries) throw bad(`the manifest names ${blobs.size} blobs, at most ${limits.entries - 2}`);
  return blobs;
}

async function readSmall(entry: AsyncIterable<unknown>, size: number, name: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  let got = 0;
  for await (const chunk of entry) {
    const c = chunk as Buffer;
    got += c.length;
    if (got > size) throw bad(`entry ${name} holds more than its ${size} bytes`);
    parts.push(c);
  }
  if (got !== size) throw bad(`entry ${name} ends after ${got} of its ${size} bytes`);
  return Buffer.concat(parts);
}

/** Blobs up to this size are held in memory and verified before they are written (one write, no file for a bad one). */
const SMALL_BLOB = 1024 * 1024;

/**
 * Streams a blob into `<dir>/<sha256>`, hashing and counting. The directory is the reader's own
 * and is removed whole on any refusal, and the caller sees a path only once every blob is
 * verified, so no `.part` name and rename are needed (they cost a small-file bundle ~2× on this disk).
 */
async function storeBlob(entry: AsyncIterable<unknown>, dir: string, sha256: string, size: number, writes: Writes): Promise<string> {
  const path = join(dir, sha256);
  const hash = createHash('sha256');
  let got = 0;
  const count = (c: Buffer) => {
    got += c.length;
    if (got > size) throw bad(`blob ${sha256} holds more than its ${size} bytes`);
    hash.update(c);
  };
  const verify = () => {
    if (got !== size) throw bad(`blob ${sha256} ends after ${got} of its ${size} bytes`);
    const actual = hash.digest('hex');
    if (actual !== sha256) throw bad(`blob ${sha256} does not match its name: its content hashes to ${actual}`);
  };
  if (size <= SMALL_BLOB) {
    const parts: Buffer[] = [];
    for await (const chunk of entry) {
      count(chunk as Buffer);
      parts.push(chunk as Buffer);
    }
    verify();
    await writes.add(writeFile(path, parts.length === 1 ? parts[0]! : Buffer.concat(parts), { flag: 'wx', mode: 0o600 }));
    return path;
  }
  const fh = await open(path, 'wx', 0o600);
  try {
    for await (const chunk of entry) {
      count(chunk as Buffer);
      await fh.write(chunk as Buffer);
    }
  } finally {
    await fh.close();
  }
  verify();
  return path;
}

/**
 * Each file that came in chunks, written whole as `<dir>/<its sha256>` from its (verified) chunks
 * and checked against the manifest's sha256 for it: the chunk list is the sender's word, the
 * file's hash what the job was built with.
 */
async function joinChunkedFiles(m: BundleManifest, wanted: ReadonlyMap<string, number>, blobs: Map<string, string>, dir: string): Promise<void> {
  for (const f of m.files) {
    if (!f.chunks || blobs.has(f.sha256)) {
      const size = f.chunks ? wanted.get(f.sha256) : undefined;
      if (size !== undefined && size !== f.size) throw bad(`file ${quote(f.path)}: blob ${f.sha256} is ${size} bytes, the file ${f.size}`);
      continue;
    }
    const path = join(dir, f.sha256);
    const hash = createHash('sha256');
    const fh = await open(path, 'wx', 0o600);
    try {
      for (const c of f.chunks) {
        for await (const piece of createReadStream(blobs.get(c.sha256)!, { highWaterMark: 1 << 20 })) {
          hash.update(piece as Buffer);
          await fh.write(piece as Buffer);
        }
      }
    } finally {
      await fh.close();
    }
    const actual = hash.digest('hex');
    if (actual !== f.sha256) throw bad(`file ${quote(f.path)}: its chunks join to content that hashes to ${actual}, not its sha256 ${f.sha256}`);
    blobs.set(f.sha256, path);
  }
}

/**
 * Small blobs' writes, a few at a time: creating a file costs far more than writing 16 KiB on a
 * busy machine (about 1 ms, docs/benchmarks.md), and libuv has 4 workers to overlap them.
 */
class Writes {
  private readonly pending = new Set<Promise<void>>();
  private failed: { err: unknown } | null = null;
  static readonly MAX = 8;
  async add(write: Promise<void>): Promise<void> {
    const p: Promise<void> = write.then(
      () => { this.pending.delete(p); },
      (err: unknown) => { this.pending.delete(p); this.failed ??= { err }; },
    );
    this.pending.add(p);
    if (this.pending.size >= Writes.MAX) await Promise.race(this.pending);
    if (this.failed) throw this.failed.err;
  }
  /** Waits for every write; throws the first that failed. */
  async drain(): Promise<void> {
    await this.settle();
    if (this.failed) throw this.failed.err;
  }
  async settle(): Promise<void> {
    await Promise.all([...this.pending]);
  }
}

/** A system error (no space, no permission) is the receiver's problem; anything else is the bundle's. */
function asFarmError(err: unknown): FarmError {
  if (err instanceof FarmError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  if (code === 'ENOSPC') return new FarmError('RB_OUTPUT_DISK_FULL', `no space left for the bundle's blobs: ${(err as Error).message}`, { cause: err });
  if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return FarmError.from(err, 'RB_OUTPUT_FAILED');
  return new FarmError('RB_BAD_BUNDLE', `the tar is malformed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}
