import { resolveText, type Scope } from './format-string.ts';
import type { ParamValue } from './parameters.ts';
import { shown, type Problems } from './problems.ts';

// The values a format string may name, by where it stands in the template (OpenJD 2023-09, 7.3.1).

/** C0 and C1 control characters: not allowed in names (the specification's Cc category). */
export const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/** Param.X and RawParam.X; a PATH parameter's Param.X only where the specification offers it (scripts, environments). */
export function paramScope(params: Map<string, ParamValue>, inScript: boolean): Scope {
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
export const sessionScope: Scope = (ref) => {
  if (ref === 'Session.HasPathMappingRules') return { text: 'false' }; // renderbus applies no path mapping rules
  if (ref.startsWith('Session.')) return { refuse: 'renderbus runs each task in no OpenJD session: there is no session working directory or path mapping file (write to a path given as a parameter)' };
  return undefined;
};

export const scopes = (...list: Scope[]): Scope => (ref) => {
  for (const s of list) {
    const r = s(ref);
    if (r !== undefined) return r;
  }
  return undefined;
};

export function resolveField(src: unknown, path: string, scope: Scope, problems: Problems): string | undefined {
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
