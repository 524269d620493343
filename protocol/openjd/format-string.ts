/**
 * Format strings (OpenJD 2023-09, 7.3): text with `{{ Name.Path }}` references. A reference
 * resolves to plain text, or (in a step's command and args) to a renderbus command token such as
 * `{frame}` that the render slot fills in per task.
 */

/** What a reference stands for; `refuse` says why this farm cannot give it (the field is named by the caller; '' when already reported). */
export type Resolved = { text: string } | { token: string } | { refuse: string };
/** Looks a dotted reference up; undefined: no such value in this field's scope. */
export type Scope = (ref: string) => Resolved | undefined;

/** A resolved format string: literal text and command tokens, in order. */
export type Piece = { text: string } | { token: string };

const REF = /^\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*$/;

/** Resolves a format string; a problem is a sentence (without the field). */
export function resolveFormat(src: string, scope: Scope): { pieces: Piece[] } | { problem: string } {
  const pieces: Piece[] = [];
  let at = 0;
  while (at < src.length) {
    const open = src.indexOf('{{', at);
    if (open < 0) break;
    const close = src.indexOf('}}', open + 2);
    if (close < 0) return { problem: `'{{' at character ${open + 1} is never closed with '}}'` };
    if (open > at) pieces.push({ text: src.slice(at, open) });
    const inner = src.slice(open + 2, close);
    const m = REF.exec(inner);
    if (!m) return { problem: `'{{${inner}}}' is not a value reference such as {{Param.Frames}} (expressions are not supported)` };
    const ref = m[1]!;
    const value = scope(ref);
    if (value === undefined) return { problem: `{{${ref}}} names no value available here` };
    if ('refuse' in value) return { problem: value.refuse === '' ? '' : `{{${ref}}}: ${value.refuse}` }; // '': reported already
    pieces.push(value);
    at = close + 2;
  }
  if (at < src.length) pieces.push({ text: src.slice(at) });
  return { pieces };
}

/** A format string resolved to plain text (a token in it is a problem: the field is not per task). */
export function resolveText(src: string, scope: Scope): { text: string } | { problem: string } {
  const r = resolveFormat(src, scope);
  if ('problem' in r) return r;
  let text = '';
  for (const p of r.pieces) {
    if ('token' in p) return { problem: 'a task parameter is not known here (it differs from task to task)' };
    text += p.text;
  }
  return { text };
}
