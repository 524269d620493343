import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, type ReadStream } from 'node:fs';
import { copyFile, link, lstat, mkdir, open, readdir, readFile, rename, rm, stat, unlink, utimes } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FarmError } from '../../protocol/index.ts';
import { blobHash, peerName, refName } from './names.ts';
import { syncDir } from './sync-dir.ts';
import { writeTo } from './write-to.ts';

/** What `put` did: `stored` is false when the blob was already there (a second put is a no-op). */
export interface PutResult {
  stored: boolean;
}

/** What `gc` removed (blobs and leftover temp files of interrupted puts) and what it kept. */
export interface GcResult {
  removed: number;
  bytesFreed: number;
  kept: number;
}

export interface CasOptions {
  /** The hardlink call (tests give one that fails with EXDEV to prove the copy fallback). */
  link?: (existing: string, dest: string) => Promise<void>;
}

// errors a hardlink meets across filesystems or where links are not allowed: copy instead
const NO_LINK = new Set(['EXDEV', 'EPERM', 'EMLINK', 'ENOTSUP', 'EOPNOTSUPP']);
const HAS_BATCH = 64;

const errCode = (err: unknown): string | undefined => (err as NodeJS.ErrnoException | undefined)?.code;


/**
 * The content-addressed store of one peer: `<data>/fed/cas/<peer>/sha256/ab/<hex>`, blobs named
 * by the sha256 of their bytes. One store per peer, never a global one: what one tenant holds
 * cannot answer another's "do you already have this?" (notes §4.4). A blob is either whole and
 * verified or absent: put writes a temp file in `<peer>/tmp/` (same filesystem), checks size and
 * sha256 while streaming, fsyncs, then renames. Every name that becomes a path is validated
 * (peer: a NATS token; hash: 64 lowercase hex; reference: an id without '/'), so nothing outside
 * the peer's directory is touched. References (`<peer>/refs/<bundle or job>.json`) and a
 * last-used time (the blob's mtime, renewed on every use) decide what `gc` may remove.
 */
export class PeerCas {
  readonly peer: string;
  /** `<data>/fed/cas/<peer>` */
  readonly root: string;
  private readonly blobsDir: string;
  private readonly tmpDir: string;
  private readonly refsDir: string;
  private readonly linkFn: (existing: string, dest: string) => Promise<void>;
  // fan-out folders holding renames not yet fsynced (puts with deferDirSync)
  private readonly unsynced = new Set<string>();

  private constructor(dataDir: string, peer: string, opts: CasOptions) {
    this.peer = peerName(peer);
    this.root = join(dataDir, 'fed', 'cas', this.peer);
    this.blobsDir = join(this.root, 'sha256');
    this.tmpDir = join(this.root, 'tmp');
    this.refsDir = join(this.root, 'refs');
    this.linkFn = opts.link ?? link;
  }

  /** Opens (creating, mode 0700) the store of `peer` under the site's data dir. */
  static async open(dataDir: string, peer: string, opts: CasOptions = {}): Promise<PeerCas> {
    const cas = new PeerCas(dataDir, peer, opts);
    for (const dir of [cas.blobsDir, cas.tmpDir, cas.refsDir]) await mkdir(dir, { recursive: true, mode: 0o700 });
    return cas;
  }

  /** Where the blob `hash` lives (whether or not it is there). */
  blobPath(hash: string): string {
    const h = blobHash(hash);
    return join(this.blobsDir, h.slice(0, 2), h);
  }

  /**
   * The hashes this store lacks, in the order asked, each once: the want-list, computed by the
   * receiver from its own store. Blobs it has count as used now (a bundle is about to reference
   * them, so gc must not take them meanwhile). Every hash is checked before any is looked up.
   */
  async has(hashes: readonly string[]): Promise<string[]> {
    const unique = [...new Set(hashes.map(blobHash))];
    const missing: string[] = [];
    for (let i = 0; i < unique.length; i += HAS_BATCH) {
      const batch = unique.slice(i, i + HAS_BATCH);
      const present = await Promise.all(batch.map((h) => this.touch(this.blobPath(h))));
      batch.forEach((h, j) => { if (!present[j]) missing.push(h); });
    }
    return missing;
  }

  /**
   * Stores `size` bytes that must hash to `sha256`, from a stream or a file path. Refused with
   * RB_BAD_BLOB (and nothing kept) when the bytes are more or fewer than `size` or hash to
   * anything else; the stream is cut as soon as it runs past `size`. Safe to call concurrently
   * for the same blob: each writes its own temp file and the renames land the same bytes.
   * The blob's bytes are always fsynced before the rename; with `deferDirSync` the rename itself
   * is made durable by the next `flush()` (one fsync per folder for many small blobs: call it
   * before telling the sender the blobs are stored).
   */
  async put(source: Readable | string, sha256: string, size: number, opts: { deferDirSync?: boolean } = {}): Promise<PutResult> {
    const hash = blobHash(sha256);
    if (!Number.isSafeInteger(size) || size < 0) {
      if (source instanceof Readable) source.destroy();
      throw new FarmError('RB_BAD_BLOB', `blob ${hash}: size ${String(size)} is not a whole number of bytes`);
    }
    const dest = this.blobPath(hash);
    if (await this.present(dest, size)) {
      if (source instanceof Readable) source.destroy(); // the caller handed it over; its bytes are not needed
      return { stored: false };
    }
    const input = typeof source === 'string' ? createReadStream(source) : source;
    const tmp = join(this.tmpDir, `${hash}.${randomBytes(6).toString('hex')}.part`);
    const digest = createHash('sha256');
    let seen = 0;
    const check = new Transform({
      transform(chunk: Buffer, _enc, done) {
        seen += chunk.length;
        if (seen > size) {
          done(new FarmError('RB_BAD_BLOB', `blob ${hash}: more than the ${size} bytes it should hold`));
          return;
        }
        digest.update(chunk);
        done(null, chunk);
      },
    });
    let landed = false;
    const fh = await open(tmp, 'wx', 0o444); // read-only: job trees hardlink to it, and must not change it
    try {
      try {
        await pipeline(input, check, writeTo(fh));
      } catch (err) {
        if (err instanceof FarmError) throw err;
        if (errCode(err) === 'ENOSPC') throw new FarmError('RB_OUTPUT_DISK_FULL', `blob ${hash}: no space left in the content store of peer ${this.peer}`, { cause: err, retryable: true });
        throw new FarmError('RB_BAD_BLOB', `blob ${hash}: reading or writing its bytes failed: ${(err as Error).message}`, { cause: err, retryable: true });
      }
      if (seen !== size) throw new FarmError('RB_BAD_BLOB', `blob ${hash}: ${seen} bytes where ${size} were expected`);
      const got = digest.digest('hex');
      if (got !== hash) throw new FarmError('RB_BAD_BLOB', `blob ${hash}: its ${size} bytes hash to ${got}`);
      await fh.sync();
      await fh.close();
      landed = await this.moveIn(tmp, dest, opts);
      return { stored: true };
    } finally {
      await fh.close().catch(() => {}); // closed already on success
      if (!landed) await rm(tmp, { force: true });
    }
  }

  /**
   * Renames a verified, fsynced file into its blob path, then makes the rename durable (the
   * folder's fsync, now or at flush()). True once the file is in place: the caller must not remove it.
   */
  private async moveIn(from: string, dest: string, opts: { deferDirSync?: boolean }): Promise<true> {
    await mkdir(dirname(dest), { recursive: true, mode: 0o700 });
    await rename(from, dest);
    if (opts.deferDirSync) this.unsynced.add(dirname(dest));
    else await syncDir(dirname(dest));
    return true;
  }

  /** A folder on the store's own filesystem for files about to be adopted (a bundle reader's temp blobs). */
  get tempDir(): string {
    return this.tmpDir;
  }

  /**
   * Takes a file already written in `tempDir` (by a bundle reader) as blob `sha256` without
   * copying it: re-hashed and sized, fsynced, then renamed in. A file that does not match is
   * removed and refused (RB_BAD_BLOB); a file outside `tempDir` is refused and left alone.
   * `digest`: the sha256 the caller computed of exactly the bytes it wrote to the file (the link
   * hashes a blob's chunks as they arrive in order), so the file is not read again.
   */
  async adopt(path: string, sha256: string, size: number, opts: { deferDirSync?: boolean; digest?: string } = {}): Promise<PutResult> {
    const hash = blobHash(sha256);
    const name = basename(path);
    if (dirname(path) !== this.tmpDir || name.startsWith('.') || !name.length) {
      throw new FarmError('RB_BAD_ARGUMENT', `${path} is not a file in the content store's temp folder ${this.tmpDir}`);
    }
    const dest = this.blobPath(hash);
    let landed = false;
    try {
      const st = await lstat(path);
      if (!st.isFile()) throw new FarmError('RB_BAD_BLOB', `blob ${hash}: ${path} is not a regular file`);
      if (st.size !== size) throw new FarmError('RB_BAD_BLOB', `blob ${hash}: ${st.size} bytes where ${size} were expected`);
      if (await this.present(dest, size)) return { stored: false };
      let got = opts.digest;
      if (got === undefined) {
        const digest = createHash('sha256');
        await pipeline(createReadStream(path), digest);
        got = digest.digest('hex');
      }
      if (got !== hash) throw new FarmError('RB_BAD_BLOB', `blob ${hash}: its ${size} bytes hash to ${got}`);
      const fh = await open(path, 'r');
      try {
        await fh.chmod(0o444);
        await fh.sync();
      } finally {
        await fh.close();
      }
      landed = await this.moveIn(path, dest, opts);
      return { stored: true };
    } finally {
      if (!landed) await rm(path, { force: true });
    }
  }

  /** Makes the renames of deferred puts durable (fsyncs each folder they landed in). */
  async flush(): Promise<void> {
    const dirs = [...this.unsynced];
    this.unsynced.clear();
    for (const dir of dirs) await syncDir(dir);
  }

  /** Re-hashes a stored blob; a blob that no longer matches is removed (the next want-list asks for it again). */
  async verify(hash: string): Promise<boolean> {
    const path = this.blobPath(hash);
    const digest = createHash('sha256');
    try {
      await pipeline(createReadStream(path), digest);
    } catch (err) {
      if (errCode(err) === 'ENOENT') return false;
      throw err;
    }
    if (digest.digest('hex') === hash) return true;
    await rm(path, { force: true });
    return false;
  }

  /** A stream of the blob's bytes; RB_NO_SUCH_BLOB when it is absent. */
  async open(hash: string): Promise<ReadStream> {
    const path = this.blobPath(hash);
    let fh;
    try {
      fh = await open(path, 'r');
    } catch (err) {
      if (errCode(err) === 'ENOENT') throw new FarmError('RB_NO_SUCH_BLOB', `peer ${this.peer} has no blob ${hash}`);
      throw err;
    }
    await this.touch(path);
    return fh.createReadStream();
  }

  /**
   * Puts the blob at `dest` (a job's tree): a hardlink (same inode, no bytes copied), or a copy
   * (written `.part`, then renamed) where a link cannot be made (another filesystem). A `dest`
   * that already is this blob is left alone; any other file there is refused.
   */
  async linkOut(hash: string, dest: string): Promise<'link' | 'copy' | 'present'> {
    const src = this.blobPath(hash);
    if (!(await this.touch(src))) throw new FarmError('RB_NO_SUCH_BLOB', `peer ${this.peer} has no blob ${hash}`);
    await mkdir(dirname(dest), { recursive: true });
    try {
      await this.linkFn(src, dest);
      return 'link';
    } catch (err) {
      const code = errCode(err);
      if (code === 'EEXIST') return this.sameBlob(src, dest);
      if (!code || !NO_LINK.has(code)) throw err;
    }
    const part = `${dest}.${randomBytes(4).toString('hex')}.part`;
    try {
      await copyFile(src, part);
      const fh = await open(part, 'r');
      await fh.sync().finally(() => fh.close());
      await link(part, dest).catch(async (err: unknown) => {
        if (errCode(err) === 'EEXIST') await this.sameBlob(src, dest);
        else throw err;
      }); // link, not rename: never replaces a file someone else put there
    } finally {
      await rm(part, { force: true });
    }
    return 'copy';
  }

  /** Records that bundle or job `name` uses these blobs (replacing what it said before). */
  async addRef(name: string, hashes: readonly string[]): Promise<void> {
    const file = join(this.refsDir, `${refName(name)}.json`);
    const list = [...new Set(hashes.map(blobHash))];
    const tmp = `${file}.${randomBytes(4).toString('hex')}.part`;
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(JSON.stringify({ hashes: list, at: new Date().toISOString() }));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
    await syncDir(this.refsDir);
  }

  /** Drops the reference of bundle or job `name` (its blobs then age towards gc). */
  async removeRef(name: string): Promise<void> {
    await rm(join(this.refsDir, `${refName(name)}.json`), { force: true });
  }

  /** The bundles and jobs holding references. */
  async refs(): Promise<string[]> {
    return (await readdir(this.refsDir)).filter((n) => n.endsWith('.json')).map((n) => n.slice(0, -5)).sort();
  }

  /** When the blob was last stored or used (ms since the epoch), or undefined when absent. */
  async lastUsed(hash: string): Promise<number | undefined> {
    try {
      return (await stat(this.blobPath(hash))).mtimeMs;
    } catch (err) {
      if (errCode(err) === 'ENOENT') return undefined;
      throw err;
    }
  }

  /**
   * Removes every blob no reference names and not used for `olderThanMs`, and temp files of puts
   * interrupted that long ago. A reference file that cannot be read stops gc before anything is
   * removed: a blob deleted by mistake costs a transfer, a blob kept by mistake only disk.
   */
  async gc(olderThanMs: number, opts: { now?: number } = {}): Promise<GcResult> {
    const cutoff = (opts.now ?? Date.now()) - olderThanMs;
    const referenced = new Set<string>();
    for (const name of await this.refs()) {
      const file = join(this.refsDir, `${name}.json`);
      let hashes: unknown;
      try {
        hashes = (JSON.parse(await readFile(file, 'utf8')) as { hashes?: unknown }).hashes;
      } catch (err) {
        if (errCode(err) === 'ENOENT') continue; // removed meanwhile
        throw new FarmError('RB_BAD_ARGUMENT', `reference file ${file} cannot be read; gc removed nothing`, { cause: err });
      }
      if (!Array.isArray(hashes)) throw new FarmError('RB_BAD_ARGUMENT', `reference file ${file} holds no hash list; gc removed nothing`);
      for (const h of hashes) if (typeof h === 'string') referenced.add(h);
    }
    const result: GcResult = { removed: 0, bytesFreed: 0, kept: 0 };
    const sweep = async (path: string, keep: boolean) => {
      const st = await lstat(path).catch(() => undefined);
      if (!st) return;
      if (keep || st.mtimeMs >= cutoff) {
        result.kept++;
        return;
      }
      await unlink(path).catch((err: unknown) => { if (errCode(err) !== 'ENOENT') throw err; });
      result.removed++;
      result.bytesFreed += st.size;
    };
    for (const fan of await readdir(this.blobsDir)) {
      if (!/^[0-9a-f]{2}$/.test(fan)) continue;
      for (const name of await readdir(join(this.blobsDir, fan))) {
        if (!/^[0-9a-f]{64}$/.test(name) || !name.startsWith(fan)) continue;
        await sweep(join(this.blobsDir, fan, name), referenced.has(name));
      }
    }
    for (const name of await readdir(this.tmpDir)) if (name.endsWith('.part')) await sweep(join(this.tmpDir, name), false);
    return result;
  }

  private async present(path: string, size: number): Promise<boolean> {
    try {
      const st = await stat(path);
      if (st.size !== size) return false; // damaged: the put replaces it
      await this.touch(path);
      return true;
    } catch (err) {
      if (errCode(err) === 'ENOENT') return false;
      throw err;
    }
  }

  /** Renews the blob's last-used time; false when it is absent. */
  private async touch(path: string): Promise<boolean> {
    const now = new Date();
    try {
      await utimes(path, now, now);
      return true;
    } catch (err) {
      if (errCode(err) === 'ENOENT') return false;
      throw err;
    }
  }

  private async sameBlob(src: string, dest: string): Promise<'present'> {
    const [a, b] = await Promise.all([stat(src), stat(dest)]);
    if (a.ino === b.ino && a.dev === b.dev) return 'present';
    const digest = createHash('sha256');
    await pipeline(createReadStream(dest), digest);
    if (b.size === a.size && digest.digest('hex') === src.slice(-64)) return 'present';
    throw new FarmError('RB_BAD_ARGUMENT', `${dest} already exists and is not blob ${src.slice(-64)}`);
  }
}
