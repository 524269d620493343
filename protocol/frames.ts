import { FarmError } from './errors.ts';

/** Largest frame number and frame count a job may name: keeps a typo from queueing billions. */
export const MAX_FRAME = 9_999_999;
export const MAX_FRAMES_PER_JOB = 1_000_000;

/**
 * Frames as runs of consecutive numbers, ascending, neither overlapping nor touching: `1-1000000`
 * is one run, so a job's frame list costs what its ranges cost, not a number per frame.
 */
export interface FrameRuns {
  /** First frame of each run. */
  starts: Int32Array;
  /** Frames in each run (at least 1). */
  lengths: Int32Array;
  /** Frames in all the runs. */
  count: number;
}

/**
 * Parses a frame list: `1-100`, `1-100x5` (every 5th), `1,5,10-12`, or mixes of those.
 * Returns the frames in ascending order without duplicates.
 */
export function parseFrames(text: string): number[] {
  return expandRuns(parseFrameRuns(text));
}

/** Parses a frame list (as parseFrames) into runs, without listing every frame. */
export function parseFrameRuns(text: string): FrameRuns {
  const src = String(text).trim();
  if (src === '') throw new FarmError('RB_BAD_FRAMES', 'frame range is empty');
  // every part is checked and counted before any is expanded: a list naming too many frames
  // costs nothing to refuse (overlapping parts count twice here; nobody overlaps a million frames)
  const ranges: [number, number, number][] = [];
  let count = 0;
  for (const raw of src.split(',')) {
    const part = raw.trim();
    const m = /^(\d+)(?:-(\d+)(?:x(\d+))?)?$/.exec(part);
    if (!m) {
      throw new FarmError('RB_BAD_FRAMES', `'${part}' is not a frame, a range 'A-B' or a stepped range 'A-BxN' (in '${src}')`);
    }
    const first = Number(m[1]);
    const last = m[2] === undefined ? first : Number(m[2]);
    const step = m[3] === undefined ? 1 : Number(m[3]);
    if (first > MAX_FRAME || last > MAX_FRAME) throw new FarmError('RB_BAD_FRAMES', `frame numbers go up to ${MAX_FRAME} (in '${part}')`);
    if (last < first) throw new FarmError('RB_BAD_FRAMES', `range '${part}' ends before it starts`);
    if (step < 1) throw new FarmError('RB_BAD_FRAMES', `step in '${part}' must be at least 1`);
    count += Math.floor((last - first) / step) + 1;
    if (count > MAX_FRAMES_PER_JOB) throw new FarmError('RB_BAD_FRAMES', `'${src}' names more than ${MAX_FRAMES_PER_JOB} frames`);
    ranges.push([first, last, step]);
  }
  // a plain range is one interval; a stepped one is a frame per interval (its frames are apart)
  const spans: [number, number][] = [];
  for (const [first, last, step] of ranges) {
    if (step === 1 || first === last) spans.push([first, last]);
    else for (let f = first; f <= last; f += step) spans.push([f, f]);
  }
  spans.sort((a, b) => a[0] - b[0]);
  const starts: number[] = [];
  const ends: number[] = [];
  for (const [a, b] of spans) {
    const n = ends.length;
    if (n > 0 && a <= ends[n - 1]! + 1) ends[n - 1] = Math.max(ends[n - 1]!, b);
    else {
      starts.push(a);
      ends.push(b);
    }
  }
  return runsFrom(starts, ends);
}

/** The runs of a list of ascending frames without duplicates. */
export function runsOf(frames: readonly number[]): FrameRuns {
  const starts: number[] = [];
  const ends: number[] = [];
  for (const f of frames) {
    const n = ends.length;
    if (n > 0 && f === ends[n - 1]! + 1) ends[n - 1] = f;
    else {
      starts.push(f);
      ends.push(f);
    }
  }
  return runsFrom(starts, ends);
}

function runsFrom(starts: number[], ends: number[]): FrameRuns {
  const lengths = Int32Array.from(starts, (s, i) => ends[i]! - s + 1);
  let count = 0;
  for (const n of lengths) count += n;
  return { starts: Int32Array.from(starts), lengths, count };
}

/** Every frame of the runs, ascending. */
export function expandRuns(r: FrameRuns): number[] {
  const out: number[] = [];
  for (let i = 0; i < r.starts.length; i++) for (let f = r.starts[i]!, end = f + r.lengths[i]!; f < end; f++) out.push(f);
  return out;
}

/** The run holding a frame, or -1. */
export function runOf(r: FrameRuns, frame: number): number {
  let lo = 0;
  let hi = r.starts.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (r.starts[mid]! > frame) hi = mid - 1;
    else if (frame >= r.starts[mid]! + r.lengths[mid]!) lo = mid + 1;
    else return mid;
  }
  return -1;
}

/** Tasks the runs make in chunks of at most `chunk` frames (a task never spans two runs). */
export function countTasks(r: FrameRuns, chunk: number): number {
  const size = Math.max(1, Math.floor(chunk));
  let n = 0;
  for (const len of r.lengths) n += Math.ceil(len / size);
  return n;
}

/** Compact text form of a frame list, the inverse of parseFrames for display (`1-3,7,9-10`). */
export function formatFrames(frames: readonly number[]): string {
  const parts: string[] = [];
  let i = 0;
  while (i < frames.length) {
    let j = i;
    while (j + 1 < frames.length && frames[j + 1] === frames[j]! + 1) j++;
    parts.push(i === j ? String(frames[i]) : `${frames[i]}-${frames[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}

/**
 * Splits frames into tasks of at most `chunk` frames; a task holds only consecutive
 * frames, since a renderer renders a chunk as one contiguous animation range.
 */
export function chunkFrames(frames: readonly number[], chunk: number): number[][] {
  const size = Math.max(1, Math.floor(chunk));
  const tasks: number[][] = [];
  let cur: number[] = [];
  for (const f of frames) {
    const prev = cur[cur.length - 1];
    if (cur.length > 0 && (cur.length >= size || f !== prev! + 1)) {
      tasks.push(cur);
      cur = [];
    }
    cur.push(f);
  }
  if (cur.length > 0) tasks.push(cur);
  return tasks;
}
