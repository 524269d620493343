import type { Logger } from 'pino';
import { ensureHotFolders, HotFolderWatcher, type HotOutcome } from '../hotfolders/index.ts';
import { routeBundle, type RouterOptions } from './router.ts';

export interface IntakeOptions extends RouterOptions {
  peers: readonly string[];
  log?: Logger;
  /** Period of the folders' backup scan (tests shorten it). */
  scanEveryMs?: number;
  onOutcome?(peer: string, outcome: HotOutcome): void;
}

export interface Intake {
  stop(): Promise<void>;
}

/**
 * A site's intake: one hot-folder watcher per peer on `incoming/<peer>/`, each bundle read,
 * verified and routed (router.ts) to the half that owns it; the watcher moves it to processed/ or
 * failed/ (with the reason). A bundle the link wrote and one copied by hand take this same path.
 */
export async function startIntake(o: IntakeOptions): Promise<Intake> {
  const watchers: HotFolderWatcher[] = [];
  try {
    for (const peer of o.peers) {
      const dirs = await ensureHotFolders(o.dataDir, peer);
      const w = new HotFolderWatcher({
        dir: dirs.incoming,
        processedDir: dirs.processed,
        failedDir: dirs.failed,
        handle: (f) => routeBundle(o, peer, f.path),
        ...(o.scanEveryMs !== undefined ? { scanEveryMs: o.scanEveryMs } : {}),
        ...(o.log ? { log: o.log.child({ peer, folder: 'incoming' }) } : {}),
        onOutcome: (out) => o.onOutcome?.(peer, out),
      });
      await w.start();
      watchers.push(w);
    }
  } catch (err) {
    for (const w of watchers) await w.stop();
    throw err;
  }
  return {
    stop: async () => {
      for (const w of watchers) await w.stop();
    },
  };
}
