import { readFileSync, statSync } from 'node:fs';
import { basename, dirname, extname, relative, resolve } from 'node:path';
import { TypeCompiler, ValueErrorType, type ValueError } from '@sinclair/typebox/compiler';
import {
  DEFAULT_OUTPUT_PATTERN, DEFAULT_PRIORITY, JobSpec, NOTIFY_TRIGGERS, jobEnvProblems, NotifySettings, NotifyUrls, RENDERERS, codecs, compileOutputPatterns, hasOutputPatterns, notifyPlan, parseFrames, parsePattern, toProfile,
  type JobNotify, type OutputPatternSpec,
} from '../../protocol/index.ts';
import { UsageError } from './cli-error.ts';

/** `renderbus submit` flags as commander hands them over: raw text, checked here. */
export interface SubmitFlags {
  frames?: string;
  renderer?: string;
  command?: string;
  resolution?: string;
  priority?: string;
  require?: string[];
  license?: string[];
  chunk?: string;
  output?: string;
  pattern?: string;
  name?: string;
  user?: string;
  group?: string;
  notify?: string[];
  notifyUrl?: string[];
  notifyEmail?: string[];
  notifyEvery?: string;
  /** Comma-separated: done,failed,cancelled,progress. */
  notifyOn?: string;
  after?: string[];
  afterFrames?: string[];
  limit?: string[];
  project?: string;
  /** The job's `site` (`--site` is the farm's own site name, a global flag). */
  outsource?: string;
  /** The job's `budget` ("12.50 EUR"). */
  budget?: string;
  memory?: string;
  taskDuration?: string;
  /** NAME=VALUE, repeatable: the job's own environment variables. */
  env?: string[];
  /** NAME=VALUE, repeatable: an Open Job Description template's job parameters. */
  param?: string[];
}

export interface JobInput {
  /** Positional arguments: `[JOBFILE.json] [SCENE]` or `SCENE`. */
  args: string[];
  flags: SubmitFlags;
  /** Where relative paths on the command line start. */
  cwd: string;
  /** Fills what neither the job file nor the flags say. */
  /** `user` absent: the scheduler takes the user from the submitting credential. */
  defaults: { user?: string; group: string; outputRoot: string };
  /** The id the job will get (chosen by the client: names the default output folder). */
  jobId: string;
}

export interface BuiltJob {
  spec: JobSpec;
  frames: number[];
  /** The job file the spec came from, as given on the command line. */
  jobFile?: string;
}

const compiled = TypeCompiler.Compile(JobSpec);
const compiledNotifyUrls = TypeCompiler.Compile(NotifyUrls);
const compiledNotifySettings = TypeCompiler.Compile(NotifySettings);

/** The field each flag fills (`--require` fills requirements.packages), so an error names what the user typed. */
const FLAG_PATHS: ReadonlyArray<[keyof SubmitFlags, string]> = [
  ['frames', '/frames'],
  ['renderer', '/renderer'],
  ['command', '/command'],
  ['resolution', '/resolution'],
  ['priority', '/priority'],
  ['require', '/requirements/packages'],
  ['license', '/requirements/licenses'],
  ['chunk', '/chunk'],
  ['output', '/output/dir'],
  ['pattern', '/output/pattern'],
  ['name', '/name'],
  ['user', '/user'],
  ['group', '/group'],
  ['notify', '/notify'],
  ['notifyUrl', '/notify/webhooks'],
  ['notifyEmail', '/notify/email'],
  ['notifyEvery', '/notify/everyPercent'],
  ['notifyOn', '/notify/on'],
  ['after', '/after'],
  ['afterFrames', '/afterFrames'],
  ['limit', '/limits'],
  ['project', '/project'],
  ['outsource', '/site'],
  ['budget', '/budget'],
  ['memory', '/memoryMb'],
  ['taskDuration', '/taskDuration'],
  ['env', '/env'],
];

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * Builds and validates a job description from a job file and/or flags (flags override the
 * file's fields). Every problem found is reported at once, each naming the field where the
 * user wrote it (`--frames: ...`, `job file shot.json: /priority: ...`). Relative paths are
 * resolved against the job file's folder (fields of the file) or `cwd` (flags). Throws
 * UsageError.
 */
export function buildJob(input: JobInput): BuiltJob {
  const { jobFile, sceneArg } = splitArgs(input.args);
  const raw: Json = jobFile ? readJobFile(resolve(input.cwd, jobFile), jobFile) : {};
  const fileDir = jobFile ? dirname(resolve(input.cwd, jobFile)) : input.cwd;

  // Paths in a job file are relative to the file, so it can travel with its scene.
  if (typeof raw.scene === 'string') raw.scene = resolve(fileDir, raw.scene);
  if (isObject(raw.output) && typeof raw.output.dir === 'string') raw.output = { ...raw.output, dir: resolve(fileDir, raw.output.dir) };
  if (Array.isArray(raw.supportFiles)) raw.supportFiles = raw.supportFiles.map((f) => (typeof f === 'string' ? resolve(fileDir, f) : f));
  if (input.flags.param !== undefined && input.flags.param.length > 0) {
    throw new UsageError('--param: only an Open Job Description template (a .yaml file, or JSON with specificationVersion) takes job parameters');
  }
  return buildJobFrom(raw, input, jobFile ? { source: `job file ${jobFile}`, jobFile } : {}, sceneArg);
}

/**
 * buildJob for a job description already in hand (an Open Job Description step's job: its paths
 * absolute), with the flags applied over it. `source` prefixes the field in its messages.
 */
export function buildJobFrom(raw: Json, input: Omit<JobInput, 'args'>, from: { source?: string; jobFile?: string }, sceneArg?: string): BuiltJob {
  const jobFile = from.jobFile;
  const fromFlag = new Map<string, string>(); // JSON path → label
  const problems: string[] = [];

  if (sceneArg !== undefined) {
    raw.scene = resolve(input.cwd, sceneArg);
    fromFlag.set('/scene', 'scene');
  }
  applyFlags(raw, input, fromFlag, problems);

  const label = (path: string): string => {
    let best: [string, string] | undefined;
    for (const [p, l] of fromFlag) if ((path === p || path.startsWith(`${p}/`)) && (!best || p.length > best[0].length)) best = [p, l];
    if (best) return best[1]; // the message itself quotes the value when it is one of several
    return from.source ? `${from.source}: ${path}` : path.slice(1);
  };

  // Missing essentials get a sentence saying how to give them.
  if (raw.scene === undefined) {
    problems.push(`scene: missing: give the scene file${jobFile ? ` after ${jobFile}, or "scene" in the job file` : ' as an argument'}`);
  }
  if (raw.frames === undefined) {
    problems.push(`frames: missing: give --frames (e.g. 1-24, 1-100x5, 1,5,10-12)${jobFile ? ' or "frames" in the job file' : ''}`);
  }

  applyDefaults(raw, input, problems);

  const seen = new Set<string>();
  for (const e of compiled.Errors(raw)) {
    if ([...seen].some((p) => e.path === p || e.path.startsWith(`${p}/`))) continue; // one message per field
    seen.add(e.path);
    if (e.type === ValueErrorType.ObjectRequiredProperty && (e.path === '/scene' || e.path === '/frames')) continue; // said above
    if (e.path === '/notify') continue; // either of two forms: said below, by the form it has
    if (e.path === '/env' || e.path.startsWith('/env/')) continue; // said below, by variable name
    problems.push(`${label(e.path)}: ${explain(e)}`);
  }
  checkNotifyField(raw.notify, label, problems);
  checkEnvField(raw.env, label, problems);
  const typed = (path: string) => ![...seen].some((p) => path === p || path.startsWith(`${p}/`));

  if (typeof raw.frames === 'string' && typed('/frames')) {
    try {
      parseFrames(raw.frames);
    } catch (err) {
      problems.push(`${label('/frames')}: ${(err as Error).message}`);
    }
  }
  checkRequirements(raw.requirements, label, typed, problems);
  checkRenderer(raw, label, typed, problems);
  checkFiles(raw, input.cwd, label, typed, problems);

  if (problems.length === 1) throw new UsageError(problems[0]!);
  if (problems.length > 1) throw new UsageError(`the job has ${problems.length} problems:\n  ${problems.join('\n  ')}`);

  try {
    const spec = codecs.jobSpec.check(raw);
    toProfile(spec.requirements);
    return { spec, frames: parseFrames(spec.frames), ...(jobFile ? { jobFile } : {}) };
  } catch (err) {
    // the checks above should have said it; never let an invalid spec through regardless
    throw new UsageError(`invalid job: ${(err as Error).message}`, { cause: err });
  }
}

function splitArgs(args: string[]): { jobFile?: string; sceneArg?: string } {
  const [first, second, ...rest] = args;
  if (first === undefined) {
    throw new UsageError("give a scene or a job file: 'renderbus submit scene.pov --frames 1-24' or 'renderbus submit job.json'");
  }
  if (rest.length > 0) throw new UsageError(`too many arguments: ${args.map((a) => `'${a}'`).join(' ')} (give [JOBFILE.json] [SCENE])`);
  if (first.toLowerCase().endsWith('.json')) return second === undefined ? { jobFile: first } : { jobFile: first, sceneArg: second };
  if (second !== undefined) throw new UsageError(`'${first}' is not a job file (those end in .json), so '${second}' cannot be the scene: give [JOBFILE.json] [SCENE]`);
  return { sceneArg: first };
}

/** Reads a job file: a JSON object, the JobSpec of protocol/messages/job-spec.ts (README.md, "Jobs"). */
export function readJobFile(path: string, shown = path): Json {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(`job file ${shown}: ${code === 'ENOENT' ? 'does not exist' : `cannot read it (${(err as Error).message})`}`, { cause: err });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`job file ${shown}: ${jsonSyntaxError(text, (err as Error).message)}`, { cause: err });
  }
  if (!isObject(value)) {
    throw new UsageError(`job file ${shown}: must hold one JSON object (the job description), not ${Array.isArray(value) ? 'an array' : JSON.stringify(value)}`);
  }
  return { ...value };
}

/**
 * JSON.parse's complaint with the line and column it points at, and that line with a caret
 * under the spot: V8 gives a character offset ("at position 31"), which no editor shows.
 */
export function jsonSyntaxError(text: string, message: string): string {
  if (text.trim() === '') return 'not valid JSON: the file is empty (it must hold one JSON object, the job description)';
  const at = /\s*(?:in JSON )?at position (\d+)(?: \(line \d+ column \d+\))?/.exec(message);
  // "Unexpected end of JSON input" names no position: the end is where it is
  const offset = at ? Math.min(Number(at[1]), text.length) : /end of JSON input/.test(message) ? text.length : undefined;
  const what = (at ? message.slice(0, at.index) + message.slice(at.index + at[0].length) : message).trim();
  if (offset === undefined) return `not valid JSON: ${what}`;
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  const lineStart = before.lastIndexOf('\n') + 1;
  const column = offset - lineStart + 1;
  const lineText = text.slice(lineStart).split('\n')[0]!.replace(/\r$/, '');
  const shown = lineText.length > 100 ? lineText.slice(0, 100) : lineText;
  const caret = column - 1 <= shown.length ? `\n    ${shown.replace(/\t/g, ' ')}\n    ${' '.repeat(column - 1)}^` : '';
  return `not valid JSON at line ${line}, column ${column}: ${what}${caret}`;
}

function applyFlags(raw: Json, input: Omit<JobInput, 'args'>, fromFlag: Map<string, string>, problems: string[]): void {
  const f = input.flags;
  for (const [key, path] of FLAG_PATHS) {
    const value = f[key];
    if (value === undefined) continue;
    const flag = `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`; // afterFrames → --after-frames
    fromFlag.set(path, flag);
    let v: unknown = value;
    if (path.startsWith('/notify/')) {
      // the settings form: URLs given as the array form (file or --notify) become its webhooks
      if (Array.isArray(raw.notify)) raw.notify = { webhooks: raw.notify };
      if (key === 'notifyUrl' && f.notify) v = [...f.notify, ...(value as string[])];
      if (key === 'notifyOn') v = String(value).split(',').map((x) => x.trim()).filter((x) => x !== '');
      if (key === 'notifyEvery') {
        const text = String(value).trim().replace(/%$/, '');
        if (!/^[+-]?\d+$/.test(text)) {
          problems.push(`${flag}: '${value}' is not a whole number (percent of the frames between progress notifications, 1-99)`);
          continue;
        }
        v = Number(text);
      }
    } else if (key === 'priority' || key === 'chunk' || key === 'memory') {
      const text = String(value).trim();
      if (!/^[+-]?\d+$/.test(text)) {
        const what = { priority: '0-1000, lower is more urgent', chunk: 'frames per task, at least 1', memory: 'MB of memory a task may use' }[key];
        problems.push(`${flag}: '${value}' is not a whole number (${what})`);
        continue;
      }
      v = Number(text);
    } else if (key === 'taskDuration') {
      const text = String(value).trim();
      if (!/^\d+(\.\d+)?$/.test(text)) {
        problems.push(`${flag}: '${value}' is not a number of seconds (how long each task should last, at least 1)`);
        continue;
      }
      v = Number(text);
    } else if (key === 'output') {
      v = resolve(input.cwd, String(value));
    } else if (key === 'env') {
      // each --env sets one variable, over the file's of the same name
      const env: Json = isObject(raw.env) ? { ...raw.env } : {};
      if (isObject(raw.env)) fromFlag.delete(path); // the file's own variables keep the file's label
      for (const item of value as string[]) {
        const eq = item.indexOf('=');
        if (eq <= 0) problems.push(`${flag}: '${item}' is not NAME=VALUE (e.g. --env OCIO=/studio/aces.ocio)`);
        else {
          env[item.slice(0, eq)] = item.slice(eq + 1);
          fromFlag.set(`${path}/${item.slice(0, eq)}`, flag);
        }
      }
      v = env;
    }
    setPath(raw, path, v);
  }
}

/** Sets `/a/b` in a job object, keeping the file's other fields of `a`. */
function setPath(raw: Json, path: string, value: unknown): void {
  const [head, leaf] = path.slice(1).split('/') as [string, string | undefined];
  if (leaf === undefined) {
    raw[head] = value;
    return;
  }
  // a non-object in the file stays as it is, so its own error is reported
  if (raw[head] === undefined) raw[head] = {};
  if (isObject(raw[head])) raw[head] = { ...raw[head], [leaf]: value };
}

function applyDefaults(raw: Json, input: Omit<JobInput, 'args'>, problems: string[]): void {
  const scene = typeof raw.scene === 'string' ? raw.scene : undefined;
  if (raw.name === undefined && scene) raw.name = basename(scene, extname(scene)).slice(0, 200) || 'job';
  if (raw.user === undefined && input.defaults.user !== undefined) raw.user = input.defaults.user;
  if (raw.group === undefined) raw.group = input.defaults.group;
  if (raw.priority === undefined) raw.priority = DEFAULT_PRIORITY;
  if (raw.renderer === undefined && scene) {
    if (raw.command !== undefined) raw.renderer = 'command';
    else if (extname(scene).toLowerCase() === '.pov') raw.renderer = 'povray';
    else {
      problems.push(
        `renderer: cannot tell which renderer renders '${basename(scene)}': POV-Ray scenes end in .pov; for anything else give --renderer command --command 'TEMPLATE'`,
      );
    }
  }
  if (raw.output === undefined) raw.output = {};
  if (isObject(raw.output)) {
    const out = { ...raw.output };
    if (out.dir === undefined) out.dir = resolve(input.defaults.outputRoot, `${folderName(raw.name)}-${input.jobId}`);
    if (out.pattern === undefined) out.pattern = DEFAULT_OUTPUT_PATTERN;
    raw.output = out;
  }
}

/** A job name made safe as a folder name. */
function folderName(name: unknown): string {
  const s = typeof name === 'string' ? name.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^[._]+/, '').slice(0, 80) : '';
  return s === '' ? 'job' : s;
}

/** A schema error as a sentence with the expectation, the value found and the field's description. */
function explain(e: ValueError): string {
  const found = e.value === undefined ? '' : `, got ${short(e.value)}`;
  switch (e.type) {
    case ValueErrorType.ObjectAdditionalProperties: {
      const known = Object.keys((e.schema as { properties?: object }).properties ?? {});
      return `unknown field (known fields: ${known.join(', ')})`;
    }
    case ValueErrorType.ObjectRequiredProperty:
      return 'missing (required)';
    case ValueErrorType.Union:
      if (e.path === '/renderer') return `${short(e.value)} is not a renderer this farm drives (${RENDERERS.join(', ')})`;
      if (/^\/notify\/on\/\d+$/.test(e.path)) return `${short(e.value)} is not something to notify of (${NOTIFY_TRIGGERS.join(', ')})`;
      break;
    case ValueErrorType.StringPattern:
      if (e.path === '/resolution') return `${short(e.value)} is not WIDTHxHEIGHT (e.g. 320x240)`;
      if (/^\/notify(\/webhooks)?\/\d+$/.test(e.path)) return `${short(e.value)} is not an http:// or https:// URL`;
      if (/^\/notify\/email\/\d+$/.test(e.path)) return `${short(e.value)} is not an email address (name@domain)`;
      if (e.path === '/output/pattern') return `${short(e.value)} must be a file name with a run of '#' for the frame number, e.g. 'shot_####.png'`;
      break;
    default:
      break;
  }
  const about = e.schema.description ? ` (${e.schema.description})` : '';
  return `${e.message}${found}${about}`;
}

function short(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/**
 * The job's `notify`, in either form: schema errors by the form it has, then what the schema
 * cannot see (protocol/messages/notify.ts: the same problems the scheduler refuses with RB_BAD_JOB).
 */
function checkNotifyField(notify: unknown, label: (p: string) => string, problems: string[]): void {
  if (notify === undefined) return;
  const isArray = Array.isArray(notify);
  if (!isArray && !isObject(notify)) {
    problems.push(`${label('/notify')}: must be a list of webhook URLs, or { "webhooks": [...], "email": [...], "on": [...], "everyPercent": N }, got ${short(notify)}`);
    return;
  }
  const schema = isArray ? compiledNotifyUrls : compiledNotifySettings;
  const seen = new Set<string>();
  for (const e of schema.Errors(notify)) {
    const path = `/notify${e.path}`;
    if (seen.has(path)) continue;
    seen.add(path);
    problems.push(`${label(path)}: ${explain({ ...e, path })}`);
  }
  if (seen.size > 0) return;
  for (const p of notifyPlan(notify as JobNotify)?.problems ?? []) problems.push(`${label(`/${p.field.replace(/\./g, '/')}`)}: ${p.message}`);
}

/** The job's `env`: an object of NAME: "value", each problem named by its variable (the checks the scheduler makes too). */
function checkEnvField(env: unknown, label: (p: string) => string, problems: string[]): void {
  if (env === undefined) return;
  if (!isObject(env)) {
    problems.push(`${label('/env')}: must be an object of variables, { "NAME": "value", ... }, got ${short(env)}`);
    return;
  }
  for (const p of jobEnvProblems(env)) problems.push(`${label(p.name !== undefined ? `/env/${p.name}` : '/env')}: ${p.message}`);
}

const PATTERN_FIELDS = [
  ['machine', false],
  ['os', true],
  ['cpu', false],
] as const;

function checkRequirements(req: unknown, label: (p: string) => string, typed: (p: string) => boolean, problems: string[]): void {
  if (!isObject(req) || !typed('/requirements')) return;
  const one = (path: string, field: string, text: string, allowVersion: boolean) => {
    try {
      parsePattern(field, text, allowVersion);
    } catch (err) {
      const msg = (err as Error).message;
      problems.push(`${label(path)}: ${msg.startsWith(`${field}: `) ? msg.slice(field.length + 2) : msg}`);
    }
  };
  for (const [key, allowVersion] of PATTERN_FIELDS) {
    const v = req[key];
    if (typeof v === 'string' && typed(`/requirements/${key}`)) one(`/requirements/${key}`, `requirements.${key}`, v, allowVersion);
  }
  if (Array.isArray(req.packages)) {
    req.packages.forEach((p, i) => {
      if (typeof p === 'string') one(`/requirements/packages/${i}`, `requirements.packages[${i}]`, p, true);
    });
  }
}

function checkRenderer(raw: Json, label: (p: string) => string, typed: (p: string) => boolean, problems: string[]): void {
  if (!typed('/renderer') || !typed('/command')) return;
  if (raw.renderer === 'command' && raw.command === undefined) {
    problems.push(`${label('/renderer')}: renderer 'command' needs a command template: --command 'TEMPLATE' (tokens {frame} {first} {last} {output} {scene})`);
  }
  if (raw.renderer === 'povray' && raw.command !== undefined) {
    problems.push(`${label('/command')}: a command template is only used with renderer 'command' (this job's renderer is 'povray')`);
  }
  // the output patterns, each regex named by its place in the file (protocol/output-patterns.ts)
  const fields = ['progress', 'errors', 'sceneErrors'] as const;
  if (!fields.every((f) => typed(`/${f}`))) return;
  const spec = { progress: raw.progress, errors: raw.errors, sceneErrors: raw.sceneErrors } as OutputPatternSpec;
  if (!hasOutputPatterns(spec)) return;
  if (raw.renderer !== undefined && raw.renderer !== 'command') {
    const field = fields.find((f) => raw[f] !== undefined)!;
    problems.push(`${label(`/${field}`)}: output patterns only go with renderer 'command' (this job's renderer is '${String(raw.renderer)}')`);
    return;
  }
  for (const field of fields) {
    try {
      compileOutputPatterns({ [field]: spec[field] });
    } catch (err) {
      const msg = (err as Error).message;
      const m = /^(progress|errors|sceneErrors)(?:\[(\d+)\])?: (.*)$/s.exec(msg);
      problems.push(m ? `${label(`/${m[1]}${m[2] !== undefined ? `/${m[2]}` : ''}`)}: ${m[3]}` : msg);
    }
  }
}

function checkFiles(raw: Json, cwd: string, label: (p: string) => string, typed: (p: string) => boolean, problems: string[]): void {
  const shown = (p: string) => (p.startsWith(cwd) ? relative(cwd, p) || p : p);
  if (typeof raw.scene === 'string' && typed('/scene')) {
    const kind = fileKind(raw.scene);
    if (kind === 'none') problems.push(`${label('/scene')}: ${shown(raw.scene)} does not exist`);
    else if (kind === 'dir') problems.push(`${label('/scene')}: ${shown(raw.scene)} is a folder, not a scene file`);
  }
  if (Array.isArray(raw.supportFiles) && typed('/supportFiles')) {
    raw.supportFiles.forEach((f, i) => {
      if (typeof f === 'string' && fileKind(f) === 'none') problems.push(`${label(`/supportFiles/${i}`)}: ${shown(f)} does not exist`);
    });
  }
  if (isObject(raw.output) && typeof raw.output.dir === 'string' && typed('/output/dir') && fileKind(raw.output.dir) === 'file') {
    problems.push(`${label('/output/dir')}: ${shown(raw.output.dir)} is a file, not a folder`);
  }
}

function fileKind(path: string): 'file' | 'dir' | 'none' {
  try {
    return statSync(path).isDirectory() ? 'dir' : 'file';
  } catch {
    return 'none';
  }
}
