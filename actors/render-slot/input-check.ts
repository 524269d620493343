import { constants, type Stats } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { delimiter, dirname, isAbsolute, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { FarmError } from '../../protocol/index.ts';

/**
 * Checks made before a renderer starts, so that a host which cannot render a task says why at
 * once, with a code the scheduler can act on, instead of a renderer failing in its own words:
 * the scene this host cannot see (RB_INPUT_NOT_FOUND: a share not mounted, a wrong path) and a
 * program it does not have (RB_RENDERER_MISSING). `where` names the host in messages.
 */

const statOf = (path: string): Promise<Stats | NodeJS.ErrnoException> => stat(path).catch((err: NodeJS.ErrnoException) => err);
const can = (path: string, mode: number): Promise<boolean> => access(path, mode).then(() => true, () => false);

// Scenes seen readable lately: tasks of a job come back to the same scene many times a second,
// and one that vanishes within this long still fails, in the renderer's words (povray.ts maps
// its "Cannot open input file" to RB_INPUT_NOT_FOUND too).
const seen = new Map<string, number>();
const SEEN_MS = 1_000;
const MAX_SEEN = 1_000;

/** Throws RB_INPUT_NOT_FOUND unless the scene file and its directory (the renderer's working directory) can be read here. */
export async function checkScene(scene: string, where: string): Promise<void> {
  const now = performance.now();
  if ((seen.get(scene) ?? -Infinity) > now - SEEN_MS) return;
  // the common case in two calls: a readable file implies a folder it can be reached through
  const quick = await statOf(scene);
  if (!(quick instanceof Error) && quick.isFile() && (await can(scene, constants.R_OK))) {
    if (seen.size >= MAX_SEEN) seen.clear();
    seen.set(scene, now);
    return;
  }
  await explainScene(scene, where);
}

/** Finds what keeps the scene from this host, and throws it (RB_INPUT_NOT_FOUND). */
async function explainScene(scene: string, where: string): Promise<void> {
  const notVisible = (why: string) => new FarmError('RB_INPUT_NOT_FOUND', `scene ${scene} is not visible on ${where}: ${why}`);
  const dir = dirname(scene);
  const d = await statOf(dir);
  if (d instanceof Error) {
    if (d.code !== 'ENOENT' && d.code !== 'ENOTDIR') throw notVisible(`its folder ${dir} cannot be reached (${d.code ?? d.message})`);
    const missing = await firstMissing(dir);
    throw notVisible(`${missing} does not exist here (a share not mounted on this host, or a wrong path?)`);
  }
  if (!d.isDirectory()) throw notVisible(`${dir} is not a folder`);
  if (!(await can(dir, constants.R_OK | constants.X_OK))) throw notVisible(`its folder ${dir} cannot be read by the render server's user`);
  const s = await statOf(scene);
  if (s instanceof Error) throw notVisible(s.code === 'ENOENT' ? `there is no such file in ${dir}` : `it cannot be reached (${s.code ?? s.message})`);
  if (s.isDirectory()) throw notVisible('it is a folder, not a scene file');
  if (!(await can(scene, constants.R_OK))) throw notVisible("it cannot be read by the render server's user");
  if (!s.isFile()) throw notVisible('it is not a regular file');
}

/** The shortest leading part of an absolute path that does not exist (`/mnt/proj` of `/mnt/proj/shot/scenes`). */
async function firstMissing(path: string): Promise<string> {
  const parts = path.split('/').filter((p) => p !== '');
  let at = '';
  for (const p of parts) {
    at = `${at}/${p}`;
    const s = await statOf(at);
    if (s instanceof Error || !s.isDirectory()) return at;
  }
  return path;
}

// Programs found before, by PATH and name: a host's programs rarely go away, and when one does
// the start itself still fails as RB_RENDERER_MISSING (process.ts). Bounded all the same.
const found = new Set<string>();
const MAX_FOUND = 1_000;

/**
 * Throws RB_RENDERER_MISSING unless `program` (argv[0] of a renderer) is an executable file:
 * a name is looked up on `path` (the renderer's PATH), a path with a `/` taken from `cwd`.
 */
export async function checkProgram(program: string, o: { cwd: string; path: string; where: string }): Promise<void> {
  // a name depends on PATH only, a path on where it runs from
  const key = program.includes('/') ? resolve(o.cwd, program) : `${o.path}\0${program}`;
  if (found.has(key)) return;
  const missing = (why: string) => new FarmError('RB_RENDERER_MISSING', `program '${program}' is not installed on ${o.where}: ${why}`);
  if (program.includes('/')) {
    const file = isAbsolute(program) ? program : resolve(o.cwd, program);
    const s = await statOf(file);
    if (s instanceof Error) throw missing(`${file} does not exist`);
    if (!s.isFile()) throw missing(`${file} is not a file`);
    if (!(await can(file, constants.X_OK))) throw missing(`${file} is not executable`);
  } else {
    const dirs = o.path.split(delimiter).filter((d) => d !== '');
    let hit = false;
    for (const dir of dirs) {
      const file = join(dir, program);
      const s = await statOf(file);
      if (!(s instanceof Error) && s.isFile() && (await can(file, constants.X_OK))) {
        hit = true;
        break;
      }
    }
    if (!hit) throw missing(`not found on PATH (${dirs.join(':')})`);
  }
  if (found.size >= MAX_FOUND) found.clear();
  found.add(key);
}

/** Forgets the scenes and programs seen (benchmarks of the cold checks). */
export function forgetChecks(): void {
  seen.clear();
  found.clear();
}
