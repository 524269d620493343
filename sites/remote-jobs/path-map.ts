import { join, relative, sep } from 'node:path';
import { FarmError, expandRuns, parseFrameRuns, peerPrincipal, token, type JobSpec } from '../../protocol/index.ts';

/**
 * Where a peer's job lives at this site (pure; the one place the mapping between the studio's
 * paths and ours is made, so the sandbox of the next issue can bind the same tree at the
 * original paths):
 *
 *   <data>/fed/jobs/<peer>/<their job>/root/<original path>   its input files, hard links into the peer's CAS
 *   <data>/fed/jobs/<peer>/<their job>/out/                   its output.dir here (frames, .rb-logs/)
 *   <data>/fed/jobs/<peer>/<their job>/samples/               thumbnails of the sample frames
 */
export interface RemoteJobPaths {
  dir: string;
  root: string;
  out: string;
  samples: string;
}

export function remoteJobPaths(dataDir: string, peer: string, originJob: string): RemoteJobPaths {
  const dir = join(dataDir, 'fed', 'jobs', token('site', peer), token('job', originJob));
  return { dir, root: join(dir, 'root'), out: join(dir, 'out'), samples: join(dir, 'samples') };
}

/**
 * An original absolute path inside the job's tree. The bundle's path rules (protocol/bundles/
 * paths.ts) already made it absolute and normalised, so joining cannot climb out of `root`.
 */
export function treePath(root: string, original: string): string {
  if (!original.startsWith('/') || original.split('/').some((c) => c === '..' || c === '.')) {
    throw new FarmError('RB_BAD_BUNDLE', `${JSON.stringify(original)} is not an absolute, normalised path`);
  }
  return join(root, original);
}

/**
 * The studio's path of a file the job wrote here: the same place relative to its output.dir
 * (a frame `out/shot_0001.png` → `<their output.dir>/shot_0001.png`, a log `out/.rb-logs/x.log`
 * → `<their output.dir>/.rb-logs/x.log`). A file outside `out/` has no such path.
 */
export function originalOutput(p: RemoteJobPaths, theirOutDir: string, local: string): string {
  const rel = relative(p.out, local);
  if (rel === '' || rel.startsWith('..') || rel.startsWith(sep)) throw new FarmError('RB_BAD_ARGUMENT', `${local} is not inside the job's output folder ${p.out}`);
  return `${theirOutDir.replace(/\/+$/, '')}/${rel.split(sep).join('/')}`;
}

/** The studio's path of a sample thumbnail: beside its frames, in `.rb-samples/`. */
export function originalSample(theirOutDir: string, fileName: string): string {
  return `${theirOutDir.replace(/\/+$/, '')}/.rb-samples/${fileName}`;
}

/**
 * The job as this site runs it, from the spec a peer sent, or the reason it is refused. It runs
 * in the sandbox over its tree (scene and support files keep their original paths there) and
 * output.dir is `out/`; what only
 * means something at the studio is dropped (`site`, `notify`: the studio tells its own people;
 * `after`/`afterFrames`: its job ids; `limits`: its licences; `hold`: a remote job goes straight
 * into the active queue); it runs as `peer:<peer>` and renders its sample frames first.
 */
export function localSpec(spec: JobSpec, o: { peer: string; paths: RemoteJobPaths; files: ReadonlySet<string> }): JobSpec {
  const refuse = (why: string) => new FarmError('RB_BAD_JOB', why);
  // a command template runs a program of the studio's choosing on our hosts: not before jobs run in the sandbox
  if (spec.renderer === 'command' || spec.command !== undefined) throw refuse("renderer 'command' is not taken from a peer: it would run a command of the peer's choosing on this site's hosts");
  if (!o.files.has(spec.scene)) throw refuse(`its scene ${JSON.stringify(spec.scene)} is not one of the bundle's files`);
  const missing = (spec.supportFiles ?? []).filter((f) => !o.files.has(f));
  if (missing.length > 0) throw refuse(`support file ${JSON.stringify(missing[0])} is not one of the bundle's files`);
  if (!spec.output?.dir) throw refuse('it has no output.dir (where its frames go at the studio)');
  const { site: _site, notify: _notify, after: _after, afterFrames: _afterFrames, limits: _limits, hold: _hold, ...kept } = spec;
  const who = peerPrincipal(o.peer);
  for (const f of [spec.scene, ...(spec.supportFiles ?? [])]) treePath(o.paths.root, f); // each a path the tree can hold
  return {
    ...kept,
    // the renderer finds its files where the studio keeps them: the sandbox shows the job's tree
    // at the original paths (actors/render-slot/sandbox.ts), so the scene's own absolute paths work
    scene: spec.scene,
    ...(spec.supportFiles ? { supportFiles: spec.supportFiles } : {}),
    sandbox: { root: o.paths.root },
    output: { ...spec.output, dir: o.paths.out },
    user: who,
    group: who,
    project: who,
    previewFirst: true,
  };
}

/** The frames whose thumbnails go back while the job renders: its first, last and middle (previewFirst renders them first). */
export function sampleFrames(frames: string): number[] {
  const all = expandRuns(parseFrameRuns(frames));
  if (all.length === 0) return [];
  return [...new Set([all[0]!, all[all.length - 1]!, all[Math.floor((all.length - 1) / 2)]!])];
}
