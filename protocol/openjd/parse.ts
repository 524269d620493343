import { parseDocument } from 'yaml';
import { FarmError } from '../errors.ts';

/**
 * A template's text as a value: YAML 1.2, of which JSON is a subset (OpenJD allows both). A
 * syntax error names its line and column; aliases are bounded (yaml's maxAliasCount), so a
 * "billion laughs" document is refused rather than expanded.
 */
export function parseTemplateText(text: string): unknown {
  const doc = parseDocument(text, { version: '1.2', prettyErrors: true, uniqueKeys: true });
  const err = doc.errors[0];
  if (err) {
    const at = err.linePos?.[0];
    const where = at ? `line ${at.line}, column ${at.col}: ` : '';
    throw new FarmError('RB_BAD_TEMPLATE', `${where}${err.message.split('\n')[0]}`, { cause: err });
  }
  try {
    return doc.toJS({ maxAliasCount: 100 });
  } catch (cause) {
    throw new FarmError('RB_BAD_TEMPLATE', (cause as Error).message, { cause });
  }
}

/** Whether a parsed document says it is an OpenJD template (a renderbus job file never has this field). */
export function isOpenJdDocument(value: unknown): boolean {
  return value !== null && typeof value === 'object' && 'specificationVersion' in value;
}
