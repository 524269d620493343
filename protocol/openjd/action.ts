import { resolveFormat, type Piece, type Scope } from './format-string.ts';
import { isObject, shown, unknownFields, type Problems } from './problems.ts';

/** What the render slot's command adapter reads as its own tokens: such literal text cannot pass through a template. */
const TOKEN_LIKE = /\{[a-z]+(?::\d{1,2})?\}/;
export const MAX_TIME_LIMIT = 30 * 24 * 3600;

/** An `<Action>` (OpenJD 2023-09, 5) resolved: its argv (command tokens such as `{frame}` kept as text) and timeout. */
export interface ActionOut {
  argv: string[];
  timeout?: number;
}

/**
 * Reads an action. `inTemplate`: its argv becomes the job's command template, whose parser
 * takes literal `{word}` for a token, so such text is refused there.
 */
export function readAction(run: unknown, path: string, scope: Scope, inTemplate: boolean, problems: Problems): ActionOut | undefined {
  if (!isObject(run)) {
    problems.add(path, 'missing: the command to run, { command, args }');
    return undefined;
  }
  unknownFields(run, ['command', 'args', 'timeout', 'cancelation'], path, problems);
  const argv: string[] = [];
  let ok = true;
  const arg = (src: unknown, p: string): void => {
    ok = false;
    if (typeof src !== 'string') return problems.add(p, `must be a string, got ${shown(src)}`);
    const r = resolveFormat(src, scope);
    if ('problem' in r) return problems.add(p, r.problem);
    const literal = inTemplate ? r.pieces.find((x: Piece) => 'text' in x && TOKEN_LIKE.test(x.text)) : undefined;
    if (literal && 'text' in literal) {
      return problems.add(p, `'${TOKEN_LIKE.exec(literal.text)![0]}' in this text reads as a renderbus command token, which a command template cannot quote: move that text into an embedded file`);
    }
    argv.push(r.pieces.map((x) => ('token' in x ? x.token : x.text)).join(''));
    ok = true;
  };
  if (typeof run.command !== 'string' || run.command === '') {
    problems.add(`${path}.command`, `must be the command to run, got ${shown(run.command)}`);
    return undefined;
  }
  arg(run.command, `${path}.command`);
  let good = ok;
  if (run.args !== undefined) {
    if (!Array.isArray(run.args)) {
      problems.add(`${path}.args`, 'must be a list of strings');
      good = false;
    } else {
      run.args.forEach((a, i) => {
        arg(typeof a === 'number' ? String(a) : a, `${path}.args[${i}]`);
        good &&= ok;
      });
    }
  }
  let timeout: number | undefined;
  if (run.timeout !== undefined) {
    if (typeof run.timeout !== 'number' || !Number.isInteger(run.timeout) || run.timeout < 1 || run.timeout > MAX_TIME_LIMIT) {
      problems.add(`${path}.timeout`, `must be whole seconds from 1 to ${MAX_TIME_LIMIT}, got ${shown(run.timeout)}`);
      good = false;
    } else timeout = run.timeout;
  }
  if (run.cancelation !== undefined) {
    const mode = isObject(run.cancelation) ? run.cancelation.mode : undefined;
    // a render slot cancels with SIGTERM to the process group and SIGKILL 5 s later: TERMINATE's outcome
    if (mode !== 'TERMINATE') {
      good = false;
      problems.add(`${path}.cancelation`, mode === 'NOTIFY_THEN_TERMINATE'
        ? 'NOTIFY_THEN_TERMINATE is not offered: a render slot sends SIGTERM and then SIGKILL after 5 s, without a notify period or cancel_info.json (use mode: TERMINATE, or leave cancelation out)'
        : `${shown(run.cancelation)} is not { mode: TERMINATE }`);
    }
  }
  return good ? { argv, ...(timeout !== undefined ? { timeout } : {}) } : undefined;
}
