import { FarmError } from '../errors.ts';
import { quote, type BundleManifest } from './manifest.ts';

/** Longest original path, in UTF-8 bytes (Linux PATH_MAX). */
export const MAX_BUNDLE_PATH_BYTES = 4096;

/**
 * System directories an original path may not lie under: the job's view binds its paths over the
 * system view (notes §4.8), so such a file could shadow a library or a config. `/lib*` covers
 * /lib, /lib32, /lib64, /libx32.
 */
export const SYSTEM_DIRS: readonly string[] = ['/usr', '/etc', '/proc', '/sys', '/dev', '/bin', '/sbin', '/run', '/tmp', '/var/lib/renderbus'];
const LIB_DIR = /^\/lib[^/]*(\/|$)/;

export interface PathRuleOptions {
  /**
   * The site's data directory (absolute): no input of a job bundle may lie under it (the job's
   * view binds its inputs at their original paths, notes §4.8). Results and output folders are
   * not held to it: a studio's frames may well go under its own data directory.
   */
  dataDir?: string;
}

const utf8 = new TextEncoder();
const under = (path: string, dir: string) => path === dir || path.startsWith(dir.endsWith('/') ? dir : `${dir}/`);

/** Why one original path is refused, or null when it is fine. */
export function pathProblem(path: string, o: PathRuleOptions): string | null {
  if (path.includes('\0')) return 'holds a NUL character';
  if (path.length > MAX_BUNDLE_PATH_BYTES / 3 && utf8.encode(path).length > MAX_BUNDLE_PATH_BYTES) return `is longer than ${MAX_BUNDLE_PATH_BYTES} bytes`;
  if (!path.startsWith('/')) return 'is not absolute';
  if (path === '/') return 'is the root directory';
  if (path.endsWith('/')) return 'ends with /';
  const parts = path.slice(1).split('/');
  if (parts.some((p) => p === '')) return 'is not normalised (holds //)';
  if (parts.some((p) => p === '.' || p === '..')) return 'is not normalised (holds a . or .. component)';
  const sys = SYSTEM_DIRS.find((d) => under(path, d)) ?? (LIB_DIR.test(path) ? '/lib*' : undefined);
  if (sys) return `lies under the system directory ${sys}`;
  if (o.dataDir !== undefined && under(path, o.dataDir)) return `lies under the site's data directory ${o.dataDir}`;
  return null;
}

/**
 * Every path rule of a manifest (docs/federation.md, "Bundles"): each original path valid; no
 * path twice with different hashes; no file the directory prefix of another; outputs and logs
 * are files of the bundle; outputs inside the job's output.dir; output.dir not an input path nor
 * inside one. Throws RB_BAD_BUNDLE naming the entry and the rule.
 */
export function checkBundlePaths(m: BundleManifest, o: PathRuleOptions): void {
  const bad = (msg: string) => new FarmError('RB_BAD_BUNDLE', msg);
  const seen = new Map<string, string>();
  const inputs = m.kind === 'job' ? o : {};
  for (const [i, f] of m.files.entries()) {
    const why = pathProblem(f.path, inputs);
    if (why) throw bad(`files[${i}] ${quote(f.path)} ${why}`);
    const had = seen.get(f.path);
    if (had !== undefined && had !== f.sha256) throw bad(`files[${i}] ${quote(f.path)} appears twice with different hashes`);
    seen.set(f.path, f.sha256);
  }
  // a file that is a directory of another: sorted, a prefix sits right before some path it prefixes
  const sorted = [...seen.keys()].sort();
  for (let i = 0; i + 1 < sorted.length; i++) {
    const a = sorted[i]!;
    // every path starting with `a/` sorts after `a` and before the next path not starting with it
    for (let j = i + 1; j < sorted.length && sorted[j]!.startsWith(a); j++) {
      if (sorted[j]![a.length] === '/') throw bad(`file ${quote(a)} is also a directory of ${quote(sorted[j]!)}`);
    }
  }
  for (const [field, list] of [['outputs', m.outputs], ['logs', m.logs]] as const) {
    for (const [i, p] of (list ?? []).entries()) {
      if (!seen.has(p)) throw bad(`${field}[${i}] ${quote(p)} is not one of the bundle's files`);
    }
  }
  const outDir = m.job?.output?.dir;
  if (outDir !== undefined) {
    const why = pathProblem(outDir, {});
    if (why) throw bad(`job.output.dir ${quote(outDir)} ${why}`);
    if (m.kind === 'job') {
      const input = sorted.find((p) => under(outDir, p));
      if (input) throw bad(`job.output.dir ${quote(outDir)} is ${input === outDir ? 'an input path' : `inside the input path ${quote(input)}`}`);
    }
    for (const [i, p] of (m.outputs ?? []).entries()) {
      if (!under(p, outDir) || p === outDir) throw bad(`outputs[${i}] ${quote(p)} lies outside the job's output.dir ${quote(outDir)}`);
    }
  } else if ((m.outputs ?? []).length > 0) {
    throw bad(`outputs: the bundle has outputs but its job has no output.dir to hold them`);
  }
  if (m.kind === 'job' && !m.job) throw bad('a job bundle must carry its job');
}
