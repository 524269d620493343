import { FarmError } from './errors.ts';

/** Largest frame number and frame count a job may name: keeps a typo from queueing billions. */
export const MAX_FRAME = 9_999_999;
export const MAX_FRAMES_PER_JOB = 1_000_000;

/**
 * Parses a frame list: `1-100`, `1-100x5` (every 5th), `1,5,10-12`, or mixes of those.
 * Returns the frames in ascending order without duplicates.
 */
export function parseFrames(text: string): number[] {
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
  const out = new Set<number>();
  for (const [first, last, step] of ranges) for (let f = first; f <= last; f += step) out.add(f);
  return [...out].sort((a, b) => a - b);
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
