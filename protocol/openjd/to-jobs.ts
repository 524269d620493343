import { quote } from 'shell-quote';
import { jobEnvProblems, type Requirements } from '../messages/job-spec.ts';
import { resolveFormat, resolveText, type Piece, type Scope } from './format-string.ts';
import { applyParameters, type ParamInput, type ParamValue } from './parameters.ts';
import { IDENTIFIER, isObject, Problems, shown, unknownFields, type Json } from './problems.ts';
import { rangeExprToFrames, valuesToFrames } from './range-expr.ts';

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

/** A step's embedded file, to be written before the job is submitted. */
export interface EmbeddedFileOut {
  /** Absolute path (under filesDir). */
  path: string;
  data: string;
  runnable: boolean;
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
  /** How many tasks the template itself makes of this step (frames, or chunks of them). */
  frameCount: number;
}

export interface TemplateJobs {
  name: string;
  /** In an order where every job comes after the jobs it depends on. */
  jobs: StepJob[];
}

const TOP_FIELDS = ['specificationVersion', '$schema', 'name', 'description', 'parameterDefinitions', 'jobEnvironments', 'steps', 'extensions'];
const STEP_FIELDS = ['name', 'description', 'dependencies', 'stepEnvironments', 'hostRequirements', 'parameterSpace', 'script'];
const ENV_FIELDS = ['name', 'description', 'script', 'variables'];
const TASK_PARAM_TYPES = ['INT', 'FLOAT', 'STRING', 'PATH', 'CHUNK[INT]'];
/** OpenJD's variable names (4.4.1); renderbus's own limits are checked after (jobEnvProblems). */
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,255}$/;
/** What the render slot's command adapter reads as its own tokens: such literal text cannot pass through a template. */
const TOKEN_LIKE = /\{[a-z]+(?::\d{1,2})?\}/;
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const MAX_TIME_LIMIT = 30 * 24 * 3600;
const MAX_CHUNK = 10_000;

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
    const resolved = text(t.name, 'name', jobScope, problems);
    if (resolved !== undefined && (resolved.length === 0 || resolved.length > 128 || CONTROL.test(resolved))) problems.add('name', `'${resolved.slice(0, 40)}' must be 1 to 128 printable characters once resolved`);
    name = resolved ?? '';
  }

  const envNames = new Set<string>();
  const jobEnv = environments(t.jobEnvironments, 'jobEnvironments', params, envNames, problems);

  const steps = Array.isArray(t.steps) ? t.steps : [];
  if (!Array.isArray(t.steps) || steps.length === 0) problems.add('steps', 'must be a list of at least one step');
  const stepNames = new Map<string, number>();
  steps.forEach((s, i) => {
    if (isObject(s) && typeof s.name === 'string') {
      if (stepNames.has(s.name)) problems.add(`steps[${i}].name`, `'${s.name}' is the name of steps[${stepNames.get(s.name)}] too`);
      else stepNames.set(s.name, i);
    }
  });
  const mapped = steps.map((s, i) => mapStep(s, `steps[${i}]`, { params, extensions, jobEnv, jobEnvironments: t.jobEnvironments, envNames, stepNames, jobName: name, filesDir: input.filesDir }, problems));
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

/** Param.X and RawParam.X; a PATH parameter's Param.X only where the specification offers it (scripts, environments). */
function paramScope(params: Map<string, ParamValue>, inScript: boolean): Scope {
  return (ref) => {
    const m = /^(Param|RawParam)\.([A-Za-z_][A-Za-z0-9_]*)$/.exec(ref);
    const p = m ? params.get(m[2]!) : undefined;
    if (!m || !p) return undefined;
    if (p.broken) return { refuse: '' };
    if (m[1] === 'Param' && p.type === 'PATH' && !inScript) return { refuse: `PATH parameters are available as Param only in scripts and environments; use {{RawParam.${m[2]}}} here` };
    return { text: m[1] === 'Param' ? p.value : p.raw };
  };
}

/** Session values: renderbus runs a task as one process, in no OpenJD session of its own. */
const sessionScope: Scope = (ref) => {
  if (ref === 'Session.HasPathMappingRules') return { text: 'false' }; // renderbus applies no path mapping rules
  if (ref.startsWith('Session.')) return { refuse: 'renderbus runs each task in no OpenJD session: there is no session working directory or path mapping file (write to a path given as a parameter)' };
  return undefined;
};

const scopes = (...list: Scope[]): Scope => (ref) => {
  for (const s of list) {
    const r = s(ref);
    if (r !== undefined) return r;
  }
  return undefined;
};

function text(src: unknown, path: string, scope: Scope, problems: Problems): string | undefined {
  if (typeof src !== 'string') {
    problems.add(path, `must be a string, got ${shown(src)}`);
    return undefined;
  }
  const r = resolveText(src, scope);
  if ('problem' in r) {
    problems.add(path, r.problem);
    return undefined;
  }
  return r.text;
}

/** jobEnvironments or a step's stepEnvironments: their variables, in order (a later one wins); scripts are refused. */
function environments(list: unknown, path: string, params: Map<string, ParamValue>, names: Set<string>, problems: Problems): Record<string, string> {
  const env: Record<string, string> = {};
  if (list === undefined) return env;
  if (!Array.isArray(list) || list.length === 0) {
    problems.add(path, 'must be a non-empty list of environments');
    return env;
  }
  const scope = scopes(paramScope(params, true), sessionScope);
  list.forEach((e, i) => {
    const p = `${path}[${i}]`;
    if (!isObject(e)) return problems.add(p, 'must be an object with name and variables');
    unknownFields(e, ENV_FIELDS, p, problems);
    if (typeof e.name !== 'string' || e.name.length === 0 || e.name.length > 64 || CONTROL.test(e.name)) problems.add(`${p}.name`, `${shown(e.name)} is not an environment name (1 to 64 printable characters)`);
    else if (names.has(e.name)) problems.add(`${p}.name`, `'${e.name}' names another environment of this template too`);
    else names.add(e.name);
    if (e.script !== undefined) {
      problems.add(`${p}.script`, "environment actions (onEnter/onExit) are not run by renderbus: give the environment's variables under 'variables', and do set-up work in the step's own command");
    }
    if (e.variables === undefined) {
      if (e.script === undefined) problems.add(p, "an environment needs 'variables' (or a 'script', which this farm does not run)");
      return;
    }
    if (!isObject(e.variables) || Object.keys(e.variables).length === 0) return problems.add(`${p}.variables`, 'must be a non-empty map of NAME: value');
    for (const [name, raw] of Object.entries(e.variables)) {
      const vp = `${p}.variables.${name}`;
      if (!ENV_NAME.test(name)) {
        problems.add(vp, `'${name}' is not a variable name (letters, digits and '_', not starting with a digit)`);
        continue;
      }
      if (typeof raw !== 'string') {
        problems.add(vp, `the value must be a string, got ${shown(raw)} (quote it)`);
        continue;
      }
      const value = text(raw, vp, scope, problems);
      if (value === undefined) continue;
      if (value.length > 2048) problems.add(vp, `the value is ${value.length} characters once resolved, at most 2048`);
      else env[name] = value;
    }
  });
  return env;
}

interface StepContext {
  params: Map<string, ParamValue>;
  extensions: Set<string>;
  jobEnv: Record<string, string>;
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

function mapStep(s: unknown, path: string, ctx: StepContext, problems: Problems): MappedStep | undefined {
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

  const env = { ...ctx.jobEnv, ...environments(s.stepEnvironments, `${path}.stepEnvironments`, ctx.params, ctx.envNames, problems) };
  for (const p of jobEnvProblems(env)) {
    // renderbus's own rules for a job's variables (reserved names such as PATH and LD_*, sizes)
    problems.add(p.name !== undefined ? envPath(s, ctx, p.name, path) : `${path}.stepEnvironments`, p.message);
  }
  const requirements = hostRequirements(s.hostRequirements, `${path}.hostRequirements`, ctx, problems);
  const space = parameterSpace(s.parameterSpace, `${path}.parameterSpace`, ctx, problems);
  const script = stepScript(s.script, `${path}.script`, stepName, space, ctx, problems);
  if (problems.list.length > before || !space || !script) return undefined;
  const job: Omit<StepJob, 'after'> = {
      step: stepName,
      frameCount: space.count,
      files: script.files,
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
        ...(script.files.length > 0 ? { supportFiles: script.files.map((f) => f.path) } : {}),
      },
  };
  return { deps, job };
}

/** Where a variable came from: the last environment that sets it (the step's win over the job's). */
function envPath(s: Json, ctx: StepContext, name: string, path: string): string {
  const find = (list: unknown, at: string): string | undefined => {
    if (!Array.isArray(list)) return undefined;
    for (let i = list.length - 1; i >= 0; i--) {
      const e: unknown = list[i];
      if (isObject(e) && isObject(e.variables) && name in e.variables) return `${at}[${i}].variables.${name}`;
    }
    return undefined;
  };
  return find(s.stepEnvironments, `${path}.stepEnvironments`) ?? find(ctx.jobEnvironments, 'jobEnvironments') ?? `${path}.stepEnvironments`;
}

/** The step's tasks as frames: one INT (or CHUNK[INT]) task parameter with several values; others must hold one value each. */
interface Space {
  frames: string;
  count: number;
  chunk?: number;
  taskDuration?: number;
  /** Task.Param.X / Task.RawParam.X. */
  scope: Scope;
  /** The task parameter that varies, for messages. */
  frameParam?: string;
}

function parameterSpace(ps: unknown, path: string, ctx: StepContext, problems: Problems): Space | undefined {
  if (ps === undefined) return { frames: '1', count: 1, scope: () => undefined }; // no parameter space: the step runs once
  if (!isObject(ps)) {
    problems.add(path, 'must be an object with taskParameterDefinitions');
    return undefined;
  }
  unknownFields(ps, ['taskParameterDefinitions', 'combination'], path, problems);
  const defs = ps.taskParameterDefinitions;
  if (!Array.isArray(defs) || defs.length === 0 || defs.length > 16) {
    problems.add(`${path}.taskParameterDefinitions`, 'must be a list of 1 to 16 task parameters');
    return undefined;
  }
  const scope = paramScope(ctx.params, false);
  interface TaskParam { name: string; type: string; p: string; count: number; frames?: string; constant?: string; chunk?: number; taskDuration?: number }
  const list: TaskParam[] = [];
  const names = new Set<string>();
  defs.forEach((d, i) => {
    const p = `${path}.taskParameterDefinitions[${i}]`;
    if (!isObject(d)) return problems.add(p, 'must be an object with name, type and range');
    const type = d.type;
    if (typeof type !== 'string' || !TASK_PARAM_TYPES.includes(type)) return problems.add(`${p}.type`, `${shown(type)} is not a task parameter type (${TASK_PARAM_TYPES.join(', ')})`);
    unknownFields(d, type === 'CHUNK[INT]' ? ['name', 'type', 'range', 'chunks'] : ['name', 'type', 'range'], p, problems);
    if (typeof d.name !== 'string' || !IDENTIFIER.test(d.name)) return problems.add(`${p}.name`, `${shown(d.name)} is not an identifier`);
    if (names.has(d.name)) return problems.add(`${p}.name`, `'${d.name}' is defined twice`);
    names.add(d.name);
    const tp: TaskParam = { name: d.name, type, p, count: 0 };
    const rp = `${p}.range`;
    if (type === 'INT' || type === 'CHUNK[INT]') {
      if (type === 'CHUNK[INT]' && !ctx.extensions.has('TASK_CHUNKING')) problems.add(`${p}.type`, 'CHUNK[INT] needs the TASK_CHUNKING extension: add extensions: [TASK_CHUNKING] at the top of the template');
      try {
        let r: { frames: string; count: number } | undefined;
        if (typeof d.range === 'string') {
          const expr = text(d.range, rp, scope, problems);
          if (expr !== undefined) r = rangeExprToFrames(expr);
        } else if (Array.isArray(d.range) && d.range.length > 0 && d.range.length <= 1024) {
          const values: number[] = [];
          d.range.forEach((v, j) => {
            const s = typeof v === 'number' ? String(v) : text(v, `${rp}[${j}]`, scope, problems);
            if (s === undefined) return;
            if (!/^\s*[-+]?\d+\s*$/.test(s)) return problems.add(`${rp}[${j}]`, `${shown(v)} is not an integer`);
            values.push(Number(s));
          });
          if (values.length === d.range.length) r = valuesToFrames(values);
        } else problems.add(rp, "must be a range expression such as '1-100' or '1-100:2', or a list of 1 to 1024 integers");
        if (r) Object.assign(tp, r);
      } catch (err) {
        problems.add(rp, (err as Error).message);
      }
      if (type === 'CHUNK[INT]') chunking(d.chunks, `${p}.chunks`, scope, tp, problems);
    } else {
      if (!Array.isArray(d.range) || d.range.length === 0 || d.range.length > 1024) problems.add(rp, 'must be a list of 1 to 1024 values');
      else {
        tp.count = d.range.length;
        if (d.range.length === 1) {
          const v: unknown = d.range[0];
          tp.constant = typeof v === 'number' && type === 'FLOAT' ? String(v) : text(v, `${rp}[0]`, scope, problems);
        }
      }
    }
    list.push(tp);
  });
  if (list.length !== defs.length) return undefined;
  if (list.filter((x) => x.type === 'CHUNK[INT]').length > 1) problems.add(`${path}.taskParameterDefinitions`, 'at most one task parameter may be CHUNK[INT]');
  checkCombination(ps.combination, `${path}.combination`, list, problems);

  // renderbus jobs vary by frame only: one parameter may take several values, and it must be an integer one
  const varying = list.filter((x) => x.count > 1);
  for (const x of varying.slice(1)) {
    problems.add(`${x.p}.range`, `renderbus maps one task parameter to frames (here '${varying[0]!.name}'); '${x.name}' takes ${x.count} values too, and a product or association of several parameters is not supported: give it one value, or make a step per value`);
  }
  const frameParam = varying[0] ?? list.find((x) => x.type === 'INT' || x.type === 'CHUNK[INT]');
  if (frameParam && frameParam.type !== 'INT' && frameParam.type !== 'CHUNK[INT]') {
    problems.add(`${frameParam.p}.range`, `only an INT or CHUNK[INT] task parameter can take several values here (renderbus tasks are frames); '${frameParam.name}' is ${frameParam.type}`);
    return undefined;
  }
  if (!frameParam?.frames) return frameParam ? undefined : { frames: '1', count: 1, scope: constants(list) };
  const token = frameParam.type === 'CHUNK[INT]' ? '{first}-{last}' : '{frame}';
  const rest = constants(list.filter((x) => x !== frameParam));
  return {
    frames: frameParam.frames,
    count: frameParam.count,
    ...(frameParam.chunk !== undefined ? { chunk: frameParam.chunk } : {}),
    ...(frameParam.taskDuration !== undefined ? { taskDuration: frameParam.taskDuration } : {}),
    frameParam: frameParam.name,
    scope: (ref) => (ref === `Task.Param.${frameParam.name}` || ref === `Task.RawParam.${frameParam.name}` ? { token } : rest(ref)),
  };

  function constants(ps2: TaskParam[]): Scope {
    return (ref) => {
      const m = /^Task\.(?:Raw)?Param\.([A-Za-z_][A-Za-z0-9_]*)$/.exec(ref);
      const x = m ? ps2.find((q) => q.name === m[1]) : undefined;
      if (!x) return undefined;
      return { text: x.constant ?? x.frames ?? '' }; // a one-value INT parameter's frames are that value
    };
  }
}

/** CHUNK[INT]'s `chunks`: defaultTaskCount → the job's chunk; targetRuntimeSeconds → its taskDuration. */
function chunking(c: unknown, path: string, scope: Scope, tp: { chunk?: number; taskDuration?: number }, problems: Problems): void {
  if (!isObject(c)) return problems.add(path, 'CHUNK[INT] needs chunks: { defaultTaskCount, rangeConstraint }');
  unknownFields(c, ['defaultTaskCount', 'targetRuntimeSeconds', 'rangeConstraint'], path, problems);
  const int = (key: string, min: number, max: number): number | undefined => {
    const v = c[key];
    const s = typeof v === 'number' ? String(v) : typeof v === 'string' ? text(v, `${path}.${key}`, scope, problems) : undefined;
    if (s === undefined) {
      if (typeof v !== 'string') problems.add(`${path}.${key}`, `must be an integer, got ${shown(v)}`);
      return undefined;
    }
    const n = Number(s);
    if (!/^\s*\d+\s*$/.test(s) || n < min || n > max) {
      problems.add(`${path}.${key}`, `${shown(s)} must be an integer from ${min} to ${max}`);
      return undefined;
    }
    return n;
  };
  if (c.defaultTaskCount === undefined) problems.add(`${path}.defaultTaskCount`, 'missing (required): how many values each task gets');
  else tp.chunk = int('defaultTaskCount', 1, MAX_CHUNK);
  // the scheduler resizes chunks from measured frame times toward this (renderbus's taskDuration); 0: do not adapt
  if (c.targetRuntimeSeconds !== undefined) {
    const n = int('targetRuntimeSeconds', 0, 24 * 3600);
    if (n !== undefined && n > 0) tp.taskDuration = n;
  }
  // renderbus chunks are always runs of consecutive frames (start-end): valid under either constraint
  if (c.rangeConstraint !== 'CONTIGUOUS' && c.rangeConstraint !== 'NONCONTIGUOUS') problems.add(`${path}.rangeConstraint`, `${shown(c.rangeConstraint)} must be CONTIGUOUS or NONCONTIGUOUS`);
}

/** `combination` names each parameter exactly once; an association pairs values one to one, so its members have as many values each. */
function checkCombination(combo: unknown, path: string, list: { name: string; count: number }[], problems: Problems): void {
  if (combo === undefined) return;
  if (typeof combo !== 'string' || !/^[A-Za-z0-9_ *(),]+$/.test(combo)) return problems.add(path, `${shown(combo)} is not a combination expression such as 'Frame * Layer' or '(Frame, Camera)'`);
  const used = combo.match(/[A-Za-z_][A-Za-z0-9_]*/g) ?? [];
  for (const n of used) if (!list.some((x) => x.name === n)) problems.add(path, `'${n}' is not a task parameter of this step`);
  for (const x of list) {
    const times = used.filter((n) => n === x.name).length;
    if (times !== 1) problems.add(path, `'${x.name}' must appear exactly once (it appears ${times} times)`);
  }
  for (const m of combo.matchAll(/\(([^()]*)\)/g)) {
    const counts = m[1]!.split(',').map((n) => list.find((x) => x.name === n.trim())?.count);
    if (counts.some((n) => n !== undefined && n !== counts[0])) problems.add(path, `the association '(${m[1]})' pairs parameters with different numbers of values`);
  }
}

const AMOUNTS: Record<string, keyof Requirements> = { 'amount.worker.vcpu': 'cpuCount', 'amount.worker.memory': 'ramMb' };
/** OpenJD's os.family values as the render server's probe names the OS type (protocol/profile.ts patterns). */
const OS: Record<string, string> = { linux: 'linux', macos: 'darwin', windows: 'windows/*' };
/** OpenJD's cpu.arch values as the probe names the machine family. */
const ARCH: Record<string, string> = { x86_64: 'x86_64/*', arm64: 'aarch64/*' };

/** hostRequirements → requirements: CPU count and memory minimums, one OS family, one CPU architecture; anything else is refused. */
function hostRequirements(h: unknown, path: string, ctx: StepContext, problems: Problems): Requirements | undefined {
  if (h === undefined) return undefined;
  if (!isObject(h) || (h.amounts === undefined && h.attributes === undefined)) {
    problems.add(path, 'must have amounts or attributes');
    return undefined;
  }
  unknownFields(h, ['amounts', 'attributes'], path, problems);
  const req: Requirements = {};
  if (h.amounts !== undefined) {
    if (!Array.isArray(h.amounts) || h.amounts.length === 0) problems.add(`${path}.amounts`, 'must be a non-empty list');
    else h.amounts.forEach((a, i) => {
      const p = `${path}.amounts[${i}]`;
      if (!isObject(a)) return problems.add(p, 'must be { name, min, max }');
      unknownFields(a, ['name', 'min', 'max'], p, problems);
      const key = typeof a.name === 'string' ? AMOUNTS[a.name.toLowerCase()] : undefined;
      if (!key) return problems.add(`${p}.name`, `${shown(a.name)} is not an amount this farm can require (${Object.keys(AMOUNTS).join(', ')})`);
      if (a.max !== undefined) problems.add(`${p}.max`, 'renderbus requirements are minimums only: a host with more is not kept from the task (remove max)');
      if (a.min === undefined) return a.max === undefined ? problems.add(p, 'needs min') : undefined;
      if (typeof a.min !== 'number' || !(a.min >= 0)) return problems.add(`${p}.min`, `${shown(a.min)} is not a number 0 or more`);
      (req as Record<string, number>)[key] = Math.ceil(a.min);
    });
  }
  if (h.attributes !== undefined) {
    if (!Array.isArray(h.attributes) || h.attributes.length === 0) problems.add(`${path}.attributes`, 'must be a non-empty list');
    else h.attributes.forEach((a, i) => {
      const p = `${path}.attributes[${i}]`;
      if (!isObject(a)) return problems.add(p, 'must be { name, anyOf | allOf }');
      unknownFields(a, ['name', 'anyOf', 'allOf'], p, problems);
      const attr = typeof a.name === 'string' ? a.name.toLowerCase() : '';
      const table = attr === 'attr.worker.os.family' ? OS : attr === 'attr.worker.cpu.arch' ? ARCH : undefined;
      if (!table) return problems.add(`${p}.name`, `${shown(a.name)} is not an attribute this farm can require (attr.worker.os.family, attr.worker.cpu.arch)`);
      const key = a.anyOf !== undefined ? 'anyOf' : 'allOf';
      const values = a[key];
      if ((a.anyOf === undefined) === (a.allOf === undefined)) return problems.add(p, 'needs one of anyOf or allOf');
      if (!Array.isArray(values) || values.length !== 1) return problems.add(`${p}.${key}`, `renderbus matches one ${attr === 'attr.worker.os.family' ? 'OS family' : 'CPU architecture'} per requirement: give exactly one value`);
      const v = text(values[0], `${p}.${key}[0]`, paramScope(ctx.params, false), problems)?.toLowerCase();
      if (v === undefined) return;
      const pattern = table[v];
      if (!pattern) return problems.add(`${p}.${key}[0]`, `'${v}' is not one of ${Object.keys(table).join(', ')}`);
      if (attr === 'attr.worker.os.family') req.os = pattern;
      else req.machine = pattern;
    });
  }
  return Object.keys(req).length > 0 ? req : undefined;
}

/** The step's script: its onRun action as a command template, its embedded files with their paths. */
function stepScript(sc: unknown, path: string, stepName: string, space: Space | undefined, ctx: StepContext, problems: Problems): { command: string; timeLimit?: number; files: EmbeddedFileOut[] } | undefined {
  if (!isObject(sc)) {
    problems.add(path, 'missing or not an object: a step needs script: { actions: { onRun: { command } } }');
    return undefined;
  }
  unknownFields(sc, ['actions', 'embeddedFiles'], path, problems);
  // a parameter space that was refused: its parameters' references say nothing more
  const taskScope: Scope = space?.scope ?? ((ref) => (/^Task\.(Raw)?Param\./.test(ref) ? { refuse: '' } : undefined));
  // a folder per step, named by its place (step names may hold any printable character)
  const dir = `${ctx.filesDir.replace(/\/+$/, '')}/step-${[...ctx.stepNames.keys()].indexOf(stepName) + 1}`;
  const files: EmbeddedFileOut[] = [];
  const fileOf = new Map<string, string>();
  const ef = sc.embeddedFiles;
  const efPath = `${path}.embeddedFiles`;
  if (ef !== undefined && (!Array.isArray(ef) || ef.length === 0)) problems.add(efPath, 'must be a non-empty list of files');
  const efList = Array.isArray(ef) ? ef : [];
  const filenames = new Set<string>();
  efList.forEach((f, i) => {
    const p = `${efPath}[${i}]`;
    if (!isObject(f)) return problems.add(p, 'must be { name, type: TEXT, data }');
    unknownFields(f, ['name', 'type', 'filename', 'runnable', 'data'], p, problems);
    if (typeof f.name !== 'string' || !IDENTIFIER.test(f.name)) return problems.add(`${p}.name`, `${shown(f.name)} is not an identifier`);
    if (fileOf.has(f.name)) return problems.add(`${p}.name`, `'${f.name}' names another embedded file of this step too`);
    if (f.type !== 'TEXT') problems.add(`${p}.type`, `${shown(f.type)}: the only embedded file type is TEXT`);
    const filename = f.filename ?? f.name;
    if (typeof filename !== 'string' || filename.length === 0 || filename.length > 64 || filename.includes('/') || filename === '.' || filename === '..' || CONTROL.test(filename)) {
      return problems.add(`${p}.filename`, `${shown(filename)} is not a file name (1 to 64 characters, no '/')`);
    }
    if (filenames.has(filename)) return problems.add(`${p}.filename`, `'${filename}' is the file name of another embedded file of this step`);
    filenames.add(filename);
    if (f.runnable !== undefined && typeof f.runnable !== 'boolean') problems.add(`${p}.runnable`, `must be true or false, got ${shown(f.runnable)}`);
    fileOf.set(f.name, `${dir}/${filename}`);
  });
  const fileScope: Scope = (ref) => {
    const m = /^Task\.File\.([A-Za-z_][A-Za-z0-9_]*)$/.exec(ref);
    const file = m ? fileOf.get(m[1]!) : undefined;
    return file === undefined ? undefined : { text: file };
  };
  const params = paramScope(ctx.params, true);
  // embedded files are written once, at submission: a value that differs per task cannot be in them
  const perTask: Scope = (ref) => {
    const r = taskScope(ref);
    if (r && 'token' in r) return { refuse: `differs from task to task, and embedded files are written once when the job is submitted: pass it to the command as an argument instead (args: ['{{Task.File.X}}', '{{${ref}}}'])` };
    return r;
  };
  efList.forEach((f, i) => {
    if (!isObject(f) || typeof f.name !== 'string' || !fileOf.has(f.name)) return;
    const data = text(f.data, `${efPath}[${i}].data`, scopes(params, perTask, fileScope, sessionScope), problems);
    if (data !== undefined) files.push({ path: fileOf.get(f.name)!, data, runnable: f.runnable === true });
  });

  const actions = sc.actions;
  if (!isObject(actions)) {
    problems.add(`${path}.actions`, 'missing: a step needs actions: { onRun: { command } }');
    return undefined;
  }
  unknownFields(actions, ['onRun'], `${path}.actions`, problems);
  const run = actions.onRun;
  const rp = `${path}.actions.onRun`;
  if (!isObject(run)) {
    problems.add(rp, 'missing: the command each task runs, { command, args }');
    return undefined;
  }
  unknownFields(run, ['command', 'args', 'timeout', 'cancelation'], rp, problems);
  const scope = scopes(params, taskScope, fileScope, sessionScope);
  const argv: string[] = [];
  const arg = (src: unknown, p: string): void => {
    if (typeof src !== 'string') return problems.add(p, `must be a string, got ${shown(src)}`);
    const r = resolveFormat(src, scope);
    if ('problem' in r) return problems.add(p, r.problem);
    const literal = r.pieces.find((x: Piece) => 'text' in x && TOKEN_LIKE.test(x.text));
    if (literal && 'text' in literal) {
      return problems.add(p, `'${TOKEN_LIKE.exec(literal.text)![0]}' in this text reads as a renderbus command token, which a command template cannot quote: move that text into an embedded file`);
    }
    argv.push(r.pieces.map((x) => ('token' in x ? x.token : x.text)).join(''));
  };
  if (typeof run.command !== 'string' || run.command === '') problems.add(`${rp}.command`, `must be the command to run, got ${shown(run.command)}`);
  else arg(run.command, `${rp}.command`);
  if (run.args !== undefined) {
    if (!Array.isArray(run.args)) problems.add(`${rp}.args`, 'must be a list of strings');
    else run.args.forEach((a, i) => arg(typeof a === 'number' ? String(a) : a, `${rp}.args[${i}]`));
  }
  let timeLimit: number | undefined;
  if (run.timeout !== undefined) {
    // renderbus kills a task over its timeLimit and retries it (maxAttempts): OpenJD's timeout fails the run
    if (typeof run.timeout !== 'number' || !Number.isInteger(run.timeout) || run.timeout < 1 || run.timeout > MAX_TIME_LIMIT) problems.add(`${rp}.timeout`, `must be whole seconds from 1 to ${MAX_TIME_LIMIT}, got ${shown(run.timeout)}`);
    else timeLimit = run.timeout;
  }
  if (run.cancelation !== undefined) {
    const mode = isObject(run.cancelation) ? run.cancelation.mode : undefined;
    // a render slot cancels with SIGTERM to the process group and SIGKILL 5 s later: TERMINATE's outcome
    if (mode !== 'TERMINATE') {
      problems.add(`${rp}.cancelation`, mode === 'NOTIFY_THEN_TERMINATE'
        ? "NOTIFY_THEN_TERMINATE is not offered: a render slot sends SIGTERM and then SIGKILL after 5 s, without a notify period or cancel_info.json (use mode: TERMINATE, or leave cancelation out)"
        : `${shown(run.cancelation)} is not { mode: TERMINATE }`);
    }
  }
  if (problems.list.length > 0 && argv.length === 0) return undefined;
  return { command: quote(argv), ...(timeLimit !== undefined ? { timeLimit } : {}), files };
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
