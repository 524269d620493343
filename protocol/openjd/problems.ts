import { FarmError } from '../errors.ts';

/**
 * Every problem found in a template, each naming its field by its path in the document
 * (`steps[1].parameterSpace.taskParameterDefinitions[0].range`), so all are reported at once.
 */
export class Problems {
  readonly list: string[] = [];
  /** An empty message: a consequence of a problem already reported (a reference to a parameter that was refused). */
  add(path: string, message: string): void {
    if (message === '') return;
    this.list.push(path === '' ? message : `${path}: ${message}`);
  }
  /** Throws RB_BAD_TEMPLATE listing them all, if there are any. */
  throwIfAny(): void {
    if (this.list.length === 1) throw new FarmError('RB_BAD_TEMPLATE', this.list[0]);
    if (this.list.length > 1) throw new FarmError('RB_BAD_TEMPLATE', `${this.list.length} problems:\n  ${this.list.join('\n  ')}`);
  }
}

export type Json = Record<string, unknown>;
export const isObject = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v);

/** A value as it appears in a message. */
export function shown(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/**
 * Fields of an object outside `known` are refused by name: OpenJD has no extension fields
 * besides the top-level `extensions`, and a field this farm does not know must not be dropped silently.
 */
export function unknownFields(obj: Json, known: readonly string[], path: string, problems: Problems): void {
  for (const key of Object.keys(obj)) {
    if (!known.includes(key)) problems.add(path === '' ? key : `${path}.${key}`, `unknown field (known here: ${known.join(', ')})`);
  }
}

/** `<Identifier>` of the specification (7.1). */
export const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
