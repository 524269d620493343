import { quote } from 'shell-quote';
import { resolveFormat, type Piece, type Scope } from './format-string.ts';
import type { ParamValue } from './parameters.ts';
import { IDENTIFIER, isObject, shown, unknownFields, type Problems } from './problems.ts';
import { CONTROL, paramScope, resolveField, scopes, sessionScope } from './scopes.ts';
import type { Space } from './task-space.ts';

/** What the render slot's command adapter reads as its own tokens: such literal text cannot pass through a template. */
const TOKEN_LIKE = /\{[a-z]+(?::\d{1,2})?\}/;
const MAX_TIME_LIMIT = 30 * 24 * 3600;

/** A step's embedded file, to be written before the job is submitted. */
export interface EmbeddedFileOut {
  /** Absolute path (under filesDir). */
  path: string;
  data: string;
  runnable: boolean;
}

/** The step's script: its onRun action as a command template, its embedded files with their paths. */
export function stepScript(sc: unknown, path: string, index: number, space: Space | undefined, ctx: { params: Map<string, ParamValue>; filesDir: string }, problems: Problems): { command: string; timeLimit?: number; files: EmbeddedFileOut[] } | undefined {
  if (!isObject(sc)) {
    problems.add(path, 'missing or not an object: a step needs script: { actions: { onRun: { command } } }');
    return undefined;
  }
  unknownFields(sc, ['actions', 'embeddedFiles'], path, problems);
  // a parameter space that was refused: its parameters' references say nothing more
  const taskScope: Scope = space?.scope ?? ((ref) => (/^Task\.(Raw)?Param\./.test(ref) ? { refuse: '' } : undefined));
  // a folder per step, named by its place (step names may hold any printable character)
  const dir = `${ctx.filesDir.replace(/\/+$/, '')}/step-${index + 1}`;
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
    const data = resolveField(f.data, `${efPath}[${i}].data`, scopes(params, perTask, fileScope, sessionScope), problems);
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
