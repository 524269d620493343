import { constants } from 'node:fs';
import { lstat, mkdir, open, readdir, rename, rm, rmdir, stat, statfs } from 'node:fs/promises';
import { dirname, isAbsolute, join } from 'node:path';
import { FarmError, frameFileName } from '../../protocol/index.ts';
import { ensureRealDir } from '../files/index.ts';

/**
 * Where a task's files live while it renders. The work dir sits inside the output dir, so
 * moving a finished frame to its final name is a rename on the same filesystem: a frame
 * appears under its final name whole or not at all.
 *
 *   <outputDir>/.rb-partial/<taskId>-a<attempt>[-<host>.<slot>]/    private work dir, removed after delivery
 *   <outputDir>/.rb-logs/<taskId>-a<attempt>.log    the renderer's output, kept
 */
export interface TaskPaths {
  workDir: string;
  logFile: string;
}

export const PARTIAL_DIR = '.rb-partial';
export const LOGS_DIR = '.rb-logs';

const TASK_ID = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

/**
 * A task's private paths. `holder` (`<host>.<slot>`) makes the work dir the lease's own: after a
 * scheduler restart the same attempt number can be handed out again (docs/reliability.md), and
 * two runs of it must not write into one directory.
 */
export function taskPaths(outputDir: string, taskId: string, attempt: number, holder?: string): TaskPaths {
  if (!isAbsolute(outputDir)) throw new FarmError('RB_BAD_JOB', `output directory '${outputDir}' must be an absolute path`);
  if (!TASK_ID.test(taskId) || taskId.includes('..')) {
    throw new FarmError('RB_BAD_JOB', `task id '${taskId}' cannot name a file (letters, digits, '.', '-', '_'; no '..')`);
  }
  if (!Number.isInteger(attempt) || attempt < 1) throw new FarmError('RB_BAD_JOB', `attempt ${attempt} must be a whole number from 1`);
  if (holder !== undefined && !/^[a-z0-9_-]{1,64}\.\d{1,4}$/.test(holder)) throw new FarmError('RB_BAD_JOB', `'${holder}' is not a host.slot`);
  const name = `${taskId}-a${attempt}`;
  return { workDir: join(outputDir, PARTIAL_DIR, holder ? `${name}-${holder}` : name), logFile: join(outputDir, LOGS_DIR, `${name}.log`) };
}

/**
 * A run of a task clears the work dirs other runs of it left behind: a render server killed
 * mid-frame leaves its half-written files there. Those of earlier attempts go, and those of the
 * same attempt on another slot (after a scheduler restart an attempt number can be handed out
 * again, docs/reliability.md); a run still writing into one of them was not the lease holder's,
 * so its result would be ignored anyway. Newer attempts are left alone.
 */
export async function removeOtherRuns(outputDir: string, taskId: string, attempt: number, own: string): Promise<void> {
  const partial = join(outputDir, PARTIAL_DIR);
  const names = await readdir(partial).catch(() => [] as string[]);
  const prefix = `${taskId}-a`;
  const others = names.filter((n) => {
    if (!n.startsWith(prefix) || join(partial, n) === own) return false;
    const m = /^(\d+)(?:-|$)/.exec(n.slice(prefix.length));
    return m !== null && Number(m[1]) <= attempt;
  });
  await Promise.all(others.map((n) => rm(join(partial, n), { recursive: true, force: true }).catch(() => {})));
}

/**
 * Creates the logs dir and, when the task writes into it, an empty work dir (clearing a
 * stale one left by a crash of this very attempt). Each must be a real folder inside the output
 * dir, checked before anything is made inside it: a symbolic link an artist planted at
 * `.rb-logs` or `.rb-partial` fails the task with RB_UNSAFE_PATH before anything is written
 * through it; one at the work dir's name is replaced by a real folder. On the hot path that is
 * one lstat per top folder and one mkdir.
 */
export async function prepareDirs(p: TaskPaths, outputDir: string, o: { workDir?: boolean } = {}): Promise<void> {
  const makeWork = o.workDir ?? true;
  try {
    await Promise.all([ensureRealDir(join(outputDir, LOGS_DIR)), makeWork ? ensureRealDir(join(outputDir, PARTIAL_DIR)) : null]);
    // a plain mkdir inside the checked .rb-partial makes a real folder or fails: it never goes
    // through a link at its own name. One that existed holds leftovers of an earlier run of this
    // very attempt, which must not pass for output; a link planted under its name goes too (rm
    // removes the link, not what it points to).
    if (makeWork) {
      const made = await mkdir(p.workDir).then(() => true, (err: NodeJS.ErrnoException) => {
        if (err.code === 'EEXIST') return false;
        throw err;
      });
      if (!made) {
        await rm(p.workDir, { recursive: true, force: true });
        await mkdir(p.workDir);
      }
    }
  } catch (cause) {
    if (cause instanceof FarmError) throw cause;
    throw new FarmError('RB_OUTPUT_FAILED', `cannot create the work directory ${p.workDir}: ${(cause as Error).message}`, { cause });
  }
}

export interface StoredFrame {
  frame: number;
  /** Final absolute path. */
  path: string;
  bytes: number;
}

export interface MissingFrame {
  frame: number;
  file: string;
  reason: string;
  /** The errno code of the failed call (ENOENT, ENOSPC…), when one failed. */
  errno?: string;
}

/**
 * The file-system calls that deliver a frame, in their order: the file's data is flushed to the
 * disk, the file renamed to its final name, then the directory flushed, so the rename itself is
 * on the disk. Only then does the slot report the frame done (and the scheduler journal it): a
 * power cut cannot leave a frame the farm calls done with no data. Tests inject their own.
 */
export interface DeliveryFs {
  syncFile(path: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  syncDir(path: string): Promise<void>;
}

const fsyncPath = async (path: string): Promise<void> => {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
};

/**
 * A produced frame, flushed without following a link or blocking on a fifo a renderer may have
 * made instead of a frame: those are refused afterwards (sizeFrames), with nothing to flush here.
 */
const fsyncFrame = async (path: string): Promise<void> => {
  let fh;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOOP') return;
    throw err;
  }
  try {
    if ((await fh.stat()).isFile()) await fh.sync();
  } finally {
    await fh.close();
  }
};

export const diskDeliveryFs: DeliveryFs = { syncFile: fsyncFrame, rename, syncDir: fsyncPath };

/** Errors that mean the disk (or the user's quota on it) is full: the storage's fault, not the host's. */
const DISK_FULL_ERRNOS = new Set(['ENOSPC', 'EDQUOT']);
/** How renderers print those errors (strerror). */
const DISK_FULL_TEXT = /no space left on device|disk quota exceeded/i;
/** Less free than this on the output disk and a failed frame is put down to the disk. */
export const OUTPUT_DISK_LOW_BYTES = 1024 * 1024;

/**
 * Why a failed task's output disk is to blame, or undefined when it is not: a call failed with
 * ENOSPC or EDQUOT, the renderer said so, or the disk has under OUTPUT_DISK_LOW_BYTES free (a
 * renderer's half-written file fills it to the last block). Checked before the work dir is removed.
 */
export async function outputDiskFull(
  outputDir: string,
  seen: { errnos?: readonly (string | undefined)[]; text?: string },
  free: (dir: string) => Promise<number | undefined> = freeBytes,
): Promise<string | undefined> {
  const avail = await free(outputDir);
  const said = seen.errnos?.some((e) => e !== undefined && DISK_FULL_ERRNOS.has(e)) || DISK_FULL_TEXT.test(seen.text ?? '');
  if (!said && (avail === undefined || avail >= OUTPUT_DISK_LOW_BYTES)) return undefined;
  return `no space left on the output disk (${outputDir}${avail !== undefined ? `: ${Math.floor(avail / 1024)} KB free` : ''})`;
}

/** Bytes an unprivileged process may still write on the file system holding `dir` (undefined if unknown). */
async function freeBytes(dir: string): Promise<number | undefined> {
  try {
    const s = await statfs(dir);
    return s.bavail * s.bsize;
  } catch {
    return undefined;
  }
}

/**
 * Moves each frame's file from the work dir to `<outputDir>/<frameFileName(pattern, frame)>`
 * by rename, all frames at once, each flushed to the disk before its rename and the directories
 * after (DeliveryFs). A file that is not there, or cannot be made durable, is reported, not thrown.
 */
export async function moveFrames(
  outputDir: string,
  pattern: string,
  produced: readonly { frame: number; file: string }[],
  fs: DeliveryFs = diskDeliveryFs,
): Promise<{ moved: { frame: number; path: string }[]; missing: MissingFrame[] }> {
  let moved: { frame: number; path: string }[] = [];
  const missing: MissingFrame[] = [];
  const failed = (frame: number, file: string, reason: string, cause: unknown) => {
    const errno = (cause as NodeJS.ErrnoException).code;
    missing.push({ frame, file, reason: errno !== undefined && DISK_FULL_ERRNOS.has(errno) ? `no space left on the output disk: ${reason}` : reason, ...(errno !== undefined ? { errno } : {}) });
  };
  await Promise.all(
    produced.map(async ({ frame, file }) => {
      const path = join(outputDir, frameFileName(pattern, frame));
      try {
        await fs.syncFile(file);
        await fs.rename(file, path);
        moved.push({ frame, path });
      } catch (cause) {
        const reason = (cause as NodeJS.ErrnoException).code === 'ENOENT'
          ? `the renderer exited without writing ${file}`
          : `cannot move ${file} to ${path}: ${(cause as Error).message}`;
        failed(frame, file, reason, cause);
      }
    }),
  );
  // one flush per directory, after its renames and before anything reports the frames done
  const dirs = [...new Set(moved.map((m) => dirname(m.path)))];
  const unsynced = new Set<string>();
  await Promise.all(
    dirs.map(async (dir) => {
      try {
        await fs.syncDir(dir);
      } catch (cause) {
        unsynced.add(dir);
        for (const m of moved) if (dirname(m.path) === dir) failed(m.frame, m.path, `cannot flush ${dir} to the disk: ${(cause as Error).message}`, cause);
      }
    }),
  );
  if (unsynced.size > 0) moved = moved.filter((m) => !unsynced.has(dirname(m.path)));
  moved.sort((a, b) => a.frame - b.frame);
  missing.sort((a, b) => a.frame - b.frame);
  return { moved, missing };
}

/**
 * Sizes of frames already in place; a path that is not a regular file is reported as missing. A
 * symbolic link (a renderer's `ln -s /etc/shadow {output}`) is never delivered: readers of frames
 * (thumbnails, the notifier) would read through it with the farm's rights.
 */
export async function sizeFrames(moved: readonly { frame: number; path: string }[]): Promise<{ stored: StoredFrame[]; missing: MissingFrame[] }> {
  const sized = await Promise.all(moved.map(async (m) => ({ ...m, st: await lstat(m.path).catch(() => null) })));
  const stored: StoredFrame[] = [];
  const missing: MissingFrame[] = [];
  for (const { frame, path, st } of sized) {
    if (st?.isFile()) stored.push({ frame, path, bytes: st.size });
    else if (st?.isSymbolicLink()) missing.push({ frame, file: path, reason: `${path} is a symbolic link, not a frame file (links are never delivered)` });
    else missing.push({ frame, file: path, reason: `${path} is not a regular file` });
  }
  return { stored, missing };
}

/** moveFrames, then sizeFrames. */
export async function storeFrames(
  outputDir: string,
  pattern: string,
  produced: readonly { frame: number; file: string }[],
  fs: DeliveryFs = diskDeliveryFs,
): Promise<{ stored: StoredFrame[]; missing: MissingFrame[] }> {
  const { moved, missing } = await moveFrames(outputDir, pattern, produced, fs);
  const sized = await sizeFrames(moved);
  return { stored: sized.stored, missing: [...missing, ...sized.missing].sort((a, b) => a.frame - b.frame) };
}

/** Removes a work dir: one rmdir when delivery left it empty (the usual case), else recursively. */
export async function removeWorkDir(workDir: string): Promise<void> {
  try {
    await rmdir(workDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    await rm(workDir, { recursive: true, force: true });
  }
}
