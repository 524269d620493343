import { jobEnvProblems, type Requirements } from '../messages/job-spec.ts';
import { envPath, environments, type EnvironmentsOut } from './environments.ts';
import { hostRequirements } from './host-requirements.ts';
import { applyParameters, type ParamInput, type ParamValue } from './parameters.ts';
import { isObject, Problems, shown, unknownFields, type Json } from './problems.ts';
import { CONTROL, paramScope, resolveField } from './scopes.ts';
import type { EmbeddedFileOut } from './embedded-files.ts';
import { stepScript } from './step-script.ts';
import { parameterSpace } from './task-space.ts';

/**
 * An Open Job Description job template (specification 2023-09) mapped onto renderbus jobs:
 * one job of the `command` renderer per step, the step's dependencies as the jobs' `after`.
 * Pure: the caller reads the template, writes the embedded files, and submits. Whatever the
 * template asks that this farm cannot do is refused naming its field, never dropped
 * (docs/renderers.md, "Open Job Description templates").
 */

export const JOB_TEMPLATE_VERSION = 'jobtemplate-2023-09';
/** Extensions this farm implements: CHUNK[INT] task parameters (OpenJD RFC 0001). */
export const SUPPORTED_EXTENSIONS = ['TASK_CHUNKING'] as const;

export interface TemplateInput extends ParamInput {
  /** Absolute folder where the steps' embedded files are written: one a render host sees at that path. */
  filesDir: string;
}


/** The renderbus job of one step (the scene and output are the submitting client's to add). */
export interface StepJob {
  step: string;
  /** Indexes (into `jobs`) of the steps that must be done before this one starts. */
  after: number[];
  spec: {
    name: string;
    renderer: 'command';
    command: string;
    frames: string;
    chunk?: number;
    taskDuration?: number;
    timeLimit?: number;
    env?: Record<string, string>;
    requirements?: Requirements;
    supportFiles?: string[];
  };
  files: EmbeddedFileOut[];
}

export interface TemplateJobs {
  name: string;
  /** In an order where every job comes after the jobs it depends on. */
  jobs: StepJob[];
}

const TOP_FIELDS = ['specificationVersion', '$schema', 'name', 'description', 'parameterDefinitions', 'jobEnvironments', 'steps', 'extensions'];
const STEP_FIELDS = ['name', 'description', 'dependencies', 'stepEnvironments', 'hostRequirements', 'parameterSpace', 'script'];

/** Maps a parsed template to jobs; throws FarmError RB_BAD_TEMPLATE listing every problem, each with its field. */
export function templateToJobs(doc: unknown, input: TemplateInput): TemplateJobs {
  const problems = new Problems();
  if (!isObject(doc)) {
    problems.add('', `a job template is an object with specificationVersion: ${JOB_TEMPLATE_VERSION}, not ${shown(doc)}`);
    problems.throwIfAny();
  }
  const t = doc as Json;
  if (t.specificationVersion !== JOB_TEMPLATE_VERSION) {
    const v = t.specificationVersion;
    problems.add('specificationVersion', v === 'environment-2023-09'
      ? 'this is an environment template; submit a job template (its environments go in jobEnvironments)'
      : `${shown(v)} is not a version this farm reads (only '${JOB_TEMPLATE_VERSION}')`);
    problems.throwIfAny();
  }
  unknownFields(t, TOP_FIELDS, '', problems);
  const extensions = checkExtensions(t.extensions, problems);
  const params = applyParameters(t.parameterDefinitions, input, problems);
  const jobScope = paramScope(params, false);

  let name = '';
  if (typeof t.name !== 'string') problems.add('name', `missing or not a string (${shown(t.name)})`);
  else {
    const resolved = resolveField(t.name, 'name', jobScope, problems);
    if (resolved !== undefined && (resolved.length === 0 || resolved.length > 128 || CONTROL.test(resolved))) problems.add('name', `'${resolved.slice(0, 40)}' must be 1 to 128 printable characters once resolved`);
    name = resolved ?? '';
  }

  const envNames = new Set<string>();
  const jobEnv = environments(t.jobEnvironments, 'jobEnvironments', params, envNames, `${input.filesDir.replace(/\/+$/, '')}/job-env`, problems);

  const steps = Array.isArray(t.steps) ? t.steps : [];
  if (!Array.isArray(t.steps) || steps.length === 0) problems.add('steps', 'must be a list of at least one step');
  const stepNames = new Map<string, number>();
  steps.forEach((s, i) => {
    if (isObject(s) && typeof s.name === 'string') {
      if (stepNames.has(s.name)) problems.add(`steps[${i}].name`, `'${s.name}' is the name of steps[${stepNames.get(s.name)}] too`);
      else stepNames.set(s.name, i);
    }
  });
  // a step's environments may not take a job environment's name; two steps may use the same one
  const mapped = steps.map((s, i) => mapStep(s, i, { params, extensions, jobEnv, jobEnvironments: t.jobEnvironments, envNames: new Set(envNames), stepNames, jobName: name, filesDir: input.filesDir }, problems));
  problems.throwIfAny();
  const ok = mapped.filter((m): m is MappedStep => m !== undefined);
  const order = dependencyOrder(ok, problems);
  problems.throwIfAny();
  const position = new Map(order.map((i, at) => [i, at]));
  return {
    name,
    jobs: order.map((i) => ({ ...ok[i]!.job, after: ok[i]!.deps.map((d) => position.get(d)!) })),
  };
}

function checkExtensions(ext: unknown, problems: Problems): Set<string> {
  const out = new Set<string>();
  if (ext === undefined) return out;
  if (!Array.isArray(ext) || ext.length === 0) {
    problems.add('extensions', 'must be a non-empty list of extension names');
    return out;
  }
  ext.forEach((e, i) => {
    if (typeof e === 'string' && (SUPPORTED_EXTENSIONS as readonly string[]).includes(e)) out.add(e);
    else problems.add(`extensions[${i}]`, `${shown(e)} is not an extension this farm implements (${SUPPORTED_EXTENSIONS.join(', ')})`);
  });
  return out;
}

interface StepContext {
  params: Map<string, ParamValue>;
  extensions: Set<string>;
  jobEnv: EnvironmentsOut;
  /** The template's jobEnvironments as written, to name where a variable came from. */
  jobEnvironments: unknown;
  envNames: Set<string>;
  stepNames: Map<string, number>;
  jobName: string;
  filesDir: string;
}

interface MappedStep {
  job: Omit<StepJob, 'after'>;
  /** Template indexes of the steps this one depends on. */
  deps: number[];
}

function mapStep(s: unknown, index: number, ctx: StepContext, problems: Problems): MappedStep | undefined {
  const path = `steps[${index}]`;
  if (!isObject(s)) {
    problems.add(path, 'must be an object with name and script');
    return undefined;
  }
  const before = problems.list.length;
  unknownFields(s, STEP_FIELDS, path, problems);
  const name = s.name;
  if (typeof name !== 'string' || name.length === 0 || name.length > 64 || CONTROL.test(name)) problems.add(`${path}.name`, `${shown(name)} is not a step name (1 to 64 printable characters)`);
  const stepName = typeof name === 'string' ? name : '';

  const deps: number[] = [];
  if (s.dependencies !== undefined) {
    if (!Array.isArray(s.dependencies) || s.dependencies.length === 0) problems.add(`${path}.dependencies`, 'must be a non-empty list of { dependsOn: STEP }');
    else {
      s.dependencies.forEach((d, i) => {
        const dp = `${path}.dependencies[${i}]`;
        if (!isObject(d)) return problems.add(dp, 'must be { dependsOn: STEP }');
        unknownFields(d, ['dependsOn'], dp, problems);
        const target = typeof d.dependsOn === 'string' ? ctx.stepNames.get(d.dependsOn) : undefined;
        if (target === undefined) return problems.add(`${dp}.dependsOn`, `${shown(d.dependsOn)} is not the name of a step of this template`);
        if (d.dependsOn === stepName) return problems.add(`${dp}.dependsOn`, 'a step cannot depend on itself');
        if (!deps.includes(target)) deps.push(target);
      });
    }
  }

  const stepEnv = environments(s.stepEnvironments, `${path}.stepEnvironments`, ctx.params, ctx.envNames, `${ctx.filesDir.replace(/\/+$/, '')}/step-${index + 1}/env`, problems);
  const env = { ...ctx.jobEnv.env, ...stepEnv.env };
  for (const p of jobEnvProblems(env)) {
    // renderbus's own rules for a job's variables (reserved names such as PATH and LD_*, sizes)
    problems.add(p.name !== undefined ? envPath(s, ctx.jobEnvironments, p.name, path) : `${path}.stepEnvironments`, p.message);
  }
  const requirements = hostRequirements(s.hostRequirements, `${path}.hostRequirements`, ctx.params, problems);
  const space = parameterSpace(s.parameterSpace, `${path}.parameterSpace`, ctx.params, ctx.extensions, problems);
  // the job's environments are entered first and exited last, around the step's own
  const script = stepScript(s.script, `${path}.script`, index, space, { ...ctx, envActions: [...ctx.jobEnv.actions, ...stepEnv.actions] }, problems);
  if (problems.list.length > before || !space || !script) return undefined;
  const files = [...ctx.jobEnv.files, ...stepEnv.files, ...script.files];
  const job: Omit<StepJob, 'after'> = {
      step: stepName,
      files,
      spec: {
        name: `${ctx.jobName} / ${stepName}`.slice(0, 200),
        renderer: 'command',
        command: script.command,
        frames: space.frames,
        ...(space.chunk !== undefined ? { chunk: space.chunk } : {}),
        ...(space.taskDuration !== undefined ? { taskDuration: space.taskDuration } : {}),
        ...(script.timeLimit !== undefined ? { timeLimit: script.timeLimit } : {}),
        ...(Object.keys(env).length > 0 ? { env } : {}),
        ...(requirements ? { requirements } : {}),
        ...(files.length > 0 ? { supportFiles: files.map((f) => f.path) } : {}),
      },
  };
  return { deps, job };
}

/** The steps in an order where each comes after those it depends on (template order among the ready); a cycle is a problem. */
function dependencyOrder(steps: MappedStep[], problems: Problems): number[] {
  const order: number[] = [];
  const placed = new Set<number>();
  while (order.length < steps.length) {
    const next = steps.findIndex((s, i) => !placed.has(i) && s.deps.every((d) => placed.has(d)));
    if (next < 0) {
      const stuck = steps.map((s, i) => i).filter((i) => !placed.has(i));
      problems.add(`steps[${stuck[0]}].dependencies`, `the steps ${stuck.map((i) => `'${steps[i]!.job.step}'`).join(', ')} depend on each other in a cycle`);
      return order;
    }
    order.push(next);
    placed.add(next);
  }
  return order;
}
