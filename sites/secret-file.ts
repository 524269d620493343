import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { FarmError } from '../protocol/errors.ts';

/** A new random secret: 32 bytes, base64url (43 characters, safe in a URL fragment and a header). */
export function newSecret(): string {
  return randomBytes(32).toString('base64url');
}

/**
 * The secret kept in `path` (the monitor's token, the webhook secret), made on first use: only
 * the farm's user reads it (mode 0600; a looser file is tightened). The same file serves every
 * restart, so links and receivers keep working; delete it to get a new one.
 */
export async function loadOrCreateSecret(path: string): Promise<string> {
  try {
    await writeFile(path, `${newSecret()}\n`, { flag: 'wx', mode: 0o600 });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      await mkdir(dirname(path), { recursive: true, mode: 0o700 });
      return loadOrCreateSecret(path);
    }
    if (code !== 'EEXIST') throw new FarmError('RB_BAD_ARGUMENT', `cannot write ${path}: ${(err as Error).message}`, { cause: err });
  }
  if (((await stat(path)).mode & 0o077) !== 0) await chmod(path, 0o600);
  const secret = (await readFile(path, 'utf8')).trim();
  if (secret === '') throw new FarmError('RB_BAD_ARGUMENT', `${path} is empty: delete it and a new secret is made`);
  return secret;
}
