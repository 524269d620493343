import type { Writable } from 'node:stream';
import type { FrameCounts, JobOrigin } from '../../protocol/index.ts';

/** Where a command writes: stdout for results, stderr for progress, hints and errors. */
export interface Io {
  stdout: Writable & { isTTY?: boolean; columns?: number };
  stderr: Writable & { isTTY?: boolean; columns?: number };
}

export function processIo(): Io {
  return { stdout: process.stdout, stderr: process.stderr };
}

/** Plain text columns separated by two spaces; the last column is not padded. */
export function table(headers: string[], rows: string[][]): string {
  const all = [headers, ...rows];
  const widths = headers.map((_, i) => Math.max(...all.map((r) => visibleLength(r[i] ?? ''))));
  return `${all
    .map((r) =>
      r
        .map((cell, i) => (i === r.length - 1 ? cell : cell + ' '.repeat(widths[i]! - visibleLength(cell))))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')}\n`;
}

const ANSI = /\x1b\[[0-9;]*m/g;
function visibleLength(s: string): number {
  return s.replace(ANSI, '').length;
}

/** 340ms, 12.3s, 4m05s, 2h03m. */
export function duration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '-';
  if (ms < 1_000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1_000).toFixed(1)}s`;
  const s = Math.round(ms / 1_000);
  if (s < 3_600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  const m = Math.round(s / 60);
  if (m < 48 * 60) return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
  return `${Math.round(m / 60 / 24)}d`;
}

export function ago(at: number | undefined, now = Date.now()): string {
  return at === undefined ? '-' : `${duration(Math.max(0, now - at))} ago`;
}

/** Local time of day with milliseconds: 14:03:07.123. */
export function clock(at: number): string {
  const d = new Date(at);
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

/** Local date and time: 2026-11-21 14:03:07. */
export function dateTime(at: number | undefined): string {
  if (at === undefined) return '-';
  const d = new Date(at);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** `1 frame`, `3 frames`. */
export function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

export function megabytes(mb: number): string {
  return mb >= 10_240 ? `${Math.round(mb / 1024)} GB` : mb >= 1024 ? `${(mb / 1024).toFixed(1)} GB` : `${mb} MB`;
}

/** Cuts a cell to `max` characters with an ellipsis. */
export function cut(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, Math.max(0, max - 1))}…` : s;
}

export function json(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

export interface Paint {
  bold(s: string): string;
  dim(s: string): string;
  red(s: string): string;
  green(s: string): string;
  yellow(s: string): string;
  cyan(s: string): string;
}

/** ANSI colours only on a terminal, and never when NO_COLOR is set. */
export function paint(stream: { isTTY?: boolean }): Paint {
  const on = Boolean(stream.isTTY) && !process.env.NO_COLOR && process.env.TERM !== 'dumb';
  const c = (code: number) => (s: string) => (on ? `\x1b[${code}m${s}\x1b[0m` : s);
  return { bold: c(1), dim: c(2), red: c(31), green: c(32), yellow: c(33), cyan: c(36) };
}

/**
 * A job's frame counts in words: done of total, running, in hand (handed to a slot that has not
 * started them: waiting on that slot), queued, failed.
 */
export function countsText(c: FrameCounts): string {
  const inHand = c.inHand ? `, ${c.inHand} in hand` : '';
  return `${c.done}/${c.total} done, ${c.running} running${inHand}, ${c.queued} queued, ${c.failed} failed`;
}

/** A frame's state as shown: `in hand` for a running one its slot has not started yet. */
export function frameStateText(p: Paint, f: { state: string; inHand?: boolean }): string {
  return f.inHand ? p.yellow('in hand') : stateColour(p, f.state);
}

/** Colour for a job or frame state. */
export function stateColour(p: Paint, state: string): string {
  if (state === 'done') return p.green(state);
  if (state === 'failed') return p.red(state);
  if (state === 'cancelled') return p.yellow(state);
  if (state === 'rendering' || state === 'running') return p.cyan(state);
  return state;
}

/** Where a peer's job came from, as `renderbus job` and `jobs` show it: `from studio, their job j-12`. */
export function originText(o: JobOrigin): string {
  return `from ${o.site}, their job ${o.job}`;
}
