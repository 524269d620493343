import { open } from 'node:fs/promises';

/** fsyncs a directory, so a rename or a new name in it survives a power loss. */
export async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
