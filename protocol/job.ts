import { FarmError } from './errors.ts';
import { parseBudget } from './budget.ts';
import { countTasks, parseFrameRuns, type FrameRuns } from './frames.ts';
import { frameFileName } from './output-names.ts';
import { compileOutputPatterns, hasOutputPatterns } from './output-patterns.ts';
import { toProfile } from './profile.ts';
import type { Resolution } from './messages/common.ts';
import { BLENDER_ENGINES, DEFAULT_OUTPUT_PATTERN, DEFAULT_PRIORITY, jobEnvProblems, RENDERERS, type JobSpec, type RendererName, type Requirements } from './messages/job-spec.ts';

/** Attempts per task before its frames count as failed. */
/** The package a render server advertises when it can run the I/O wrapper (its version is bubblewrap's). */
export const SANDBOX_PACKAGE = 'sandbox';

export const DEFAULT_MAX_ATTEMPTS = 3;
/** Failed attempts of one job, all its tasks together, after which the job fails (maxTaskErrors). */
export const DEFAULT_MAX_TASK_ERRORS = 50;
/** Failed tasks of one job after which a host gets no more of that job's tasks. */
export const DEFAULT_MAX_HOST_FAILURES = 3;

/** A job description checked and expanded: what the scheduler queues. */
export interface PreparedJob {
  renderer: RendererName;
  /** The frames as runs (a million-frame range is one run, not a million numbers). */
  frames: FrameRuns;
  /** Frames per task (at most: a task holds consecutive frames only). */
  chunk: number;
  /** How many tasks the frames make in chunks. */
  taskCount: number;
  resolution: Resolution | undefined;
  priority: number;
  outputDir: string;
  outputPattern: string;
  /** Requirements plus what the renderer implies (a POV-Ray job needs `povray`). */
  requirements: Requirements;
}

const bad = (field: string, what: string) => new FarmError('RB_BAD_JOB', `${field}: ${what}`);

export function parseResolution(text: string): Resolution {
  const m = /^([1-9]\d{0,4})x([1-9]\d{0,4})$/.exec(text.trim());
  if (!m) throw bad('resolution', `'${text}' is not WIDTHxHEIGHT (e.g. 320x240)`);
  return { width: Number(m[1]), height: Number(m[2]) };
}

/** Renderer named by the job, or implied by the scene's extension. */
export function rendererFor(spec: Pick<JobSpec, 'renderer' | 'scene' | 'command'>): RendererName {
  if (spec.renderer) return spec.renderer;
  if (spec.command) return 'command';
  if (/\.pov$/i.test(spec.scene)) return 'povray';
  if (/\.blend$/i.test(spec.scene)) return 'blender';
  throw bad('renderer', `cannot tell the renderer of '${spec.scene}': name one (${RENDERERS.join(', ')})`);
}

/**
 * Checks a job description beyond its schema and expands it. Every error names the field
 * and what was expected. `scene` and `output.dir` must be absolute (clients resolve them).
 */
export function prepareJob(spec: JobSpec): PreparedJob {
  const renderer = rendererFor(spec);
  if (renderer === 'command' && !spec.command) throw bad('command', "renderer 'command' needs a command template (e.g. 'sh -c \"echo {frame} > {output}\"')");
  if (renderer !== 'command' && spec.command) throw bad('command', `a command template only goes with renderer 'command', not '${renderer}'`);
  if (!spec.scene.startsWith('/')) throw bad('scene', `'${spec.scene}' must be an absolute path`);
  const dir = spec.output?.dir;
  if (!dir) throw bad('output.dir', 'is required (where the frames land)');
  if (!dir.startsWith('/')) throw bad('output.dir', `'${dir}' must be an absolute path`);
  let frames: FrameRuns;
  try {
    frames = parseFrameRuns(spec.frames);
  } catch (err) {
    throw bad('frames', (err as Error).message);
  }
  const envProblem = spec.env ? jobEnvProblems(spec.env)[0] : undefined;
  if (envProblem) throw bad(envProblem.name ? `env.${envProblem.name}` : 'env', envProblem.message);
  if (spec.budget !== undefined) parseBudget(spec.budget); // refused by name (RB_BAD_JOB: budget: …)
  const outputPattern = spec.output?.pattern ?? DEFAULT_OUTPUT_PATTERN;
  frameFileName(outputPattern, 0); // throws on a bad pattern
  const requirements: Requirements = { ...(spec.requirements ?? {}) };
  // a POV-Ray or Blender job goes only to hosts whose probe found that program
  if (renderer !== 'command' && !(requirements.packages ?? []).some((p) => new RegExp(`^${renderer}(@|$)`, 'i').test(p))) {
    requirements.packages = [...(requirements.packages ?? []), renderer];
  }
  // a command job's output patterns: checked and compiled now, so a bad regex never reaches a slot
  if (hasOutputPatterns(spec)) {
    if (renderer !== 'command') {
      const field = spec.progress !== undefined ? 'progress' : spec.errors !== undefined ? 'errors' : 'sceneErrors';
      throw bad(field, `output patterns only go with renderer 'command', not '${renderer}' (renderbus reads ${renderer}'s output itself)`);
    }
    compileOutputPatterns(spec);
  }
  if (spec.blender && renderer !== 'blender') throw bad('blender', `Blender settings only go with renderer 'blender', not '${renderer}'`);
  // a Blender job that names its engine goes only to hosts whose Blender offers it (the probe's `engines`)
  const engine = spec.blender?.engine !== undefined ? `blender:${BLENDER_ENGINES[spec.blender.engine]}` : undefined;
  if (engine !== undefined && !(requirements.engines ?? []).includes(engine)) requirements.engines = [...(requirements.engines ?? []), engine];
  // a sandboxed job goes only to hosts whose render server can sandbox (the probe's `sandbox` package)
  if (spec.sandbox && !(requirements.packages ?? []).some((p) => /^sandbox(@|$)/i.test(p))) {
    requirements.packages = [...(requirements.packages ?? []), SANDBOX_PACKAGE];
  }
  // a task's memory is a floor on the host's RAM: smaller hosts never take it
  if (spec.memoryMb !== undefined && (requirements.ramMb ?? 0) < spec.memoryMb) requirements.ramMb = spec.memoryMb;
  toProfile(requirements); // throws RB_BAD_SPEC naming the field
  return {
    renderer,
    frames,
    chunk: Math.max(1, Math.floor(spec.chunk ?? 1)),
    taskCount: countTasks(frames, spec.chunk ?? 1),
    resolution: spec.resolution ? parseResolution(spec.resolution) : undefined,
    priority: spec.priority ?? DEFAULT_PRIORITY,
    outputDir: dir,
    outputPattern,
    requirements,
  };
}
