import { constants, type Stats } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { delimiter, dirname, isAbsolute, join, resolve } from 'node:path';
import { FarmError } from '../../protocol/index.ts';

/**
 * Checks made before a renderer starts, so that a host which cannot render a task says why at
 * once, with a code the scheduler can act on, instead of a renderer failing in its own words:
 * the scene this host cannot see (RB_INPUT_NOT_FOUND: a share not mounted, a wrong path) and a
 * program it does not have (RB_RENDERER_MISSING). `where` names the host in messages.
 */

const statOf = (path: string): Promise<Stats | NodeJS.ErrnoException> => stat(path).catch((err: NodeJS.ErrnoException) => err);
const can = (path: string, mode: number): Promise<boolean> => access(path, mode).then(() => true, () => false);

/** Throws RB_INPUT_NOT_FOUND unless the scene file and its directory (the renderer's working directory) can be read here. */
export async function checkScene(scene: string, where: string): Promise<void> {
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
  const key = `${o.path}\0${o.cwd}\0${program}`;
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
