import { close, constants, fstat, open, readlink, type Stats } from 'node:fs';
import { lstat, mkdir, realpath } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { promisify } from 'node:util';
import { FarmError } from '../../protocol/index.ts';

// The callback API: a raw fd, no FileHandle per file (a log is written per task, hundreds a second).
const openFd = promisify(open);
const fstatFd = promisify(fstat);
const closeFd = promisify(close);
const readlinkP = promisify(readlink);

const { O_RDONLY, O_WRONLY, O_APPEND, O_CREAT, O_NOFOLLOW, O_NONBLOCK } = constants;

/** Reading: a FIFO planted where a file should be must not hang the reader (O_NONBLOCK). */
const READ_FLAGS = O_RDONLY | O_NOFOLLOW | O_NONBLOCK;
/** Appending: created when missing; a FIFO without a reader fails (ENXIO) instead of blocking. */
const APPEND_FLAGS = O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK;

const unsafe = (message: string, cause?: unknown) => new FarmError('RB_UNSAFE_PATH', message, cause === undefined ? {} : { cause });

function notRegular(path: string, st: Stats): FarmError {
  const what = st.isDirectory() ? 'a directory' : st.isFIFO() ? 'a FIFO' : st.isSocket() ? 'a socket' : 'a device';
  return unsafe(`${path} is ${what}, not a regular file`);
}

/** The path's parts below `root` ('a/b/c.log' → ['a', 'a/b', 'a/b/c.log']), or null when it is not below root. */
function below(root: string, path: string): string[] | null {
  const rel = relative(root, path);
  if (rel === '' || rel.startsWith('..') || rel.startsWith(sep)) return null;
  const parts = rel.split(sep);
  return parts.map((_, i) => parts.slice(0, i + 1).join(sep));
}

const linkRefused = (path: string, cause?: unknown) => unsafe(`${path} is a symbolic link; the farm never follows links in an output folder`, cause);

/**
 * Refuses (RB_UNSAFE_PATH) unless `dir` is a real folder below `root`: no part of the path below
 * root is a symbolic link (lstat of each), so it cannot lead anywhere else. An artist controls
 * their output folder and could plant a link there to send the farm's writes (or reads) anywhere
 * its user can reach. Root itself may be a link: the job chose it.
 */
export async function checkRealDir(root: string, dir: string): Promise<void> {
  const parts = below(root, dir);
  if (!parts) throw unsafe(`${dir} is not inside ${root}`);
  for (const part of parts) {
    const at = join(root, part);
    const st = await lstat(at);
    if (st.isSymbolicLink()) throw linkRefused(at);
    if (!st.isDirectory()) throw unsafe(`${at} is not a folder`);
  }
}

/**
 * Makes `dir` when it is missing (with its parents) and refuses (RB_UNSAFE_PATH) unless it is a
 * real folder then: a link there is never followed, and `mkdir -p`, which goes through a link to
 * a folder without a word, is only called when nothing is there. The folders above it are the
 * caller's to check first. Says whether it was made or was there already.
 */
export async function ensureRealDir(dir: string): Promise<'made' | 'there'> {
  let st = await lstat(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    throw err;
  });
  const was = st ? 'there' : 'made';
  if (!st) {
    await mkdir(dir, { recursive: true });
    st = await lstat(dir);
  }
  if (st.isSymbolicLink()) throw linkRefused(dir);
  if (!st.isDirectory()) throw unsafe(`${dir} is not a folder`);
  return was;
}

// Real paths of output folders, for checking what was opened; looked up again on a mismatch.
const realRoots = new Map<string, string>();
const MAX_REAL_ROOTS = 1_000;

async function realRoot(root: string, fresh: boolean): Promise<string> {
  const had = realRoots.get(root);
  if (had !== undefined && !fresh) return had;
  const real = await realpath(root);
  if (realRoots.size >= MAX_REAL_ROOTS) realRoots.clear();
  realRoots.set(root, real);
  return real;
}

/**
 * Opens a file for reading without following a symbolic link at it (O_NOFOLLOW), and refuses
 * anything but a regular file (RB_UNSAFE_PATH). Other errors (ENOENT, EACCES) pass through as
 * they are. Returns the fd and the file's stats; the caller closes it.
 */
export async function openToRead(path: string): Promise<{ fd: number; stats: Stats }> {
  let fd: number;
  try {
    fd = await openFd(path, READ_FLAGS);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOOP') throw linkRefused(path, err);
    throw err;
  }
  const stats = await fstatFd(fd).catch(async (err: unknown) => {
    await closeFd(fd).catch(() => {});
    throw err;
  });
  if (!stats.isFile()) {
    await closeFd(fd).catch(() => {});
    throw notRegular(path, stats);
  }
  return { fd, stats };
}

/**
 * Opens (creating, mode 0644) a file below `root` to append to it, never through a symbolic link:
 * the folders between root and it must be real ones (checkRealDir), the file is opened with
 * O_NOFOLLOW, and what was opened is checked by its real path (/proc/self/fd), so a link swapped
 * in meanwhile is caught before a byte is written. Throws RB_UNSAFE_PATH; returns the fd.
 */
export async function openToAppend(root: string, path: string): Promise<number> {
  const parts = below(root, path);
  if (!parts) throw unsafe(`${path} is not inside ${root}`);
  if (parts.length > 1) await checkRealDir(root, join(root, parts[parts.length - 2]!));
  let fd: number;
  try {
    fd = await openFd(path, APPEND_FLAGS, 0o644);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOOP') throw linkRefused(path, err);
    throw err;
  }
  try {
    const stats = await fstatFd(fd);
    if (!stats.isFile()) throw notRegular(path, stats);
    const rel = parts[parts.length - 1]!;
    const [opened, real] = await Promise.all([readlinkP(`/proc/self/fd/${fd}`), realRoot(root, false)]);
    // a mismatch may only be the root moved (its own link re-pointed): ask again before refusing
    if (opened !== join(real, rel) && opened !== join(await realRoot(root, true), rel)) {
      throw unsafe(`${path} was opened as ${opened}, outside ${root} (a link was swapped in)`);
    }
    return fd;
  } catch (err) {
    await closeFd(fd).catch(() => {});
    throw err;
  }
}
