import { statfs } from 'node:fs/promises';
import type { Logger } from 'pino';

/**
 * How the site's nats-server runs: `normal`, or `full`: JetStream refuses every write
 * (max_file_store under what it holds) because the data disk is nearly full.
 */
export type StoreMode = 'normal' | 'full';

/** Free space on the data disk under which JetStream is made to refuse writes (default). */
export const DEFAULT_STORE_MIN_FREE_BYTES = 256 * 1024 * 1024;
/** Failed probes in a row after which JetStream counts as stuck. */
export const STUCK_AFTER_PROBES = 3;

/**
 * What the guard does next (pure). nats-server 2.9.10 deadlocks its JetStream for good on a
 * write error (fixed in 2.9.12: "Fix possible deadlock on dataloss"), and every client that
 * then publishes to a stream hangs with it; so it must not meet a full disk. Under the floor
 * it is restarted refusing writes (clients get "insufficient resources", which the scheduler
 * answers as RB_STORAGE_FULL); at twice the floor (not to flap) it is restarted as before. One
 * stuck anyway (the disk filled between two looks) is restarted in the mode the disk calls for.
 */
export function nextStoreMode(mode: StoreMode, freeBytes: number | undefined, minFreeBytes: number, stuck: boolean): { restart: StoreMode; why: string } | null {
  const low = freeBytes !== undefined && freeBytes < minFreeBytes;
  const back = freeBytes === undefined || freeBytes >= 2 * minFreeBytes;
  if (mode === 'normal' && low) return { restart: 'full', why: 'the data disk is nearly full' };
  if (mode === 'full' && back) return { restart: 'normal', why: 'space is back on the data disk' };
  if (stuck) return { restart: low || (mode === 'full' && !back) ? 'full' : 'normal', why: 'JetStream stopped answering' };
  return null;
}

export interface StoreGuardOptions {
  /** The JetStream store (`<data>/nats`). */
  dir: string;
  minFreeBytes: number;
  /** The mode nats-server was started in. */
  mode: StoreMode;
  log: Logger;
  /** Stops nats-server and starts it again, same port and store, in this mode. */
  restart(mode: StoreMode): Promise<void>;
  /** Whether JetStream answered an API request in time. */
  probe(): Promise<boolean>;
  everyMs?: number;
  free?: (dir: string) => Promise<number | undefined>;
}

/**
 * Watches the site's data disk and its nats-server's JetStream (`renderbus up` only: it owns
 * that nats-server). Returns the stop, which waits for a restart under way.
 */
export function guardStore(o: StoreGuardOptions): () => Promise<void> {
  const free = o.free ?? freeBytes;
  let mode = o.mode;
  let failedProbes = 0;
  let stopped = false;
  const tick = async () => {
    const bytes = await free(o.dir);
    failedProbes = (await o.probe()) ? 0 : failedProbes + 1;
    const next = nextStoreMode(mode, bytes, o.minFreeBytes, failedProbes >= STUCK_AFTER_PROBES);
    if (!next || stopped) return;
    const fields = { dir: o.dir, freeMb: bytes === undefined ? null : Math.floor(bytes / 2 ** 20), minFreeMb: Math.floor(o.minFreeBytes / 2 ** 20), mode: next.restart };
    if (next.restart === 'full') o.log.error(fields, `${next.why}: nats-server restarted refusing writes; the farm stores nothing new until space is freed`);
    else o.log.warn(fields, `${next.why}: nats-server restarted`);
    await o.restart(next.restart);
    mode = next.restart;
    failedProbes = 0;
  };
  let running: Promise<void> | null = null;
  const timer = setInterval(() => {
    if (running) return;
    running = tick()
      .catch((err: unknown) => o.log.error({ err }, 'store guard: could not restart nats-server; trying again'))
      .finally(() => (running = null));
  }, o.everyMs ?? 2_000);
  timer.unref();
  return async () => {
    stopped = true;
    clearInterval(timer);
    await running;
  };
}

/** Bytes an unprivileged process may still write on the file system holding `dir`. */
export async function freeBytes(dir: string): Promise<number | undefined> {
  try {
    const s = await statfs(dir);
    return s.bavail * s.bsize;
  } catch {
    return undefined;
  }
}
