import { readAction } from './action.ts';
import { embeddedFiles, type EmbeddedFileOut } from './embedded-files.ts';
import type { EnvActions } from './env-wrapper.ts';
import type { ParamValue } from './parameters.ts';
import { isObject, shown, unknownFields, type Json, type Problems } from './problems.ts';
import { CONTROL, paramScope, resolveField, scopes, sessionScope } from './scopes.ts';

/** What a list of environments gives the steps it applies to. */
export interface EnvironmentsOut {
  /** Their variables, in order (a later environment's win). */
  env: Record<string, string>;
  /** The script actions of those that have one, in order (docs: a wrapper enters them around each task). */
  actions: EnvActions[];
  files: EmbeddedFileOut[];
}

const ENV_FIELDS = ['name', 'description', 'script', 'variables'];
/** OpenJD's variable names (4.4.1); renderbus's own limits are checked after (jobEnvProblems). */
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,255}$/;

/**
 * jobEnvironments or a step's stepEnvironments: their variables, and their scripts' actions and
 * embedded files (written into `dir`-N, N the environment's place in the list).
 */
export function environments(list: unknown, path: string, params: Map<string, ParamValue>, names: Set<string>, dir: string, problems: Problems): EnvironmentsOut {
  const env: Record<string, string> = {};
  const out: EnvironmentsOut = { env, actions: [], files: [] };
  if (list === undefined) return out;
  if (!Array.isArray(list) || list.length === 0) {
    problems.add(path, 'must be a non-empty list of environments');
    return out;
  }
  const scope = scopes(paramScope(params, true), sessionScope);
  list.forEach((e, i) => {
    const p = `${path}[${i}]`;
    if (!isObject(e)) return problems.add(p, 'must be an object with name and variables');
    unknownFields(e, ENV_FIELDS, p, problems);
    if (typeof e.name !== 'string' || e.name.length === 0 || e.name.length > 64 || CONTROL.test(e.name)) problems.add(`${p}.name`, `${shown(e.name)} is not an environment name (1 to 64 printable characters)`);
    else if (names.has(e.name)) problems.add(`${p}.name`, `'${e.name}' names another environment of this template too`);
    else names.add(e.name);
    if (e.script !== undefined) script(e.script, `${p}.script`, typeof e.name === 'string' ? e.name : '', `${dir}-${i + 1}`);
    if (e.variables === undefined) {
      if (e.script === undefined) problems.add(p, "an environment needs 'variables' or a 'script'");
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
      const value = resolveField(raw, vp, scope, problems);
      if (value === undefined) continue;
      if (value.length > 2048) problems.add(vp, `the value is ${value.length} characters once resolved, at most 2048`);
      else env[name] = value;
    }
  });
  return out;

  function script(sc: unknown, p: string, name: string, filesDir: string): void {
    if (!isObject(sc)) return problems.add(p, 'must be { actions: { onEnter, onExit }, embeddedFiles }');
    unknownFields(sc, ['actions', 'embeddedFiles'], p, problems);
    const files = embeddedFiles(sc.embeddedFiles, `${p}.embeddedFiles`, filesDir, 'Env.File', scope, problems);
    out.files.push(...files.files);
    if (!isObject(sc.actions)) return problems.add(`${p}.actions`, 'missing: { onEnter, onExit }');
    unknownFields(sc.actions, ['onEnter', 'onExit'], `${p}.actions`, problems);
    const actionScope = scopes(scope, files.scope);
    const onEnter = readAction(sc.actions.onEnter, `${p}.actions.onEnter`, actionScope, false, problems);
    const onExit = sc.actions.onExit === undefined ? undefined : readAction(sc.actions.onExit, `${p}.actions.onExit`, actionScope, false, problems);
    if (onEnter) out.actions.push({ name, onEnter, ...(onExit ? { onExit } : {}) });
  }
}

/** Where a variable came from: the last environment that sets it (the step's win over the job's). */
export function envPath(s: Json, jobEnvironments: unknown, name: string, path: string): string {
  const find = (list: unknown, at: string): string | undefined => {
    if (!Array.isArray(list)) return undefined;
    for (let i = list.length - 1; i >= 0; i--) {
      const e: unknown = list[i];
      if (isObject(e) && isObject(e.variables) && name in e.variables) return `${at}[${i}].variables.${name}`;
    }
    return undefined;
  };
  return find(s.stepEnvironments, `${path}.stepEnvironments`) ?? find(jobEnvironments, 'jobEnvironments') ?? `${path}.stepEnvironments`;
}
