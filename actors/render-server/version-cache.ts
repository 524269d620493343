import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

/**
 * Programs' versions as `--version` told them (and Blender's engines and add-ons as its probe
 * told them), kept per program file (its path, size and modification time) in
 * `~/.cache/renderbus/versions.json`: asking Blender costs 1–3 s of a render server's start (it
 * loads all of itself), and a host starts its render server far more often than its programs
 * change. Anything wrong with the file only means asking again.
 */
export const versionCacheFile = (): string => join(homedir(), '.cache', 'renderbus', 'versions.json');

export async function cachedVersion(path: string, ask: () => Promise<string | undefined>, file = versionCacheFile()): Promise<string | undefined> {
  return cachedAnswer(path, async () => {
    const version = await ask();
    return version !== undefined ? { value: version, keep: true } : undefined;
  }, { file, valid: (v): v is string => typeof v === 'string' });
}

/**
 * cachedVersion for a richer answer (Blender's engines and add-ons: blender-probe.ts), kept under
 * the program file's key plus `salt` (what else the answer depends on). `ask` says whether its
 * answer is whole enough to keep; `valid` checks what the file holds (else: ask again).
 */
export async function cachedAnswer<T>(
  path: string,
  ask: () => Promise<{ value: T; keep: boolean } | undefined>,
  o: { file?: string; salt?: string; valid: (v: unknown) => v is T },
): Promise<T | undefined> {
  const file = o.file ?? versionCacheFile();
  const st = await stat(path).catch(() => null);
  if (!st) return (await ask())?.value;
  const key = `${path}\0${st.size}\0${st.mtimeMs}${o.salt !== undefined ? `\0${o.salt}` : ''}`;
  const cache = parsed(await readFile(file, 'utf8').catch(() => '{}'));
  const had = cache[key];
  if (o.valid(had)) return had;
  const got = await ask();
  if (got === undefined) return undefined;
  if (!got.keep) return got.value;
  // written whole then renamed: render servers starting together each leave a whole file
  const tmp = `${file}.${process.pid}.tmp`;
  await mkdir(dirname(file), { recursive: true })
    .then(() => writeFile(tmp, JSON.stringify({ ...cache, [key]: got.value })))
    .then(() => rename(tmp, file))
    .catch(() => {});
  return got.value;
}

function parsed(text: string): Record<string, unknown> {
  try {
    const v: unknown = JSON.parse(text);
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}
