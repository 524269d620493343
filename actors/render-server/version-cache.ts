import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

/**
 * Programs' versions as `--version` told them, kept per program file (its path, size and
 * modification time) in `~/.cache/renderbus/versions.json`: asking Blender costs 0.7 s of a
 * render server's start (it loads all of itself), and a host starts its render server far more
 * often than its programs change. Anything wrong with the file only means asking again.
 */
export const versionCacheFile = (): string => join(homedir(), '.cache', 'renderbus', 'versions.json');

export async function cachedVersion(path: string, ask: () => Promise<string | undefined>, file = versionCacheFile()): Promise<string | undefined> {
  const st = await stat(path).catch(() => null);
  if (!st) return ask();
  const key = `${path}\0${st.size}\0${st.mtimeMs}`;
  const cache = parsed(await readFile(file, 'utf8').catch(() => '{}'));
  if (typeof cache[key] === 'string') return cache[key];
  const version = await ask();
  if (version === undefined) return undefined;
  // written whole then renamed: render servers starting together each leave a whole file
  const tmp = `${file}.${process.pid}.tmp`;
  await mkdir(dirname(file), { recursive: true })
    .then(() => writeFile(tmp, JSON.stringify({ ...cache, [key]: version })))
    .then(() => rename(tmp, file))
    .catch(() => {});
  return version;
}

function parsed(text: string): Record<string, string> {
  try {
    const v: unknown = JSON.parse(text);
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, string>) : {};
  } catch {
    return {};
  }
}
