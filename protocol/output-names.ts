import { FarmError } from './errors.ts';

/**
 * File name of one frame from an output pattern: the first run of '#' becomes the frame
 * number, zero-padded to the run's length (`shot_####.png`, 7 → `shot_0007.png`).
 */
export function frameFileName(pattern: string, frame: number): string {
  const m = /#+/.exec(pattern);
  if (!m || pattern.includes('/')) throw new FarmError('RB_BAD_JOB', `output pattern '${pattern}' needs a run of '#' for the frame number and no '/'`);
  return pattern.slice(0, m.index) + String(frame).padStart(m[0].length, '0') + pattern.slice(m.index + m[0].length);
}
