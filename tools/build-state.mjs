// Whether dist/ (tools/build.mjs) is current: shared by the build and by tools/bin/renderbus.js,
// which checks it on every command (~4 ms for 230 files).
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** The folders the program is made of. */
export const SOURCES = ['protocol', 'actors', 'sites', 'tools/cli', 'tools/web', 'tools/lib', 'tools/demo'];
/** Files besides the sources that change what the build makes. */
const INPUTS = ['package.json', 'package-lock.json', 'tools/build.mjs'];
export const STAMP = 'dist/.built';

/** True when dist/ was built after the last change to any of its inputs. */
export function buildIsCurrent(root) {
  let built;
  try {
    built = statSync(join(root, STAMP)).mtimeMs;
  } catch {
    return false;
  }
  const newer = (path) => (statSync(path, { throwIfNoEntry: false })?.mtimeMs ?? 0) > built;
  if (INPUTS.some((file) => newer(join(root, file)))) return false;
  for (const dir of SOURCES) {
    for (const entry of readdirSync(join(root, dir), { recursive: true, withFileTypes: true })) {
      if (entry.isFile() && entry.name.endsWith('.ts') && newer(join(entry.parentPath ?? entry.path, entry.name))) return false;
    }
  }
  return true;
}
