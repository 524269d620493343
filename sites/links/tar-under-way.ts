import { link, open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { FarmError } from '../../protocol/index.ts';
import { syncDir, type PeerCas } from '../cas/index.ts';
import { bundleFileName, dropFile } from '../hotfolders/index.ts';
import { BLOCK, padding, type TarEntry } from './tar-layout.ts';

/**
 * The receiver's copy of a bundle tar, rebuilt from its layout (each header as the sender's tar
 * had it, the manifest bytes, the signature, each blob, zero padding and trailer), so the bundle
 * arrives byte-identical. It is written while the blobs arrive: headers, manifest and signature
 * when the bundle is offered, each chunk at its place as it comes in; at the end only the blobs
 * that did not cross (already in the store, or landed in an earlier run of the service) are
 * copied from the store. (Rebuilding the whole tar from the store after the last blob read and
 * wrote the 256 MB again: ~1.5 s of an 11 s cold send here.)
 */
export class TarUnderWay {
  /** Blobs whose bytes this run wrote into the tar and the store verified. */
  private readonly whole = new Set<string>();
  private readonly starts = new Map<string, number>();

  private constructor(
    readonly path: string,
    private fh: FileHandle | undefined,
    private readonly entries: readonly TarEntry[],
  ) {
    let at = 0;
    for (const e of entries) {
      if (e.what.kind === 'blob') this.starts.set(e.what.sha256, at + BLOCK);
      at += BLOCK + e.size + padding(e.size);
    }
  }

  /**
   * Opens (creating) `path` as a tar of `size` bytes with its headers, manifest and signature in
   * place; the rest reads as zeros (padding and trailer are zeros) until the blobs are written.
   */
  static async open(path: string, o: { entries: readonly TarEntry[]; manifestBytes: Uint8Array; signature?: Uint8Array; size: number }): Promise<TarUnderWay> {
    const fh = await open(path, 'w+', 0o640); // a leftover of an earlier run is started afresh
    try {
      await fh.truncate(o.size);
      let at = 0;
      for (const e of o.entries) {
        await fh.write(e.header, 0, BLOCK, at);
        if (e.what.kind === 'manifest') await fh.write(o.manifestBytes, 0, o.manifestBytes.length, at + BLOCK);
        else if (e.what.kind === 'signature' && o.signature) await fh.write(o.signature, 0, o.signature.length, at + BLOCK);
        at += BLOCK + e.size + padding(e.size);
      }
    } catch (err) {
      await fh.close();
      throw err;
    }
    return new TarUnderWay(path, fh, o.entries);
  }

  /** Writes `data`, bytes [offset, …) of blob `sha256`, at their place in the tar. */
  async write(sha256: string, offset: number, data: Uint8Array): Promise<void> {
    const start = this.starts.get(sha256);
    if (start === undefined || !this.fh) return;
    await this.fh.write(data, 0, data.length, start + offset);
  }

  /** The blob's bytes in the tar are complete, and the store verified the same bytes. */
  markWhole(sha256: string): void {
    this.whole.add(sha256);
  }

  /**
   * Copies every blob not written whole in this run from the store, fsyncs, and links the tar in
   * as `dir/name` (never over another file; the folder fsynced), then removes its own name: as
   * dropFile would, without writing the bytes again.
   */
  async finish(cas: PeerCas, dir: string, name: string): Promise<void> {
    const fh = this.fh;
    if (!fh) throw new FarmError('RB_OUTPUT_FAILED', `${this.path} is closed`);
    for (const e of this.entries) {
      if (e.what.kind !== 'blob' || e.size === 0 || this.whole.has(e.what.sha256)) continue;
      let at = this.starts.get(e.what.sha256)!;
      for await (const piece of await cas.open(e.what.sha256)) {
        const b = piece as Buffer;
        await fh.write(b, 0, b.length, at);
        at += b.length;
      }
    }
    await fh.sync();
    await this.close();
    const final = join(dir, bundleFileName(name));
    try {
      await link(this.path, final); // fails when the name is taken: nothing waiting is replaced
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') throw new FarmError('RB_BAD_ARGUMENT', `${final} already exists: a bundle of that name is waiting`);
      if (code === 'EXDEV') {
        // the hot folders on another filesystem than the data folder: copied over, as dropFile does
        await dropFile(dir, name, this.path);
        await rm(this.path, { force: true });
        return;
      }
      if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw err;
      // a filesystem without hardlinks: check, then rename (a narrow race, only there), as dropFile does
      if (await stat(final).then(() => true, () => false)) throw new FarmError('RB_BAD_ARGUMENT', `${final} already exists: a bundle of that name is waiting`);
      await rename(this.path, final);
    }
    await syncDir(dir);
    await rm(this.path, { force: true });
  }

  async close(): Promise<void> {
    const fh = this.fh;
    this.fh = undefined;
    await fh?.close().catch(() => {});
  }

  /** Closes and removes the tar (a refused bundle). */
  async discard(): Promise<void> {
    await this.close();
    await rm(this.path, { force: true });
  }
}
