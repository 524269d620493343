import { randomBytes } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';

/**
 * Writes `data` to `path` so that a reader sees the old file or the whole new one, never a part:
 * a temp file of its own beside it (`<path>.<random>.part`, made exclusively), fsync'd, then renamed
 * over `path`. The temp file is removed when the rename fails. Fsync the folder after it when the
 * rename itself must survive a power cut (sites/cas syncDir).
 */
export async function writeFileAtomically(path: string, data: string | Uint8Array, mode: number): Promise<void> {
  const part = `${path}.${randomBytes(4).toString('hex')}.part`;
  const fh = await open(part, 'wx', mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(part, path).catch(async (err: unknown) => {
    await rm(part, { force: true });
    throw err;
  });
}
