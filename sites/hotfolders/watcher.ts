import { watch, type FSWatcher } from 'node:fs';
import { lstat, mkdir, readdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { FarmError } from '../../protocol/index.ts';
import { syncDir } from '../cas/index.ts';
import { writeFileAtomically } from '../write-atomically.ts';

/** One complete bundle, handed to the handler while it still sits in the watched folder. */
export interface HotFile {
  name: string;
  path: string;
}

/** What became of one file: moved to processed/ or failed/ (then `reason` says why), or left to retry. */
export interface HotOutcome {
  name: string;
  to: 'processed' | 'failed' | 'retry';
  /** Where the file is now. */
  path: string;
  /** The error that failed it (or that will be retried). */
  error?: FarmError;
}

export interface HotFolderOptions {
  /** The folder to watch (e.g. `incoming/<peer>/`). */
  dir: string;
  processedDir: string;
  failedDir: string;
  /** Takes one complete bundle; resolving moves it to processed/, throwing to failed/ (or a retry). */
  handle(file: HotFile): Promise<void>;
  /** Period of the scan that backs up fs.watch (inotify misses changes made by other NFS clients). */
  scanEveryMs?: number;
  /** false: the periodic scan only (for filesystems where fs.watch cannot work at all). */
  watch?: boolean;
  /** Tries of a file whose handler throws a retryable FarmError before it goes to failed/. */
  maxAttempts?: number;
  log?: Logger;
  /** Told of every file's fate, after the move. */
  onOutcome?(outcome: HotOutcome): void;
  /** Told after every scan of the folder (the proof that the watcher looked). */
  onScan?(scans: number): void;
  /** While true, a scan takes nothing (the files wait in the folder); asked at every scan. */
  paused?(): boolean;
}

export const DEFAULT_SCAN_EVERY_MS = 2_000;
export const DEFAULT_MAX_ATTEMPTS = 5;

/** A complete bundle: `*.rbb`, not hidden. `X.rbb.part` (being written) and dotfiles are not. */
export const isCompleteBundle = (name: string): boolean => name.endsWith('.rbb') && !name.startsWith('.');

/**
 * Watches one hot folder and hands each complete bundle to `handle`, one at a time, in name
 * order; then moves it to processed/ or failed/ (with `<name>.reason.txt`). fs.watch events and
 * a periodic scan only wake one serial loop, which lists the folder, handles, and moves: so a
 * file is never handed over twice by one watcher, whatever mix of events and scans found it.
 * One watcher per folder (two processes on one folder would race).
 *
 * A small class, not an xstate machine: its whole lifecycle is started → stopped, and the work
 * is a loop over a directory listing; there are no timeouts or states a machine would make
 * clearer.
 *
 * Handler failures: a retryable FarmError leaves the file in place, tried again at the next
 * scan, up to `maxAttempts`; anything else sends it to failed/ at once, with the reason. A
 * process killed while a handler runs leaves the file in the folder, so it is handled again at
 * the next start: handlers must be idempotent per bundle (intake keys on the bundle id).
 */
export class HotFolderWatcher {
  private readonly o: HotFolderOptions;
  private fsWatcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private loop: Promise<void> = Promise.resolve();
  private running = false;
  private dirty = false;
  private stopped = true;
  private scans = 0;
  private readonly attempts = new Map<string, { tries: number; notBefore: number }>();
  // files whose move failed: not handed over again by this watcher (they were handled)
  private readonly stuck = new Set<string>();

  constructor(o: HotFolderOptions) {
    this.o = o;
  }

  /** Starts watching; files already waiting are handled by the first scan. */
  async start(): Promise<void> {
    for (const d of [this.o.dir, this.o.processedDir, this.o.failedDir]) await mkdir(d, { recursive: true });
    this.stopped = false;
    if (this.o.watch !== false) {
      try {
        this.fsWatcher = watch(this.o.dir, () => this.wake());
        this.fsWatcher.on('error', (err) => this.o.log?.warn({ err, dir: this.o.dir }, 'hot folder watch failed; scanning only'));
      } catch (err) {
        this.o.log?.warn({ err, dir: this.o.dir }, 'hot folder cannot be watched; scanning only');
      }
    }
    this.timer = setInterval(() => this.wake(), this.o.scanEveryMs ?? DEFAULT_SCAN_EVERY_MS);
    this.wake();
  }

  /** Stops watching; waits for the file in hand to be handled and moved. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.fsWatcher?.close();
    this.fsWatcher = undefined;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.loop;
  }

  /** Asks for a scan now (also what fs.watch and the timer do). */
  wake(): void {
    if (this.stopped) return;
    this.dirty = true;
    if (!this.running) this.loop = this.run();
  }

  private async run(): Promise<void> {
    this.running = true;
    try {
      while (this.dirty && !this.stopped) {
        this.dirty = false;
        try {
          await this.scanOnce();
        } catch (err) {
          this.o.log?.error({ err, dir: this.o.dir }, 'hot folder scan failed');
        }
        this.scans++;
        this.o.onScan?.(this.scans);
      }
    } finally {
      this.running = false;
    }
  }

  private async scanOnce(): Promise<void> {
    if (this.o.paused?.()) return;
    const now = Date.now();
    // a file to retry waits one scan period, however often events wake the loop
    const due = (n: string) => (this.attempts.get(n)?.notBefore ?? 0) <= now;
    const names = (await readdir(this.o.dir)).filter((n) => isCompleteBundle(n) && !this.stuck.has(n) && due(n)).sort();
    for (const name of names) {
      if (this.stopped) return;
      const path = join(this.o.dir, name);
      const st = await lstat(path).catch((err: unknown) => {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined; // taken away meanwhile
        throw err;
      });
      if (!st) continue;
      if (!st.isFile()) {
        await this.fail(name, new FarmError('RB_NOT_REGULAR_FILE', `${name} is not a regular file (a symbolic link, a directory or a device): only bundle files are taken`));
        continue;
      }
      await this.handleOne(name, path);
    }
  }

  private async handleOne(name: string, path: string): Promise<void> {
    let error: FarmError | undefined;
    try {
      await this.o.handle({ name, path });
    } catch (err) {
      error = FarmError.from(err, 'RB_HANDLER_FAILED');
      this.o.log?.warn({ err, file: name }, 'hot folder handler failed');
    }
    if (!error) {
      this.attempts.delete(name);
      const to = await this.move(name, this.o.processedDir);
      if (to) this.o.onOutcome?.({ name, to: 'processed', path: to });
      return;
    }
    const tries = (this.attempts.get(name)?.tries ?? 0) + 1;
    if (error.retryable && tries < (this.o.maxAttempts ?? DEFAULT_MAX_ATTEMPTS)) {
      this.attempts.set(name, { tries, notBefore: Date.now() + (this.o.scanEveryMs ?? DEFAULT_SCAN_EVERY_MS) });
      this.o.onOutcome?.({ name, to: 'retry', path, error });
      return;
    }
    this.attempts.delete(name);
    await this.fail(name, error, tries);
  }

  private async fail(name: string, error: FarmError, tries = 1): Promise<void> {
    const dest = await this.freeName(this.o.failedDir, name);
    // the reason first: a crash between the two leaves the file to be handled again, never a file without its reason
    await writeAtomically(`${dest}.reason.txt`, reasonText(name, error, tries));
    const to = await this.move(name, this.o.failedDir, dest);
    if (to) this.o.onOutcome?.({ name, to: 'failed', path: to, error });
  }

  private async move(name: string, dir: string, chosen?: string): Promise<string | undefined> {
    const dest = chosen ?? (await this.freeName(dir, name));
    try {
      await rename(join(this.o.dir, name), dest);
      await syncDir(dir);
      await syncDir(this.o.dir);
      return dest;
    } catch (err) {
      this.stuck.add(name);
      this.o.log?.error({ err, file: name, dest }, 'hot folder file handled but could not be moved; left in place');
      return undefined;
    }
  }

  /** `<dir>/<name>`, or `<stem>.<n>.rbb` when a bundle of that name was processed before. */
  private async freeName(dir: string, name: string): Promise<string> {
    const stem = name.slice(0, -'.rbb'.length);
    for (let n = 0; ; n++) {
      const candidate = join(dir, n === 0 ? name : `${stem}.${n}.rbb`);
      const taken = await Promise.all([candidate, `${candidate}.reason.txt`].map((p) => lstat(p).then(() => true, () => false)));
      if (!taken.includes(true)) return candidate;
    }
  }
}

/** The reason file: readable by an operator, the code first for scripts (`head -1`). */
export function reasonText(name: string, error: FarmError, tries: number): string {
  const lines = [`${error.code}: ${error.message}`, `file: ${name}`, `failed at: ${new Date().toISOString()}`, `attempts: ${tries}`];
  let cause = error.cause;
  for (let depth = 0; cause !== undefined && depth < 5; depth++) {
    lines.push(`cause: ${cause instanceof Error ? cause.message : String(cause)}`);
    cause = cause instanceof Error ? cause.cause : undefined;
  }
  return `${lines.join('\n')}\n`;
}

const writeAtomically = (path: string, text: string) => writeFileAtomically(path, text, 0o640);
