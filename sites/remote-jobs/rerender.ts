import { lstat } from 'node:fs/promises';
import { FarmError, parseFrames, type BundleManifest, type JobSpec } from '../../protocol/index.ts';
import { localSpec, remoteJobPaths, treePath, type RemoteJobPaths } from './path-map.ts';
import type { RemoteJobRecord, RemoteJobRecords } from './records.ts';
import { inputsGoneReason } from './retention.ts';

/** A re-render taken: the job as it runs here, and as the studio knows it. */
export interface RerenderPlan {
  /** The peer's job whose kept tree it renders from (the first of a chain of re-renders). */
  original: RemoteJobRecord;
  /** Its paths here: its own folder (`out/`, samples), the original's `root/`. */
  paths: RemoteJobPaths;
  spec: JobSpec;
  theirSpec: JobSpec;
}

/** Refused, with the line the studio's job fails with. */
export class RerenderRefused extends Error {}

/**
 * Which kept job a re-render bundle names, and the job it becomes here (pure but for the
 * records it reads). The bundle carries no file: the kept spec of the original gives the scene,
 * support files, renderer and settings, and its tree under `<data>/fed/jobs/<peer>/<original>/
 * root/` is the sandbox's root, so the studio's files as they are now (changed, or gone) play no
 * part. From the bundle come only the frames (each a frame of the original), where they go
 * (`output.dir`), the name and the priority.
 */
export function planRerender(o: { site: string; dataDir: string; records: RemoteJobRecords; peer: string; manifest: BundleManifest }): RerenderPlan {
  const m = o.manifest;
  const theirs = m.job!;
  const refuse = (why: string) => new RerenderRefused(why);
  if (m.files.length > 0) throw refuse(`a re-render carries no files, this one carries ${m.files.length}: ${o.site} renders from the inputs it kept of ${theirs.rerenderOf}`);
  let original = o.records.get(o.peer, theirs.rerenderOf!);
  // a re-render of a re-render renders from the first job's tree
  for (let hops = 0; original?.rerenderOf !== undefined && hops < 16; hops++) original = o.records.get(o.peer, original.rerenderOf);
  if (!original) throw refuse(`${o.site} never rendered job ${theirs.rerenderOf} of ${o.peer}: no inputs of it are kept here to render again`);
  if (original.state === 'rejected') throw refuse(`${o.site} refused job ${original.originJob} (${original.reason ?? 'rejected'}): no inputs of it are kept here`);
  if (original.inputsGone) throw refuse(inputsGoneReason(original.originJob, original.inputsGone));
  const kept = original.theirSpec;
  let frames: number[];
  try {
    frames = parseFrames(theirs.frames);
  } catch (err) {
    throw refuse(`frames '${theirs.frames}': ${FarmError.from(err).message}`);
  }
  const of = new Set(parseFrames(kept.frames));
  const strangers = frames.filter((f) => !of.has(f));
  if (strangers.length > 0) throw refuse(`frame${strangers.length > 1 ? 's' : ''} ${strangers.slice(0, 10).join(', ')} ${strangers.length > 1 ? 'are' : 'is'} not of job ${original.originJob} (its frames: ${kept.frames})`);
  const theirSpec: JobSpec = {
    ...kept,
    frames: theirs.frames,
    rerenderOf: original.originJob,
    ...(theirs.name !== undefined ? { name: theirs.name } : {}),
    ...(theirs.priority !== undefined ? { priority: theirs.priority } : {}),
    output: { ...kept.output, ...(theirs.output?.dir ? { dir: theirs.output.dir } : {}) },
  };
  const paths = { ...remoteJobPaths(o.dataDir, o.peer, m.jobRef!.job), root: remoteJobPaths(o.dataDir, o.peer, original.originJob).root };
  const files = new Set([kept.scene, ...(kept.supportFiles ?? [])]);
  let spec: JobSpec;
  try {
    // `rerenderOf` names the studio's job: here the job's origin says whose it is
    const { rerenderOf: _of, ...asHere } = theirSpec;
    spec = localSpec(asHere, { peer: o.peer, paths, files });
  } catch (err) {
    const fe = FarmError.from(err);
    throw refuse(`${fe.code}: ${fe.message}`);
  }
  return { original, paths, spec, theirSpec };
}

/** Whether every input file of the kept job is still in its tree (a tree removed by hand is not kept). */
export async function treeIsWhole(plan: RerenderPlan): Promise<boolean> {
  const kept = plan.original.theirSpec;
  for (const f of [kept.scene, ...(kept.supportFiles ?? [])]) {
    const at = (() => { try { return treePath(plan.paths.root, f); } catch { return null; } })();
    if (at === null || !(await lstat(at).then((st) => st.isFile(), () => false))) return false;
  }
  return true;
}
