import { open, readFile, rm } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { FarmError, type ErrorCode } from '../protocol/index.ts';
import { pidAlive } from './farm-file.ts';

/**
 * Runs `work` holding the lock file `lock` (made exclusively, holding our pid), for the
 * read-modify-write of a small store that the CLI and a running site may both write. A lock left
 * by a dead process is taken over; one held for ~5 s by a live one is an error naming `who`
 * (e.g. "another 'renderbus site'") with `code`.
 */
export async function withFileLock<T>(lock: string, who: { code: ErrorCode; what: string }, work: () => Promise<T>): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      const fh = await open(lock, 'wx', 0o600);
      await fh.writeFile(String(process.pid));
      await fh.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = Number(await readFile(lock, 'utf8').catch(() => '0'));
      if (holder > 0 && !pidAlive(holder)) await rm(lock, { force: true });
      else if (i > 200) throw new FarmError(who.code, `${lock} is held by process ${holder}: is ${who.what} stuck?`);
      else await sleep(25);
    }
  }
  try {
    return await work();
  } finally {
    await rm(lock, { force: true });
  }
}
