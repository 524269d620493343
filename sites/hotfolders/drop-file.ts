import { createReadStream } from 'node:fs';
import { link, open, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FarmError } from '../../protocol/index.ts';
import { syncDir, writeTo } from '../cas/index.ts';

const BUNDLE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.rbb$/;

/** A bundle file name: `<id>.rbb`, no separator, not hidden; RB_BAD_ARGUMENT otherwise. */
export function bundleFileName(name: string): string {
  if (typeof name !== 'string' || !BUNDLE_NAME.test(name)) {
    throw new FarmError('RB_BAD_ARGUMENT', `bundle file name '${String(name).slice(0, 80)}' must be <id>.rbb (A-Z, a-z, 0-9, '.', '-', '_'; not starting with '.')`);
  }
  return name;
}

/**
 * Drops a bundle into a hot folder the way every writer must: the bytes go to `<name>.part`
 * (which watchers ignore), are fsynced, and only then appear under `<name>` in one step, so a
 * watcher never sees half a bundle. A name already waiting there is refused, never replaced.
 * `source` is the bytes, a stream, or the path of a file to copy. Returns the final path.
 */
export async function dropFile(dir: string, name: string, source: Uint8Array | Readable | string): Promise<string> {
  const final = join(dir, bundleFileName(name));
  const part = `${final}.part`;
  try {
    const fh = await open(part, 'w', 0o640); // a .part left by a crashed writer is overwritten
    try {
      const input = source instanceof Uint8Array ? Readable.from([source]) : typeof source === 'string' ? createReadStream(source) : source;
      await pipeline(input, writeTo(fh));
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await link(part, final); // fails when the name is taken: nothing waiting is replaced
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') throw new FarmError('RB_BAD_ARGUMENT', `${final} already exists: a bundle of that name is waiting`);
      if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw err;
      // a filesystem without hardlinks: check, then rename (a narrow race, only there)
      if (await stat(final).then(() => true, () => false)) throw new FarmError('RB_BAD_ARGUMENT', `${final} already exists: a bundle of that name is waiting`);
      await rename(part, final);
    }
    await syncDir(dir);
    return final;
  } finally {
    await rm(part, { force: true }).catch(() => {});
  }
}
