import type { Logger } from 'pino';
import { ensureHotFolders, HotFolderWatcher, type HotOutcome } from '../hotfolders/index.ts';
import { routeBundle, type RouterOptions } from './router.ts';

export interface IntakeOptions extends RouterOptions {
  peers: readonly string[];
  log?: Logger;
  /** Period of the folders' backup scan (tests shorten it). */
  scanEveryMs?: number;
  onOutcome?(peer: string, outcome: HotOutcome): void;
  /** Told after every look at a peer's folder, held or not (the proof that the intake looked). */
  onScan?(peer: string, scans: number): void;
  /** Why a peer's bundles are held now (holdReason), or undefined: asked at every scan of its folder. */
  held?(peer: string): string | undefined;
}

export interface Intake {
  stop(): Promise<void>;
}

/**
 * A site's intake: one hot-folder watcher per peer on `incoming/<peer>/`, each bundle read,
 * verified and routed (router.ts) to the half that owns it; the watcher moves it to processed/ or
 * failed/ (with the reason). A bundle the link wrote and one copied by hand take this same path.
 * A held peer's bundles (quarantined, or its key not known yet: `held`) wait in incoming/.
 */
export async function startIntake(o: IntakeOptions): Promise<Intake> {
  const watchers: HotFolderWatcher[] = [];
  try {
    for (const peer of o.peers) {
      const dirs = await ensureHotFolders(o.dataDir, peer);
      let holding: string | undefined;
      // a held peer's bundles stay in incoming/ untouched; the first scan after the hold ends takes them
      const paused = () => {
        const why = o.held?.(peer);
        if (why !== holding) o.log?.[why ? 'warn' : 'info']({ peer, ...(why ? { why } : {}) }, why ? 'intake holds the peer\'s bundles' : 'intake takes the peer\'s bundles again');
        holding = why;
        return why !== undefined;
      };
      const w = new HotFolderWatcher({
        dir: dirs.incoming,
        processedDir: dirs.processed,
        failedDir: dirs.failed,
        handle: (f) => routeBundle(o, peer, f.path),
        ...(o.scanEveryMs !== undefined ? { scanEveryMs: o.scanEveryMs } : {}),
        ...(o.log ? { log: o.log.child({ peer, folder: 'incoming' }) } : {}),
        onOutcome: (out) => o.onOutcome?.(peer, out),
        paused,
        onScan: (n) => o.onScan?.(peer, n),
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
