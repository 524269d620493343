import { posix } from 'node:path';
import { IDENTIFIER, isObject, shown, unknownFields, type Problems } from './problems.ts';

/** Job parameter types of OpenJD 2023-09 (section 2). */
export type ParamType = 'STRING' | 'PATH' | 'INT' | 'FLOAT';

/** A job parameter's value once applied: `raw` as given (RawParam.X), `value` as used (Param.X). */
export interface ParamValue {
  type: ParamType;
  raw: string;
  /** For PATH, the path made absolute (renderbus's only "path mapping"); else `raw`. */
  value: string;
  /** Refused (and reported): references to it say nothing more. */
  broken?: true;
}

/** Where the values come from: overrides given at submit (`--param Name=Value`) win over the template's defaults. */
export interface ParamInput {
  /** Name → value as typed. */
  overrides: ReadonlyMap<string, string>;
  /** Absolute folder a relative PATH default is resolved against: the template's own. */
  templateDir: string;
  /** Absolute folder a relative PATH override is resolved against: where the submitter stands. */
  cwd: string;
}

const COMMON = ['name', 'type', 'description', 'default', 'allowedValues', 'userInterface'];
const KNOWN: Record<ParamType, string[]> = {
  STRING: [...COMMON, 'minLength', 'maxLength'],
  PATH: [...COMMON, 'minLength', 'maxLength', 'objectType', 'dataFlow'],
  INT: [...COMMON, 'minValue', 'maxValue'],
  FLOAT: [...COMMON, 'minValue', 'maxValue'],
};
const INT_TEXT = /^\s*[-+]?\d+\s*$/;
const FLOAT_TEXT = /^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$/;
const MAX_VALUE_CHARS = 1024;

/**
 * Checks `parameterDefinitions` and applies the values: defaults, overrides, each value checked
 * against its type and constraints (allowedValues, minValue/maxValue, minLength/maxLength).
 * Problems name the definition's field, or `--param NAME` for a bad override.
 */
export function applyParameters(defs: unknown, input: ParamInput, problems: Problems): Map<string, ParamValue> {
  const out = new Map<string, ParamValue>();
  const defined = new Set<string>();
  if (defs !== undefined && (!Array.isArray(defs) || defs.length === 0 || defs.length > 50)) {
    problems.add('parameterDefinitions', 'must be a list of 1 to 50 parameter definitions');
    defs = [];
  }
  ((defs as unknown[] | undefined) ?? []).forEach((def, i) => {
    const path = `parameterDefinitions[${i}]`;
    if (!isObject(def)) return problems.add(path, 'must be an object with name and type');
    const name = def.name;
    if (typeof name !== 'string' || !IDENTIFIER.test(name)) return problems.add(`${path}.name`, `${shown(name)} is not an identifier (letters, digits, '_', not starting with a digit, at most 64)`);
    if (defined.has(name)) return problems.add(`${path}.name`, `'${name}' is defined twice`);
    defined.add(name);
    const type = def.type;
    if (typeof type !== 'string' || !(type in KNOWN)) {
      out.set(name, { type: 'STRING', raw: '', value: '', broken: true });
      return problems.add(`${path}.type`, `${shown(type)} is not a job parameter type (STRING, PATH, INT, FLOAT)`);
    }
    const t = type as ParamType;
    unknownFields(def, KNOWN[t], path, problems);
    const override = input.overrides.get(name);
    const given = override !== undefined ? override : def.default;
    const where = override !== undefined ? `--param ${name}` : `${path}.default`;
    const broken = () => out.set(name, { type: t, raw: '', value: '', broken: true });
    if (given === undefined) {
      broken();
      return problems.add(path, `parameter '${name}' has no default: give it with --param ${name}=VALUE`);
    }
    const checked = checkValue(t, def, given, path, problems);
    if (checked === undefined) return void broken();
    if (typeof checked === 'object') {
      broken();
      return problems.add(where, checked.problem);
    }
    const value = t === 'PATH' && checked !== '' && !checked.startsWith('/') ? posix.resolve(override !== undefined ? input.cwd : input.templateDir, checked) : checked;
    out.set(name, { type: t, raw: checked, value });
  });
  for (const name of input.overrides.keys()) {
    if (!defined.has(name)) problems.add(`--param ${name}`, `the template has no parameter '${name}'${defined.size > 0 ? ` (its parameters: ${[...defined].join(', ')})` : ''}`);
  }
  return out;
}

/** The value's text if it fits the definition; a problem to report at the value's field; undefined: the definition itself was bad (reported). */
function checkValue(type: ParamType, def: Record<string, unknown>, given: unknown, path: string, problems: Problems): string | { problem: string } | undefined {
  const numeric = type === 'INT' || type === 'FLOAT';
  const parse = (v: unknown): number | undefined => {
    if (type === 'INT') {
      if (typeof v === 'number' && Number.isSafeInteger(v)) return v;
      if (typeof v === 'string' && INT_TEXT.test(v) && Number.isSafeInteger(Number(v))) return Number(v);
      return undefined;
    }
    if (typeof v === 'number' && Number.isFinite(v)) return v;
    if (typeof v === 'string' && FLOAT_TEXT.test(v)) return Number(v);
    return undefined;
  };
  let ok = true;
  const bound = (key: string): number | undefined => {
    if (def[key] === undefined) return undefined;
    if (!numeric) return undefined; // not a field of this type: refused as unknown above
    const n = parse(def[key]);
    if (n === undefined) {
      problems.add(`${path}.${key}`, `${shown(def[key])} is not ${type === 'INT' ? 'an integer' : 'a number'}`);
      ok = false;
    }
    return n;
  };
  const length = (key: string): number | undefined => {
    if (def[key] === undefined || numeric) return undefined;
    const n = def[key];
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) {
      problems.add(`${path}.${key}`, `${shown(n)} is not a length (a whole number, 0 or more)`);
      ok = false;
      return undefined;
    }
    return n;
  };
  const min = bound('minValue');
  const max = bound('maxValue');
  const minLen = length('minLength');
  const maxLen = length('maxLength');
  let allowed: unknown[] | undefined;
  if (def.allowedValues !== undefined) {
    if (!Array.isArray(def.allowedValues) || def.allowedValues.length === 0) {
      problems.add(`${path}.allowedValues`, 'must be a non-empty list');
      ok = false;
    } else allowed = def.allowedValues;
  }
  if (!ok) return undefined;
  const typeName = type === 'INT' ? 'an integer' : type === 'FLOAT' ? 'a number' : 'a string';
  if (numeric) {
    const n = parse(given);
    if (n === undefined) return { problem: `${shown(given)} is not ${typeName} (parameter type ${type})` };
    if (min !== undefined && n < min) return { problem: `${n} is less than minValue ${min}` };
    if (max !== undefined && n > max) return { problem: `${n} is more than maxValue ${max}` };
    if (allowed && !allowed.some((a) => parse(a) === n)) return { problem: `${n} is not one of allowedValues ${shown(allowed)}` };
    return type === 'INT' ? String(n) : typeof given === 'string' ? given.trim() : String(n);
  }
  if (typeof given !== 'string') return { problem: `${shown(given)} is not ${typeName} (parameter type ${type}: quote it)` };
  if (given.length > MAX_VALUE_CHARS) return { problem: `the value is ${given.length} characters, at most ${MAX_VALUE_CHARS}` };
  if (minLen !== undefined && given.length < minLen) return { problem: `'${given}' is shorter than minLength ${minLen}` };
  if (maxLen !== undefined && given.length > maxLen) return { problem: `'${given.slice(0, 40)}' is longer than maxLength ${maxLen}` };
  if (allowed && !allowed.includes(given)) return { problem: `'${given}' is not one of allowedValues ${shown(allowed)}` };
  return given;
}
