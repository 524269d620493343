import { availableParallelism } from 'node:os';
import { mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, extname, join, resolve } from 'node:path';
import sharp from 'sharp';
import { DEFAULT_OUTPUT_PATTERN, FarmError, PROTOCOL_MAJOR, codecs, frameFileName, subjects, type JobDetail } from '../../protocol/index.ts';
import { imageSize, thumbnailRaw, ThumbnailError, type ImageProblem, type RawThumbnail } from '../../actors/media/index.ts';
import { ExitCode, UsageError } from './cli-error.ts';
import type { CommandContext } from './command-context.ts';
import { ask, openFarm } from './farm-client.ts';
import { loadJob } from './job.ts';
import { dateTime, json, plural } from './format.ts';
import { parseCount, parseToken } from './option-values.ts';

export interface ContactSheetOptions {
  out?: string;
  columns?: string;
  width?: string;
  json?: boolean;
}

/** Thumbnail width when --width is not given, in pixels. */
export const DEFAULT_TILE_WIDTH = 240;
const MAX_SHEET_PIXELS = 150_000_000;
const MAX_JPEG_SIDE = 65_535;

/**
 * `renderbus contact-sheet <job>`: one image with every frame's thumbnail and frame number, in
 * frame order, for dailies. Frames that are not done are grey tiles naming their state; done
 * frames whose file cannot be read are listed, and shown as such on the sheet.
 */
export async function contactSheetCommand(c: CommandContext<ContactSheetOptions>): Promise<number> {
  const jobId = parseToken('job id', c.args[0] ?? '');
  const columns = c.opts.columns === undefined ? undefined : parseCount('--columns', c.opts.columns, { min: 1, max: 200 });
  const tileWidth = c.opts.width === undefined ? DEFAULT_TILE_WIDTH : parseCount('--width', c.opts.width, { min: 16, max: 4096 });
  const out = c.opts.out === undefined ? undefined : await outTarget(c.opts.out);

  const fc = await openFarm(c.globals, 'renderbus-contact-sheet');
  let job: JobDetail;
  try {
    job = await loadJob(fc, jobId);
  } finally {
    await fc.close();
  }

  const frames = [...job.frames].sort((a, b) => a.frame - b.frame);
  const done = frames.filter((f) => f.state === 'done').length;
  if (done === 0) {
    const k = job.counts;
    c.io.stderr.write(`renderbus contact-sheet: job ${job.jobId} (${job.name}) has no done frames yet (${job.state}: ${k.queued} queued, ${k.running} running, ${k.failed} failed): nothing to put on a contact sheet\n`);
    return ExitCode.Failed;
  }
  const pattern = job.spec.output?.pattern ?? DEFAULT_OUTPUT_PATTERN;
  const tiles: SheetTile[] = frames.map((f) => ({
    frame: f.frame,
    state: f.state,
    ...(f.state === 'done' ? { path: f.output ?? join(job.outputDir, frameFileName(pattern, f.frame)) } : {}),
  }));
  const file = out === undefined ? resolve(defaultFileName(job)) : out.dir ? join(out.path, defaultFileName(job)) : out.path;
  const format = formatOf(file);
  const aspect = aspectOf(job.spec.resolution); // else makeContactSheet reads it from the first frame
  const sheet = await makeContactSheet({
    title: `${job.name} | job ${job.jobId} | ${job.counts.done}/${job.counts.total} done | ${dateTime(Date.now())}`,
    tiles,
    tileWidth,
    ...(columns !== undefined ? { columns } : {}),
    ...(aspect !== undefined ? { aspect } : {}),
    format,
  });
  await writeAtomically(file, sheet.data);

  if (c.opts.json) {
    c.io.stdout.write(json({
      path: file,
      frames: sheet.tiles.length,
      done,
      width: sheet.width,
      height: sheet.height,
      columns: sheet.columns,
      unreadable: sheet.unreadable.map((u) => ({ frame: u.frame, path: u.error.path, problem: u.error.problem, error: u.error.message })),
      tiles: sheet.tiles,
    }));
  } else {
    const notDone = countStates(frames.filter((f) => f.state !== 'done').map((f) => f.state));
    c.io.stdout.write(`wrote ${file}: ${plural(frames.length, 'frame')} (${done} done${notDone}), ${sheet.columns} columns, ${sheet.width}×${sheet.height} px\n`);
  }
  if (sheet.unreadable.length > 0) {
    const lines = sheet.unreadable.map((u) => `  frame ${u.frame}: ${u.error.message}`);
    c.io.stderr.write(`renderbus contact-sheet: ${plural(sheet.unreadable.length, 'done frame')} could not be read (shown as placeholders on the sheet):\n${lines.join('\n')}\n`);
    return ExitCode.Failed;
  }
  return ExitCode.Ok;
}

function countStates(states: string[]): string {
  const n = new Map<string, number>();
  for (const s of states) n.set(s, (n.get(s) ?? 0) + 1);
  return [...n].map(([s, k]) => `, ${k} ${s}`).join('');
}

/** `<job name>-<job id>-contact-sheet.png`, named like the job's default output dir. */
export function defaultFileName(job: Pick<JobDetail, 'jobId' | 'name'>): string {
  const name = job.name.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^[._]+/, '').slice(0, 80);
  return `${name ? `${name}-` : ''}${job.jobId}-contact-sheet.png`;
}

/** --out: a file (.png, .jpg, .jpeg) or a directory (existing, or written with a trailing '/'). */
async function outTarget(value: string): Promise<{ path: string; dir: boolean }> {
  if (value.trim() === '') throw new UsageError("--out: give a file name ending in .png or .jpg, or a directory");
  const path = resolve(value);
  const isDir = value.endsWith('/') || (await stat(path).then((s) => s.isDirectory(), () => false));
  if (!isDir) formatOf(path, '--out');
  return { path, dir: isDir };
}

function formatOf(file: string, flag?: string): 'png' | 'jpeg' {
  const ext = extname(file).toLowerCase();
  if (ext === '.png') return 'png';
  if (ext === '.jpg' || ext === '.jpeg') return 'jpeg';
  throw new UsageError(`${flag ?? '--out'}: '${basename(file)}' must end in .png or .jpg (PNG is lossless; JPEG is smaller)`);
}

function aspectOf(resolution: string | undefined): number | undefined {
  const m = resolution ? /^(\d+)x(\d+)$/.exec(resolution) : null;
  return m && Number(m[1]) > 0 && Number(m[2]) > 0 ? Number(m[1]) / Number(m[2]) : undefined;
}

async function writeAtomically(file: string, data: Buffer): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    await mkdir(dirname(file), { recursive: true });
    await writeFile(tmp, data);
    await rename(tmp, file);
  } catch (cause) {
    await rm(tmp, { force: true }).catch(() => {});
    throw new FarmError('RB_OUTPUT_FAILED', `cannot write the contact sheet to ${file}: ${(cause as Error).message}`, { cause });
  }
}

// ---------------------------------------------------------------------------------------------
// The sheet itself: no NATS, no CLI; the web monitor and e-mail notifications can call it too.

/** One frame on the sheet: done frames name their file. */
export interface SheetTile {
  frame: number;
  state: string;
  path?: string;
}

export interface ContactSheetInput {
  /** The line across the top. */
  title: string;
  /** In the order they appear, left to right, top to bottom. */
  tiles: SheetTile[];
  /** Thumbnail width in px; the height follows from `aspect`. */
  tileWidth: number;
  /** Default: about a square grid, at least 4 wide (fewer when there are fewer frames). */
  columns?: number;
  /** Frame width ÷ height; default from the first readable done frame, else 4:3. */
  aspect?: number;
  format: 'png' | 'jpeg';
  /** How labels are drawn: `svg` text (a system font), `bitmap` (built-in 5×7 glyphs), or `auto`: svg if a font renders here. */
  text?: 'auto' | 'svg' | 'bitmap';
}

/** Where each frame landed on the sheet (an image map for a web page), and its state there. */
export interface PlacedTile {
  frame: number;
  state: string;
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface ContactSheet {
  /** The encoded image (PNG or JPEG). */
  data: Buffer;
  width: number;
  height: number;
  columns: number;
  tiles: PlacedTile[];
  /** Done frames whose file could not be read; they are placeholders on the sheet. */
  unreadable: { frame: number; error: ThumbnailError }[];
}

const BACKGROUND = [0x1e, 0x1e, 0x1e] as const;
const LETTERBOX = [0x00, 0x00, 0x00] as const;
const PLACEHOLDER = '#3a3a3a';
const LABEL_COLOUR = '#e8e8e8';
const PROBLEM_WORDS: Record<ImageProblem, string> = { missing: 'file missing', 'not-a-file': 'not a file', unreadable: 'unreadable', empty: 'empty file', 'not-an-image': 'not an image', corrupt: 'corrupt image' };
const STATE_COLOUR: Record<string, string> = { failed: '#ff6b6b', unreadable: '#ff6b6b', running: '#6bc6ff', cancelled: '#e0c060' };

/** Frames per column count when none is given: about square, at least 4 across. */
export function defaultColumns(frames: number): number {
  return Math.max(1, Math.min(frames, Math.max(4, Math.ceil(Math.sqrt(frames)))));
}

/** Sizes of everything on the sheet, from the thumbnail width. */
export function sheetLayout(count: number, tileWidth: number, aspect: number, columns: number) {
  const tileHeight = Math.max(1, Math.round(tileWidth / aspect));
  const gap = Math.max(4, Math.round(tileWidth * 0.03));
  const fontSize = Math.min(28, Math.max(11, Math.round(tileWidth * 0.075)));
  const labelHeight = Math.round(fontSize * 1.6);
  const titleSize = Math.min(32, Math.max(14, Math.round(fontSize * 1.3)));
  const titleHeight = Math.round(titleSize * 2);
  const rows = Math.ceil(count / columns);
  const width = gap + columns * (tileWidth + gap);
  const height = titleHeight + rows * (tileHeight + labelHeight + gap);
  const place = (i: number) => ({ x: gap + (i % columns) * (tileWidth + gap), y: titleHeight + Math.floor(i / columns) * (tileHeight + labelHeight + gap) });
  return { tileWidth, tileHeight, gap, fontSize, labelHeight, titleSize, titleHeight, rows, columns, width, height, place };
}

/** Runs `fn` over `items`, at most `limit` at a time, keeping the order of the results. */
async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** The contact sheet as an encoded image, with where each frame landed and the frames it could not read. */
export async function makeContactSheet(input: ContactSheetInput): Promise<ContactSheet> {
  const n = input.tiles.length;
  if (n === 0) throw new RangeError('a contact sheet needs at least one frame');
  const columns = Math.min(input.columns ?? defaultColumns(n), n);
  const aspect = input.aspect ?? (await firstAspect(input.tiles)) ?? 4 / 3;
  const L = sheetLayout(n, input.tileWidth, aspect, columns);
  if (L.width * L.height > MAX_SHEET_PIXELS) {
    throw new UsageError(`the sheet would be ${L.width}×${L.height} px (${Math.round((L.width * L.height) / 1e6)} Mpx, at most ${MAX_SHEET_PIXELS / 1e6}): give a smaller --width or more --columns`);
  }
  if (input.format === 'jpeg' && Math.max(L.width, L.height) > MAX_JPEG_SIDE) {
    throw new UsageError(`the sheet would be ${L.width}×${L.height} px and a JPEG is at most ${MAX_JPEG_SIDE} px a side: write a .png, or give a smaller --width or more --columns`);
  }

  // thumbnails decode on libuv's pool (4 threads); more at once only queues and holds memory
  const box = { width: L.tileWidth, height: L.tileHeight };
  const thumbs = await mapLimit(input.tiles, Math.max(2, Math.min(4, availableParallelism())), async (t): Promise<RawThumbnail | ThumbnailError | null> => {
    if (t.state !== 'done' || t.path === undefined) return null;
    try {
      return await thumbnailRaw(t.path, box, rgbHex(LETTERBOX));
    } catch (err) {
      if (err instanceof ThumbnailError) return err;
      throw err;
    }
  });

  const pixels = Buffer.alloc(L.width * L.height * 3);
  pixels.fill(Buffer.from(BACKGROUND));
  const unreadable: ContactSheet['unreadable'] = [];
  const placed: PlacedTile[] = [];
  const drawing = input.text === 'svg' || input.text === 'bitmap' ? input.text : (await svgTextRenders()) ? 'svg' : 'bitmap';
  const text = drawing === 'svg' ? svgText : bitmapText;
  const svg: string[] = [text(input.title, L.gap, Math.round(L.titleHeight / 2), L.titleSize, LABEL_COLOUR, 'start', L.width - 2 * L.gap)];

  input.tiles.forEach((t, i) => {
    const { x, y } = L.place(i);
    const thumb = thumbs[i];
    let state = t.state;
    if (thumb instanceof ThumbnailError) {
      unreadable.push({ frame: t.frame, error: thumb });
      state = 'unreadable';
    }
    placed.push({ frame: t.frame, state, x, y, width: L.tileWidth, height: L.tileHeight });
    if (thumb && !(thumb instanceof ThumbnailError)) {
      fillRect(pixels, L.width, x, y, L.tileWidth, L.tileHeight, LETTERBOX);
      blit(pixels, L.width, thumb, x + Math.floor((L.tileWidth - thumb.width) / 2), y + Math.floor((L.tileHeight - thumb.height) / 2));
    } else {
      svg.push(`<rect x="${x}" y="${y}" width="${L.tileWidth}" height="${L.tileHeight}" fill="${PLACEHOLDER}"/>`);
      const words = thumb instanceof ThumbnailError ? PROBLEM_WORDS[thumb.problem] : state;
      svg.push(text(words, x + L.tileWidth / 2, y + L.tileHeight / 2, L.fontSize, STATE_COLOUR[state] ?? '#bbbbbb', 'middle', L.tileWidth - 4));
    }
    svg.push(text(String(t.frame), x + 2, y + L.tileHeight + Math.round(L.labelHeight / 2), L.fontSize, LABEL_COLOUR, 'start', L.tileWidth - 4));
  });

  const overlay = Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="${L.width}" height="${L.height}">${svg.join('')}</svg>`);
  const image = sharp(pixels, { raw: { width: L.width, height: L.height, channels: 3 }, limitInputPixels: false }).composite([{ input: overlay, top: 0, left: 0, limitInputPixels: false }]);
  const data = input.format === 'jpeg' ? await image.jpeg({ quality: 88 }).toBuffer() : await image.png({ compressionLevel: 6 }).toBuffer();
  return { data, width: L.width, height: L.height, columns, tiles: placed, unreadable };
}

async function firstAspect(tiles: SheetTile[]): Promise<number | undefined> {
  for (const t of tiles) {
    if (t.state !== 'done' || t.path === undefined) continue;
    try {
      const s = await imageSize(t.path);
      return s.width / s.height;
    } catch {
      // an unreadable frame says nothing about the others; try the next
    }
  }
  return undefined;
}

function rgbHex(c: readonly [number, number, number]): string {
  return `#${c.map((v) => v.toString(16).padStart(2, '0')).join('')}`;
}

function fillRect(pixels: Buffer, sheetWidth: number, x: number, y: number, w: number, h: number, rgb: readonly [number, number, number]): void {
  const colour = Buffer.from(rgb);
  for (let row = y; row < y + h; row++) {
    const start = (row * sheetWidth + x) * 3;
    pixels.fill(colour, start, start + w * 3);
  }
}

function blit(pixels: Buffer, sheetWidth: number, t: RawThumbnail, x: number, y: number): void {
  const rowBytes = t.width * 3;
  for (let row = 0; row < t.height; row++) t.data.copy(pixels, ((y + row) * sheetWidth + x) * 3, row * rowBytes, (row + 1) * rowBytes);
}

// ---------------------------------------------------------------------------------------------
// Text. librsvg draws SVG <text> with the system's fonts (fontconfig); a machine without any
// font draws nothing, silently. That is checked once, and then labels are drawn from 5×7 glyphs.

type TextFn = (s: string, x: number, yMiddle: number, size: number, fill: string, anchor: 'start' | 'middle', maxWidth: number) => string;

function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

/** `maxWidth` cuts a long line at roughly DejaVu Sans's average advance (0.6 em). */
const svgText: TextFn = (s, x, yMiddle, size, fill, anchor, maxWidth) => {
  const fit = Math.max(1, Math.floor(maxWidth / (size * 0.6)));
  const shown = s.length > fit ? `${s.slice(0, Math.max(0, fit - 1))}…` : s;
  return `<text x="${x}" y="${yMiddle}" font-family="DejaVu Sans, Liberation Sans, Arial, sans-serif" font-size="${size}" fill="${fill}" text-anchor="${anchor}" dominant-baseline="central">${escapeXml(shown)}</text>`;
};

let svgTextCheck: Promise<boolean> | undefined;

/** How far right a string's ink reaches when drawn at 20 px (0: nothing drawn). */
async function inkWidth(s: string): Promise<number> {
  const probe = `<svg xmlns="http://www.w3.org/2000/svg" width="160" height="30">${svgText(s, 0, 15, 20, '#ffffff', 'start', 160)}</svg>`;
  const { data, info } = await sharp(Buffer.from(probe)).ensureAlpha().extractChannel(3).raw().toBuffer({ resolveWithObject: true });
  let right = 0;
  for (let i = 0; i < data.length; i++) if (data[i]! > 0) right = Math.max(right, (i % info.width) + 1);
  return right;
}

/**
 * Whether SVG text renders legibly here. Without any font, pango draws a box ("tofu") of the
 * same size for every character, so ink alone proves nothing: 'iiii' must be much narrower
 * than 'WWWW', as in every real font. Checked once per process.
 */
export function svgTextRenders(): Promise<boolean> {
  svgTextCheck ??= Promise.all([inkWidth('iiii'), inkWidth('WWWW')]).then(
    ([narrow, wide]) => narrow > 0 && wide > 1.8 * narrow,
    () => false,
  );
  return svgTextCheck;
}

/** 5×7 glyphs, one 5-bit row each from the top (the classic HD44780 character set). Lower case is drawn as upper case. */
const GLYPHS: Record<string, readonly number[]> = {
  '0': [0x0e, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0e], '1': [0x04, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x0e],
  '2': [0x0e, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1f], '3': [0x1f, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0e],
  '4': [0x02, 0x06, 0x0a, 0x12, 0x1f, 0x02, 0x02], '5': [0x1f, 0x10, 0x1e, 0x01, 0x01, 0x11, 0x0e],
  '6': [0x06, 0x08, 0x10, 0x1e, 0x11, 0x11, 0x0e], '7': [0x1f, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
  '8': [0x0e, 0x11, 0x11, 0x0e, 0x11, 0x11, 0x0e], '9': [0x0e, 0x11, 0x11, 0x0f, 0x01, 0x02, 0x0c],
  A: [0x0e, 0x11, 0x11, 0x11, 0x1f, 0x11, 0x11], B: [0x1e, 0x11, 0x11, 0x1e, 0x11, 0x11, 0x1e],
  C: [0x0e, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0e], D: [0x1c, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1c],
  E: [0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x1f], F: [0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x10],
  G: [0x0e, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0f], H: [0x11, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11],
  I: [0x0e, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e], J: [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0c],
  K: [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11], L: [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1f],
  M: [0x11, 0x1b, 0x15, 0x15, 0x11, 0x11, 0x11], N: [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
  O: [0x0e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e], P: [0x1e, 0x11, 0x11, 0x1e, 0x10, 0x10, 0x10],
  Q: [0x0e, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0d], R: [0x1e, 0x11, 0x11, 0x1e, 0x14, 0x12, 0x11],
  S: [0x0f, 0x10, 0x10, 0x0e, 0x01, 0x01, 0x1e], T: [0x1f, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
  U: [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e], V: [0x11, 0x11, 0x11, 0x11, 0x11, 0x0a, 0x04],
  W: [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0a], X: [0x11, 0x11, 0x0a, 0x04, 0x0a, 0x11, 0x11],
  Y: [0x11, 0x11, 0x11, 0x0a, 0x04, 0x04, 0x04], Z: [0x1f, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1f],
  '-': [0, 0, 0, 0x1f, 0, 0, 0], _: [0, 0, 0, 0, 0, 0, 0x1f], '.': [0, 0, 0, 0, 0, 0x0c, 0x0c],
  ':': [0, 0x0c, 0x0c, 0, 0x0c, 0x0c, 0], '/': [0, 0x01, 0x02, 0x04, 0x08, 0x10, 0],
  '#': [0x0a, 0x0a, 0x1f, 0x0a, 0x1f, 0x0a, 0x0a], '(': [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
  ')': [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08], '|': [0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
  ' ': [0, 0, 0, 0, 0, 0, 0], '?': [0x0e, 0x11, 0x01, 0x02, 0x04, 0, 0x04],
};

/** Text as one SVG path of squares: 7 glyph pixels tall at about `size` (a font's em), 6 wide per character. */
const bitmapText: TextFn = (s, x, yMiddle, size, fill, anchor, maxWidth) => {
  const px = Math.max(1, Math.round(size / 9));
  const fit = Math.max(1, Math.floor(maxWidth / (6 * px)));
  const chars = [...s.toUpperCase()].slice(0, fit);
  const left = Math.round(anchor === 'middle' ? x - (chars.length * 6 * px - px) / 2 : x);
  const top = Math.round(yMiddle - (7 * px) / 2);
  const d: string[] = [];
  chars.forEach((ch, i) => {
    const rows = GLYPHS[ch] ?? GLYPHS['?']!;
    rows.forEach((bits, r) => {
      for (let col = 0; col < 5; col++) if (bits & (0x10 >> col)) d.push(`M${left + (i * 6 + col) * px} ${top + r * px}h${px}v${px}h-${px}z`);
    });
  });
  return d.length === 0 ? '' : `<path d="${d.join('')}" fill="${fill}"/>`;
};
