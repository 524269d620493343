import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { FarmError, type QuoteFile } from '../../protocol/index.ts';

/** Files whose hashes are kept between quotes (a studio quotes the same textures job after job). */
const KEEP = 10_000;

/**
 * The job's files as {sha256, size}, for a quote: each file hashed once while its size and mtime
 * stay the same (the packer hashes them again when it writes the bundle, so a file changed
 * between the quote and the send is still sent right). A file that cannot be read is refused by
 * name (RB_INPUT_NOT_FOUND): the job could not be sent either.
 */
export class FileHashes {
  private readonly known = new Map<string, { size: number; mtimeMs: number; sha256: string }>();

  async of(paths: readonly string[]): Promise<QuoteFile[]> {
    const out: QuoteFile[] = [];
    for (const path of [...new Set(paths)]) out.push(await this.one(path));
    return out;
  }

  private async one(path: string): Promise<QuoteFile> {
    let st;
    try {
      st = await stat(path);
    } catch (cause) {
      throw new FarmError('RB_INPUT_NOT_FOUND', `${path}: ${(cause as NodeJS.ErrnoException).code ?? 'cannot be read'}`, { cause });
    }
    if (!st.isFile()) throw new FarmError('RB_INPUT_NOT_FOUND', `${path} is not a file`);
    const had = this.known.get(path);
    if (had && had.size === st.size && had.mtimeMs === st.mtimeMs) return { sha256: had.sha256, size: had.size };
    const h = createHash('sha256');
    for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
    const sha256 = h.digest('hex');
    if (this.known.size >= KEEP) this.known.delete(this.known.keys().next().value!);
    this.known.set(path, { size: st.size, mtimeMs: st.mtimeMs, sha256 });
    return { sha256, size: st.size };
  }
}
