import type { Scope } from './format-string.ts';
import { IDENTIFIER, isObject, shown, unknownFields, type Problems } from './problems.ts';
import { CONTROL, resolveField, scopes } from './scopes.ts';

/** An embedded file, to be written before the job is submitted. */
export interface EmbeddedFileOut {
  /** Absolute path (under the template's files folder). */
  path: string;
  data: string;
  runnable: boolean;
}

/**
 * A script's `embeddedFiles` (OpenJD 2023-09, 6): each written once, at submission, into `dir`
 * (a folder render hosts see); `{{Task.File.X}}` or `{{Env.File.X}}` (`ref`) is its path. The data
 * is resolved with `scope` plus the files' own paths.
 */
export function embeddedFiles(list: unknown, path: string, dir: string, ref: 'Task.File' | 'Env.File', scope: Scope, problems: Problems): { files: EmbeddedFileOut[]; scope: Scope } {
  const files: EmbeddedFileOut[] = [];
  const fileOf = new Map<string, string>();
  const fileScope: Scope = (r) => {
    const file = r.startsWith(`${ref}.`) ? fileOf.get(r.slice(ref.length + 1)) : undefined;
    return file === undefined ? undefined : { text: file };
  };
  if (list === undefined) return { files, scope: fileScope };
  if (!Array.isArray(list) || list.length === 0) {
    problems.add(path, 'must be a non-empty list of files');
    return { files, scope: fileScope };
  }
  const filenames = new Set<string>();
  list.forEach((f, i) => {
    const p = `${path}[${i}]`;
    if (!isObject(f)) return problems.add(p, 'must be { name, type: TEXT, data }');
    unknownFields(f, ['name', 'type', 'filename', 'runnable', 'data'], p, problems);
    if (typeof f.name !== 'string' || !IDENTIFIER.test(f.name)) return problems.add(`${p}.name`, `${shown(f.name)} is not an identifier`);
    if (fileOf.has(f.name)) return problems.add(`${p}.name`, `'${f.name}' names another embedded file here too`);
    if (f.type !== 'TEXT') problems.add(`${p}.type`, `${shown(f.type)}: the only embedded file type is TEXT`);
    const filename = f.filename ?? f.name;
    if (typeof filename !== 'string' || filename.length === 0 || filename.length > 64 || filename.includes('/') || filename === '.' || filename === '..' || CONTROL.test(filename)) {
      return problems.add(`${p}.filename`, `${shown(filename)} is not a file name (1 to 64 characters, no '/')`);
    }
    if (filenames.has(filename)) return problems.add(`${p}.filename`, `'${filename}' is the file name of another embedded file here`);
    filenames.add(filename);
    if (f.runnable !== undefined && typeof f.runnable !== 'boolean') problems.add(`${p}.runnable`, `must be true or false, got ${shown(f.runnable)}`);
    fileOf.set(f.name, `${dir}/${filename}`);
  });
  const dataScope = scopes(scope, fileScope);
  list.forEach((f, i) => {
    if (!isObject(f) || typeof f.name !== 'string' || !fileOf.has(f.name)) return;
    const data = resolveField(f.data, `${path}[${i}].data`, dataScope, problems);
    if (data !== undefined) files.push({ path: fileOf.get(f.name)!, data, runnable: f.runnable === true });
  });
  return { files, scope: fileScope };
}
