import { FarmError } from './errors.ts';

/**
 * A command job's own reading of its renderer's output (renderer `command` only; docs/renderers.md,
 * "Templates for other renderers"): `progress` with named groups `percent`, or `done` and `total`
 * (samples, buckets, tiles), plus optionally `frame` (which frame of the task the line is about;
 * else the current one). A match that sets `frame` alone says that frame starts (0%), so one
 * regex with an alternation can read a renderer that names the frame on one line and its
 * percentage on others: `at frame (?<frame>\d+)|(?<percent>\d+)% done`; `errors`, lines that are the task's error text when it fails;
 * `sceneErrors`, lines that make a failure RB_SCENE_ERROR (the scene's fault: the job fails at once).
 *
 * The regexes run on every line a renderer prints, on the render server, so they are held to
 * what cannot backtrack without bound: at most PATTERN_LIMITS.chars characters, no nested or
 * alternating quantified group (`(a+)+`, `(a|b)*`: exponential), no back-reference, at most
 * PATTERN_LIMITS.unbounded unbounded quantifiers, and each line is tested on its first
 * PATTERN_LIMITS.lineChars characters only (so what is left is polynomial in a bounded line).
 */
export interface OutputPatternSpec {
  progress?: string;
  errors?: readonly string[];
  sceneErrors?: readonly string[];
}

export const PATTERN_LIMITS = { chars: 200, list: 8, unbounded: 3, lineChars: 300 } as const;

/** The named groups a progress regex may use. */
export const PROGRESS_GROUPS = ['percent', 'done', 'total', 'frame'] as const;

/** The compiled patterns a command task's parser reads its output with. */
export interface OutputPatterns {
  progress?: RegExp;
  errors: RegExp[];
  sceneErrors: RegExp[];
}

const bad = (field: string, what: string) => new FarmError('RB_BAD_JOB', `${field}: ${what}`);

/**
 * Why a regex source may backtrack without bound, or undefined. A small scan of the source, not
 * a full parser: it knows escapes, character classes and groups, which is all that matters here.
 */
export function backtrackingRisk(source: string): string | undefined {
  // per open group: whether it holds an unbounded quantifier or an alternation
  const groups: { unbounded: boolean; alternation: boolean }[] = [{ unbounded: false, alternation: false }];
  let unbounded = 0;
  let i = 0;
  // the quantifier at i, if any: whether it is unbounded, whether it repeats (more than once), its length
  const quantifierAt = (at: number): { unbounded: boolean; repeats: boolean; length: number } | undefined => {
    const c = source[at];
    const lazy = (n: number) => (source[at + n] === '?' ? n + 1 : n);
    if (c === '*' || c === '+') return { unbounded: true, repeats: true, length: lazy(1) };
    if (c === '?') return { unbounded: false, repeats: false, length: lazy(1) };
    const m = /^\{(\d+)(,(\d*))?\}/.exec(source.slice(at));
    if (!m) return undefined;
    const max = m[2] === undefined ? Number(m[1]) : m[3] === '' ? Infinity : Number(m[3]);
    return { unbounded: max > 1000, repeats: max > 1, length: lazy(m[0].length) };
  };
  while (i < source.length) {
    const c = source[i]!;
    let closed: { unbounded: boolean; alternation: boolean } | undefined;
    if (c === '\\') {
      const next = source[i + 1] ?? '';
      if (/[1-9]/.test(next) || next === 'k') return 'a back-reference (\\1, \\k<name>) can backtrack without bound';
      i += 2; // after \cX \uXXXX \xXX the rest reads as literals: no harm
    } else if (c === '[') {
      i += 1;
      if (source[i] === '^') i += 1;
      if (source[i] === ']') i += 1;
      while (i < source.length && source[i] !== ']') i += source[i] === '\\' ? 2 : 1;
      i += 1;
    } else if (c === '(') {
      groups.push({ unbounded: false, alternation: false });
      i += 1;
      if (source[i] === '?') i += /^\?<[=!]/.test(source.slice(i)) ? 3 : /^\?<[A-Za-z]/.test(source.slice(i)) ? source.indexOf('>', i) - i + 1 : 2;
      continue;
    } else if (c === ')') {
      closed = groups.pop();
      if (!closed || groups.length === 0) return undefined; // unbalanced: the compiler says so
      i += 1;
    } else {
      if (c === '|') groups[groups.length - 1]!.alternation = true;
      i += 1;
    }
    const q = quantifierAt(i);
    if (!q) {
      if (closed) {
        // an unquantified group passes what it holds to its parent
        const parent = groups[groups.length - 1]!;
        parent.unbounded ||= closed.unbounded;
        parent.alternation ||= closed.alternation;
      }
      continue;
    }
    i += q.length;
    if (closed && q.repeats && closed.unbounded) return 'a repeated group that itself repeats ((a+)+, (.*x)*) can backtrack without bound';
    if (closed && q.repeats && closed.alternation) return 'a repeated alternation ((a|b)*) can backtrack without bound: repeat a character class instead ([ab]*)';
    if (q.unbounded) {
      unbounded += 1;
      groups[groups.length - 1]!.unbounded = true;
    } else if (closed) {
      groups[groups.length - 1]!.unbounded ||= closed.unbounded;
      groups[groups.length - 1]!.alternation ||= closed.alternation;
    }
  }
  if (unbounded > PATTERN_LIMITS.unbounded) return `${unbounded} unbounded quantifiers (*, +, {n,}), at most ${PATTERN_LIMITS.unbounded}`;
  return undefined;
}

/** Compiles one regex of `field`, refusing it by name: too long, does not compile, may backtrack. */
export function compilePattern(field: string, source: string): RegExp {
  if (source.length === 0) throw bad(field, 'the regex is empty');
  if (source.length > PATTERN_LIMITS.chars) throw bad(field, `the regex is ${source.length} characters, at most ${PATTERN_LIMITS.chars}`);
  let re: RegExp;
  try {
    re = new RegExp(source);
  } catch (err) {
    // V8's message names the regex and what is wrong: "Invalid regular expression: /(/: Unterminated group"
    throw bad(field, (err as Error).message);
  }
  const risk = backtrackingRisk(source);
  if (risk !== undefined) throw bad(field, `/${source}/: ${risk}`);
  return re;
}

/** The named groups a compiled regex has (an empty alternative makes every group show up, unset). */
function groupNames(re: RegExp): string[] {
  return Object.keys(new RegExp(`(?:${re.source})|`).exec('')?.groups ?? {});
}

/**
 * Checks and compiles a command job's output patterns; every error is RB_BAD_JOB naming the
 * field (`progress`, `errors[1]`). Also the render slot's way to compile them, once per task.
 */
export function compileOutputPatterns(spec: OutputPatternSpec): OutputPatterns {
  const list = (field: 'errors' | 'sceneErrors'): RegExp[] => {
    const sources = spec[field] ?? [];
    if (sources.length > PATTERN_LIMITS.list) throw bad(field, `${sources.length} regexes, at most ${PATTERN_LIMITS.list}`);
    return sources.map((s, i) => compilePattern(`${field}[${i}]`, s));
  };
  const out: OutputPatterns = { errors: list('errors'), sceneErrors: list('sceneErrors') };
  if (spec.progress !== undefined) {
    const re = compilePattern('progress', spec.progress);
    const names = groupNames(re);
    const unknown = names.find((n) => !(PROGRESS_GROUPS as readonly string[]).includes(n));
    if (unknown !== undefined) throw bad('progress', `/${spec.progress}/ has the group (?<${unknown}>…); known: ${PROGRESS_GROUPS.join(', ')}`);
    const has = (n: string) => names.includes(n);
    if (has('done') !== has('total')) throw bad('progress', `/${spec.progress}/ needs both (?<done>…) and (?<total>…), not one of them`);
    if (has('percent') && has('done')) throw bad('progress', `/${spec.progress}/ gives progress twice: (?<percent>…) or (?<done>…) with (?<total>…), not both`);
    if (!has('percent') && !has('done') && !has('frame')) {
      throw bad('progress', `/${spec.progress}/ names no progress: give (?<percent>…), or (?<done>…) and (?<total>…), or (?<frame>…) (that frame starts)`);
    }
    out.progress = re;
  }
  return out;
}

/** Whether a job names any output pattern (they go with renderer `command` only). */
export const hasOutputPatterns = (spec: OutputPatternSpec): boolean => spec.progress !== undefined || spec.errors !== undefined || spec.sceneErrors !== undefined;

/** What one line says, read by a task's patterns: progress (frame may be absent: the current one). */
export function readProgress(re: RegExp, line: string): { frame?: number; percent: number } | undefined {
  const g = re.exec(line.slice(0, PATTERN_LIMITS.lineChars))?.groups;
  if (!g) return undefined;
  const frame = g.frame !== undefined && /^\d+$/.test(g.frame) ? Number(g.frame) : undefined;
  let percent: number;
  if (g.percent !== undefined) percent = Number(g.percent);
  else if (g.done !== undefined && g.total !== undefined) percent = (Number(g.done) / Number(g.total)) * 100;
  else if (frame !== undefined) percent = 0; // the line names the frame the renderer starts
  else return undefined;
  if (!Number.isFinite(percent)) return undefined; // '1.2.3', or a total of 0
  percent = Math.max(0, Math.min(100, percent));
  return frame !== undefined ? { frame, percent } : { percent };
}

/** Whether a line matches any of the regexes (tested on its first PATTERN_LIMITS.lineChars characters). */
export const matchesAny = (res: readonly RegExp[], line: string): boolean => {
  if (res.length === 0) return false;
  const head = line.slice(0, PATTERN_LIMITS.lineChars);
  return res.some((re) => re.test(head));
};
