import { close, read } from 'node:fs';
import { promisify } from 'node:util';
import sharp, { type Sharp } from 'sharp';
import { FarmError } from '../../protocol/index.ts';
import { openToRead } from '../files/index.ts';

const readFd = promisify(read);
const closeFd = promisify(close);

/** The box a thumbnail fits inside, in pixels; the image keeps its aspect ratio. */
export interface ThumbnailBox {
  width: number;
  height: number;
}

export interface ThumbnailOptions extends ThumbnailBox {
  /** Encoding of the result (default png). */
  format?: 'png' | 'jpeg';
  /** JPEG quality 1-100 (default 80). */
  quality?: number;
}

/** A decoded thumbnail: 8-bit RGB pixels, row after row, for compositing without a re-decode. */
export interface RawThumbnail {
  data: Buffer;
  width: number;
  height: number;
  channels: 3;
}

/** What is wrong with an image file, for callers that branch (the contact sheet lists them). */
export const ImageProblem = { Missing: 'missing', NotAFile: 'not-a-file', Unreadable: 'unreadable', Empty: 'empty', NotAnImage: 'not-an-image', Corrupt: 'corrupt' } as const;
export type ImageProblem = (typeof ImageProblem)[keyof typeof ImageProblem];

/**
 * A frame file that cannot be made into a thumbnail. The message names the file and what is
 * wrong with it; `problem` says the same for code.
 */
export class ThumbnailError extends FarmError {
  override name = 'ThumbnailError';
  readonly path: string;
  readonly problem: ImageProblem;
  constructor(path: string, problem: ImageProblem, detail: string, opts: { cause?: unknown } = {}) {
    // protocol/errors.ts has no image code yet; RB_OUTPUT_FAILED is the nearest ("the output is bad")
    super('RB_OUTPUT_FAILED', `${path}: ${detail}`, opts);
    this.path = path;
    this.problem = problem;
  }
}

// Bigger inputs are refused rather than decoded: a 16k × 16k frame is already 256 Mpx.
const MAX_INPUT_PIXELS = 16_384 * 16_384;

function checkBox(box: ThumbnailBox): void {
  for (const side of ['width', 'height'] as const) {
    const v = box[side];
    if (!Number.isInteger(v) || v < 1 || v > 16_384) throw new RangeError(`thumbnail ${side} must be a whole number of pixels, 1-16384 (got ${v})`);
  }
}

/**
 * Reads the file whole; every way it can fail becomes a ThumbnailError naming the file. Frames
 * sit in artists' output folders: a symbolic link there (to /etc/shadow, say) is never followed,
 * and a FIFO or device is never read (files/no-follow.ts), since the monitor and the notifier
 * read with the farm's rights and show what they read.
 */
async function readImageFile(path: string): Promise<Buffer> {
  let bytes: Buffer;
  try {
    const { fd, stats } = await openToRead(path);
    try {
      bytes = Buffer.alloc(stats.size);
      let at = 0;
      while (at < bytes.length) {
        const { bytesRead: n } = await readFd(fd, bytes, at, bytes.length - at, at);
        if (n === 0) break; // it shrank meanwhile
        at += n;
      }
      bytes = bytes.subarray(0, at);
    } finally {
      await closeFd(fd).catch(() => {});
    }
  } catch (cause) {
    if (cause instanceof FarmError && cause.code === 'RB_UNSAFE_PATH') {
      throw new ThumbnailError(path, ImageProblem.NotAFile, cause.message.startsWith(`${path} `) ? cause.message.slice(path.length + 1) : cause.message, { cause });
    }
    const code = (cause as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new ThumbnailError(path, ImageProblem.Missing, 'no such file', { cause });
    if (code === 'EACCES' || code === 'EPERM') throw new ThumbnailError(path, ImageProblem.Unreadable, 'permission denied', { cause });
    throw new ThumbnailError(path, ImageProblem.Unreadable, `cannot read: ${(cause as Error).message}`, { cause });
  }
  if (bytes.length === 0) throw new ThumbnailError(path, ImageProblem.Empty, 'empty file (0 bytes), not an image');
  return bytes;
}

/** A sharp failure in words a user can act on. */
function decodeError(path: string, bytes: Buffer, cause: unknown): ThumbnailError {
  const message = (cause as Error).message ?? String(cause);
  if (/unsupported image format/i.test(message)) {
    const head = bytes.subarray(0, 16).toString('latin1').replace(/[^\x20-\x7e]/g, '.');
    return new ThumbnailError(path, ImageProblem.NotAnImage, `not an image (${bytes.length} bytes starting '${head}'; PNG, JPEG, TIFF, WebP and the other formats of libvips are read)`, { cause });
  }
  if (/pixel limit/i.test(message)) return new ThumbnailError(path, ImageProblem.Corrupt, `image too large to read (over ${MAX_INPUT_PIXELS / 1_048_576} Mpx)`, { cause });
  return new ThumbnailError(path, ImageProblem.Corrupt, `corrupt or truncated image: ${message.trim().replace(/:$/, '')}`, { cause });
}

/** The decode-and-shrink part every thumbnail shares: oriented, fitted inside the box (up or down). */
function pipeline(bytes: Buffer, box: ThumbnailBox): Sharp {
  return sharp(bytes, { limitInputPixels: MAX_INPUT_PIXELS, autoOrient: true }).resize(box.width, box.height, { fit: 'inside' });
}

/**
 * A thumbnail of an image file (a rendered frame: PNG, JPEG, …), fitted inside `width` ×
 * `height` keeping its aspect ratio, encoded as PNG (default, keeps alpha) or JPEG (alpha
 * flattened onto black). Throws ThumbnailError for a missing, empty, non-image or corrupt file.
 */
export async function thumbnail(path: string, opts: ThumbnailOptions): Promise<Buffer> {
  checkBox(opts);
  const bytes = await readImageFile(path);
  try {
    const p = pipeline(bytes, opts);
    if (opts.format === 'jpeg') return await p.flatten({ background: '#000000' }).toColourspace('srgb').jpeg({ quality: opts.quality ?? 80 }).toBuffer();
    // 16-bit frames (POV-Ray +FN16) become 8-bit: a thumbnail gains nothing from the depth
    return await p.toColourspace('srgb').png({ compressionLevel: 6 }).toBuffer();
  } catch (cause) {
    throw decodeError(path, bytes, cause);
  }
}

/**
 * The same thumbnail as decoded 8-bit RGB pixels (alpha flattened onto `background`), for
 * callers that composite many thumbnails into one image.
 */
export async function thumbnailRaw(path: string, box: ThumbnailBox, background = '#000000'): Promise<RawThumbnail> {
  checkBox(box);
  const bytes = await readImageFile(path);
  try {
    const { data, info } = await pipeline(bytes, box).flatten({ background }).toColourspace('srgb').removeAlpha().raw().toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`expected 3 channels after flattening, got ${info.channels}`);
    return { data, width: info.width, height: info.height, channels: 3 };
  } catch (cause) {
    throw decodeError(path, bytes, cause);
  }
}

/** An image file's pixel size (read from its header only), or a ThumbnailError. */
export async function imageSize(path: string): Promise<{ width: number; height: number }> {
  const bytes = await readImageFile(path);
  try {
    const m = await sharp(bytes, { limitInputPixels: MAX_INPUT_PIXELS, autoOrient: true }).metadata();
    if (!m.width || !m.height) throw new Error('no size in the header');
    // autoOrient swaps the sides of a rotated JPEG in `autoOrient` metadata only
    const o = m.autoOrient;
    return o ? { width: o.width, height: o.height } : { width: m.width, height: m.height };
  } catch (cause) {
    throw decodeError(path, bytes, cause);
  }
}
