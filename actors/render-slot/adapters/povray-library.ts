import { existsSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, extname, isAbsolute, join, resolve } from 'node:path';

/**
 * Where POV-Ray 3.7 (Unix) looks for `#include` files: its `Library_Path`, read from the first
 * povray.ini it finds, in POV-Ray's own order: `$POVINI`, `./povray.ini` (the working directory,
 * which is the scene's), `~/.povray/3.7/povray.ini`, `/etc/povray/3.7/povray.ini`. The first one
 * found is the only one read (checked with POV-Ray 3.7.0.10: a user's povray.ini, or POVINI,
 * hides the system's). A renderer's POVINI and HOME are its own (renderer-env.ts): a job may set
 * POVINI, never the render server's.
 */

/** The include files POV-Ray 3.7 ships (Debian: package povray-includes). */
export const POVRAY_STANDARD_INCLUDES: ReadonlySet<string> = new Set(
  ('arrays chars colors consts debug finish functions glass glass_old golds ior logo makegrass math meshmaker ' +
    'metals rad_def rand screen shapes shapes2 shapes3 shapes_old shapesq skies stage1 stars stdcam stdinc ' +
    'stoneold stones stones1 stones2 strings sunpos textures transforms woodmaps woods')
    .split(' ')
    .map((n) => `${n}.inc`),
);

/** The file that tells the standard includes are there. */
export const POVRAY_MARKER_INCLUDE = 'colors.inc';

export interface PovrayLibrary {
  /** The povray.ini read, or null when there is none. */
  ini: string | null;
  /** Library_Path entries, in order, as absolute paths (whether they exist or not). */
  dirs: string[];
  /** The directory of that path holding the standard includes (colors.inc), or null when none does. */
  includes: string | null;
}

export interface LibraryOptions {
  /** The working directory POV-Ray runs in (the scene's); its povray.ini comes first. */
  cwd?: string;
  /** The renderer's HOME (default this process's). */
  home?: string;
  /** The renderer's POVINI, when it has one: that file comes first. */
  povini?: string;
  /** Where /etc is (tests). */
  root?: string;
}

/** POV-Ray's include path as it will see it, read from its povray.ini (reads a few small files). */
export function povrayLibrary(o: LibraryOptions = {}): PovrayLibrary {
  const candidates = [
    ...(o.povini !== undefined && o.povini !== '' ? [resolve(o.cwd ?? '/', o.povini)] : []),
    ...(o.cwd !== undefined ? [join(o.cwd, 'povray.ini')] : []),
    join(o.home ?? process.env.HOME ?? homedir(), '.povray', '3.7', 'povray.ini'),
    join(o.root ?? '/', 'etc', 'povray', '3.7', 'povray.ini'),
  ];
  for (const ini of candidates) {
    let text: string;
    try {
      text = readFileSync(ini, 'utf8');
    } catch {
      continue;
    }
    const dirs = parseLibraryPath(text, dirname(ini));
    return { ini, dirs, includes: dirs.find((d) => isFile(join(d, POVRAY_MARKER_INCLUDE))) ?? null };
  }
  return { ini: null, dirs: [], includes: null };
}

/**
 * The `Library_Path=` entries (also `+L`/`-L` switches) of a povray.ini before its first
 * `[section]`, in order. Values may be quoted; `;` starts a comment; a relative path is taken
 * from the ini's directory.
 */
export function parseLibraryPath(text: string, iniDir: string): string[] {
  const out: string[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/^\s+/, '');
    if (line.startsWith('[')) break; // a [section] applies only when a render names it
    if (line === '' || line.startsWith(';')) continue;
    const m = /^library_path\s*=\s*(.*)$/i.exec(line) ?? /^[+-]L(.*)$/.exec(line);
    if (!m) continue;
    let value = m[1]!.trim();
    if (value.startsWith('"')) value = value.slice(1, value.indexOf('"', 1) < 0 ? undefined : value.indexOf('"', 1));
    else value = value.replace(/\s*;.*$/, '');
    if (value === '') continue;
    const dir = isAbsolute(value) ? value : resolve(iniDir, value);
    if (!out.includes(dir)) out.push(dir);
  }
  return out;
}

/** `colors` → `colors.inc`: POV-Ray tries the name with `.inc` appended. */
export function includeFileName(name: string): string {
  return extname(name) === '' ? `${name}.inc` : name;
}

/** Whether `name` (as the scene wrote it) is one of POV-Ray's standard includes and none of `dirs` holds it. */
export function standardIncludeMissing(name: string, dirs: readonly string[]): boolean {
  const file = includeFileName(name);
  if (!POVRAY_STANDARD_INCLUDES.has(file)) return false;
  return !dirs.some((d) => existsSync(join(d, file)));
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}
