import { quote } from 'shell-quote';
import { readAction } from './action.ts';
import { embeddedFiles, type EmbeddedFileOut } from './embedded-files.ts';
import { envWrapper, type EnvActions } from './env-wrapper.ts';
import type { Scope } from './format-string.ts';
import type { ParamValue } from './parameters.ts';
import { isObject, unknownFields, type Problems } from './problems.ts';
import { paramScope, scopes, sessionScope } from './scopes.ts';
import type { Space } from './task-space.ts';

/** The file a step's environments' wrapper is written to, in the step's folder. */
export const ENV_WRAPPER_FILE = 'openjd-environments.sh';

/**
 * The step's script: its onRun action as a command template, its embedded files with their
 * paths; with environments that have scripts, the command runs inside their wrapper.
 */
export function stepScript(sc: unknown, path: string, index: number, space: Space | undefined, ctx: { params: Map<string, ParamValue>; filesDir: string; envActions: readonly EnvActions[] }, problems: Problems): { command: string; timeLimit?: number; files: EmbeddedFileOut[] } | undefined {
  if (!isObject(sc)) {
    problems.add(path, 'missing or not an object: a step needs script: { actions: { onRun: { command } } }');
    return undefined;
  }
  unknownFields(sc, ['actions', 'embeddedFiles'], path, problems);
  // a parameter space that was refused: its parameters' references say nothing more
  const taskScope: Scope = space?.scope ?? ((ref) => (/^Task\.(Raw)?Param\./.test(ref) ? { refuse: '' } : undefined));
  // a folder per step, named by its place (step names may hold any printable character)
  const dir = `${ctx.filesDir.replace(/\/+$/, '')}/step-${index + 1}`;
  const params = paramScope(ctx.params, true);
  // embedded files are written once, at submission: a value that differs per task cannot be in them
  const perTask: Scope = (ref) => {
    const r = taskScope(ref);
    if (r && 'token' in r) return { refuse: `differs from task to task, and embedded files are written once when the job is submitted: pass it to the command as an argument instead (args: ['{{Task.File.X}}', '{{${ref}}}'])` };
    return r;
  };
  const own = embeddedFiles(sc.embeddedFiles, `${path}.embeddedFiles`, dir, 'Task.File', scopes(params, perTask, sessionScope), problems);
  const files = [...own.files];

  const actions = sc.actions;
  if (!isObject(actions)) {
    problems.add(`${path}.actions`, 'missing: a step needs actions: { onRun: { command } }');
    return undefined;
  }
  unknownFields(actions, ['onRun'], `${path}.actions`, problems);
  const run = readAction(actions.onRun, `${path}.actions.onRun`, scopes(params, taskScope, own.scope, sessionScope), true, problems);
  if (!run) return undefined;
  let argv = run.argv;
  if (ctx.envActions.length > 0) {
    const wrapper = `${dir}/${ENV_WRAPPER_FILE}`;
    files.push({ path: wrapper, data: envWrapper(ctx.envActions), runnable: false });
    argv = ['sh', wrapper, ...argv];
  }
  // renderbus kills a task over its timeLimit and retries it (maxAttempts): OpenJD's timeout fails the run
  return { command: quote(argv), ...(run.timeout !== undefined ? { timeLimit: run.timeout } : {}), files };
}
