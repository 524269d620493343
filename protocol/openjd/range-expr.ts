import { MAX_FRAME, MAX_FRAMES_PER_JOB } from '../frames.ts';

/** One element of an integer range expression: the values first, first+step, … up to last, ascending. */
interface Run {
  first: number;
  last: number;
  step: number;
  /** The bounds as written (x-y): ranges overlap by these, as the specification's "1-10:4,10-15" does. */
  lo: number;
  hi: number;
}

const ELEMENT = /^(-?\d+)(?:\s*-\s*(-?\d+)(?:\s*:\s*(-?\d+))?)?$/;

/**
 * An `<IntRangeExpr>` (OpenJD 2023-09, 3.4.1.1.1: `1-100`, `1-100:2`, `10-15:2,1-5`, `10-1:-1`)
 * as renderbus frames (`1-100x2`). Throws an Error with the reason. The values must be frame
 * numbers (0 to MAX_FRAME) and the ranges must not overlap, as the specification says.
 */
export function rangeExprToFrames(expr: string): { frames: string; count: number } {
  const runs: Run[] = [];
  for (const raw of expr.split(',')) {
    const part = raw.trim();
    const m = ELEMENT.exec(part);
    if (!m) throw new Error(`'${part}' is not an integer, a range 'A-B' or a stepped range 'A-B:N' (in '${expr}')`);
    const x = Number(m[1]);
    const y = m[2] === undefined ? x : Number(m[2]);
    const n = m[3] === undefined ? 1 : Number(m[3]);
    if (n === 0) throw new Error(`the step of '${part}' must not be 0`);
    // values x, x+n, … while on y's side of x (n < 0 counts down); only x when y lies the other way
    const k = (n > 0 ? y >= x : y <= x) ? Math.floor((y - x) / n) : 0;
    const end = x + k * n;
    runs.push({ first: Math.min(x, end), last: Math.max(x, end), step: Math.abs(n), lo: Math.min(x, y), hi: Math.max(x, y) });
  }
  runs.sort((a, b) => a.lo - b.lo);
  let count = 0;
  for (let i = 0; i < runs.length; i++) {
    const r = runs[i]!;
    if (i > 0 && r.lo <= runs[i - 1]!.hi) throw new Error(`its ranges overlap (in '${expr}')`);
    if (r.first < 0) throw new Error(`${r.first} is not a frame number: renderbus frames are 0 to ${MAX_FRAME} (in '${expr}')`);
    if (r.last > MAX_FRAME) throw new Error(`${r.last} is over ${MAX_FRAME}, the largest frame number (in '${expr}')`);
    count += (r.last - r.first) / r.step + 1;
  }
  if (count > MAX_FRAMES_PER_JOB) throw new Error(`'${expr}' names ${count} values, more than ${MAX_FRAMES_PER_JOB}`);
  const frames = runs.map((r) => (r.first === r.last ? `${r.first}` : r.step === 1 ? `${r.first}-${r.last}` : `${r.first}-${r.last}x${r.step}`)).join(',');
  return { frames, count };
}

/** A list of integer values (`<IntRangeList>`) as renderbus frames; duplicates are refused (each value is a task). */
export function valuesToFrames(values: readonly number[]): { frames: string; count: number } {
  const sorted = [...values].sort((a, b) => a - b);
  for (let i = 0; i < sorted.length; i++) {
    const v = sorted[i]!;
    if (v < 0 || v > MAX_FRAME) throw new Error(`${v} is not a frame number: renderbus frames are 0 to ${MAX_FRAME}`);
    if (i > 0 && v === sorted[i - 1]) throw new Error(`${v} is listed twice`);
  }
  return { frames: sorted.join(','), count: sorted.length };
}
