import { lstat } from 'node:fs/promises';
import { thumbnail, ThumbnailError, ImageProblem } from '../../actors/media/index.ts';

/**
 * Thumbnails of finished frames for the web monitor's frame grid, kept in memory: a grid of a
 * few hundred frames asks for each one again on every visit, and a 1080p frame costs ~30 ms of
 * CPU to shrink (docs/benchmarks.md). An entry is good while the file's size and mtime are the
 * same (a frame rendered again gets a new one). Oldest entries go first past `max`.
 */
export class ThumbnailCache {
  private readonly entries = new Map<string, { etag: string; data: Buffer }>();
  constructor(private readonly max = 2_000) {}

  async get(path: string, width: number): Promise<{ data: Buffer; etag: string }> {
    const s = await lstat(path).catch((cause: unknown) => {
      throw new ThumbnailError(path, ImageProblem.Missing, 'the frame file is not there (or not reachable from the monitor)', { cause });
    });
    // a link an artist planted among the frames is never followed (the read below refuses it too)
    if (s.isSymbolicLink()) throw new ThumbnailError(path, ImageProblem.NotAFile, 'is a symbolic link; the farm never follows links in an output folder');
    const etag = `"${s.size.toString(36)}-${Math.floor(s.mtimeMs).toString(36)}-${width}"`;
    const key = `${width} ${path}`;
    const had = this.entries.get(key);
    if (had && had.etag === etag) {
      this.entries.delete(key); // most recently used goes last
      this.entries.set(key, had);
      return had;
    }
    const data = await thumbnail(path, { width, height: width, format: 'jpeg', quality: 75 });
    this.entries.delete(key);
    this.entries.set(key, { etag, data });
    while (this.entries.size > this.max) this.entries.delete(this.entries.keys().next().value!);
    return { data, etag };
  }

  get size(): number {
    return this.entries.size;
  }
}
