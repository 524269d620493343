import { chmod, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { peerName } from '../cas/index.ts';

/** The four folders of one peer under `<data>/hotfolders/`. */
export interface HotFolderDirs {
  /** Bundles for the peer: drop `X.rbb` here (written `X.rbb.part`, then renamed). */
  outgoing: string;
  /** Bundles that came from the peer (by the link, FTP, USB or by hand): intake takes them. */
  incoming: string;
  /** Where a bundle goes once its handler succeeded. */
  processed: string;
  /** Where a bundle goes when its handler failed, beside `<name>.reason.txt`. */
  failed: string;
}

/** Drop folders: the service and its group (operators copying by hand) write; others see nothing. */
export const DROP_MODE = 0o770;
/** Result folders: only the service moves files in; its group reads them. */
export const RESULT_MODE = 0o750;

export function hotFolderDirs(dataDir: string, peer: string): HotFolderDirs {
  const p = peerName(peer);
  const root = join(dataDir, 'hotfolders');
  return {
    outgoing: join(root, 'outgoing', p),
    incoming: join(root, 'incoming', p),
    processed: join(root, 'processed', p),
    failed: join(root, 'failed', p),
  };
}

/** Creates the peer's folders (and their parents) and sets their modes, whatever the umask. */
export async function ensureHotFolders(dataDir: string, peer: string): Promise<HotFolderDirs> {
  const dirs = hotFolderDirs(dataDir, peer);
  const root = join(dataDir, 'hotfolders');
  await mkdir(root, { recursive: true });
  await chmod(root, RESULT_MODE);
  for (const [kind, dir] of Object.entries(dirs)) {
    const mode = kind === 'outgoing' || kind === 'incoming' ? DROP_MODE : RESULT_MODE;
    const parent = join(root, kind);
    await mkdir(parent, { recursive: true });
    await chmod(parent, mode);
    await mkdir(dir, { recursive: true });
    await chmod(dir, mode);
  }
  return dirs;
}
