import type { Scope } from './format-string.ts';
import type { ParamValue } from './parameters.ts';
import { IDENTIFIER, isObject, shown, unknownFields, type Problems } from './problems.ts';
import { rangeExprToFrames, valuesToFrames } from './range-expr.ts';
import { paramScope, resolveField } from './scopes.ts';

const TASK_PARAM_TYPES = ['INT', 'FLOAT', 'STRING', 'PATH', 'CHUNK[INT]'];
/** renderbus's largest chunk (JobSpec's `chunk`). */
const MAX_CHUNK = 10_000;

/** The step's tasks as frames: one INT (or CHUNK[INT]) task parameter with several values; others must hold one value each. */
export interface Space {
  frames: string;
  count: number;
  chunk?: number;
  taskDuration?: number;
  /** Task.Param.X / Task.RawParam.X. */
  scope: Scope;
  /** The task parameter that varies, for messages. */
  frameParam?: string;
}

export function parameterSpace(ps: unknown, path: string, params: Map<string, ParamValue>, extensions: Set<string>, problems: Problems): Space | undefined {
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
  const scope = paramScope(params, false);
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
      if (type === 'CHUNK[INT]' && !extensions.has('TASK_CHUNKING')) problems.add(`${p}.type`, 'CHUNK[INT] needs the TASK_CHUNKING extension: add extensions: [TASK_CHUNKING] at the top of the template');
      try {
        let r: { frames: string; count: number } | undefined;
        if (typeof d.range === 'string') {
          const expr = resolveField(d.range, rp, scope, problems);
          if (expr !== undefined) r = rangeExprToFrames(expr);
        } else if (Array.isArray(d.range) && d.range.length > 0 && d.range.length <= 1024) {
          const values: number[] = [];
          d.range.forEach((v, j) => {
            const s = typeof v === 'number' ? String(v) : resolveField(v, `${rp}[${j}]`, scope, problems);
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
          tp.constant = typeof v === 'number' && type === 'FLOAT' ? String(v) : resolveField(v, `${rp}[0]`, scope, problems);
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
    const s = typeof v === 'number' ? String(v) : typeof v === 'string' ? resolveField(v, `${path}.${key}`, scope, problems) : undefined;
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
