import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { extname } from 'node:path';
import sharp from 'sharp';
import type { Resolution } from '../../protocol/index.ts';

/**
 * What a renderer left in the work dir is a frame before it is delivered: a regular file, not
 * empty, and, when its name says it is an image, one that decodes as that image, of the size the
 * job asked for when the renderer was told that size (RenderAdapter.frameCheck: every adapter has
 * one; a command template is told the size only through `{width}`/`{height}`). A renderer that
 * exits 0 having written an empty file, a text file named .png, half a PNG, or a frame of the
 * scene's own size where the job overrode it fails the task (RB_OUTPUT_FAILED) instead of
 * delivering it over a good frame.
 *
 * PNG, JPEG, TIFF and WebP are decoded whole (sharp, failing on truncated data); OpenEXR, Radiance
 * HDR, Targa, BMP and PPM have their headers read for their size (no decoder here reads them),
 * and a file shorter than its header says is cut short (dataEnd).
 * Other extensions are only checked to be non-empty files.
 */

/** A produced frame that is no frame, with why. */
export interface BadFrame {
  frame: number;
  file: string;
  reason: string;
}

const DECODED = new Set(['.png', '.jpg', '.jpeg', '.tif', '.tiff', '.webp']);
const HEAD_BYTES = 64 * 1024;

type Size = { width: number; height: number };

/** `check` absent: each must be a non-empty file; given: it must decode too, and be of `check.size` when given. */
export async function checkFrames<T extends { frame: number; file: string }>(produced: readonly T[], check?: { size?: Resolution }): Promise<{ good: T[]; bad: BadFrame[] }> {
  const checked = await Promise.all(produced.map(async (p) => ({ p, reason: await frameProblem(p.file, check) })));
  return {
    good: checked.filter((c) => c.reason === undefined).map((c) => c.p),
    bad: checked.filter((c) => c.reason !== undefined).map(({ p, reason }) => ({ frame: p.frame, file: p.file, reason: reason! })),
  };
}

/** Why `file` is no frame of that size, or undefined. A missing file or a link is left to delivery, which says so. */
export async function frameProblem(file: string, check?: { size?: Resolution }): Promise<string | undefined> {
  const expected = check?.size;
  let fh;
  try {
    fh = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return undefined; // not there, or a link: moveFrames and sizeFrames name it
  }
  let head: Buffer;
  let size: number;
  let got: Size | string;
  const ext = extname(file).toLowerCase();
  try {
    const st = await fh.stat();
    if (!st.isFile()) return undefined;
    size = st.size;
    if (size === 0) return `the renderer wrote ${file} empty (0 bytes)`;
    head = Buffer.alloc(Math.min(size, HEAD_BYTES));
    await fh.read(head, 0, head.length, 0);
    if (!check) return undefined;
    if (DECODED.has(ext)) got = await decoded(file, ext);
    else {
      const read = HEADERS[ext];
      if (!read) return undefined;
      got = read(head) ?? `${file} is not ${FORMAT_NAMES[ext]} image (it starts ${JSON.stringify(head.subarray(0, 8).toString('latin1'))})`;
      // these are not decoded: a file cut short is told by where its header says its data ends
      const end = typeof got === 'string' ? undefined : await dataEnd(ext, head, fh);
      if (end !== undefined && end > size) return `${file} is cut short: its header says ${end} bytes, it has ${size}`;
    }
  } finally {
    await fh.close();
  }
  if (typeof got === 'string') return got.startsWith(file) ? got : `${file} does not decode as ${FORMAT_NAMES[ext]} image: ${got}`;
  if (expected && (got.width !== expected.width || got.height !== expected.height)) {
    return `${file} is ${got.width}×${got.height}, the job asks for ${expected.width}×${expected.height}`;
  }
  return undefined;
}

const FORMAT_NAMES: Record<string, string> = {
  '.png': 'a PNG', '.jpg': 'a JPEG', '.jpeg': 'a JPEG', '.tif': 'a TIFF', '.tiff': 'a TIFF', '.webp': 'a WebP',
  '.exr': 'an OpenEXR', '.hdr': 'a Radiance HDR', '.tga': 'a Targa', '.bmp': 'a BMP', '.ppm': 'a PPM', '.pgm': 'a PGM',
};

/** The whole image decoded, or why it does not decode. */
async function decoded(file: string, ext: string): Promise<Size | string> {
  try {
    const image = sharp(file, { failOn: 'truncated', limitInputPixels: 1 << 28 });
    const { format } = await image.metadata();
    const { info } = await image.raw().toBuffer({ resolveWithObject: true });
    const wanted = ext === '.png' ? 'png' : ext === '.webp' ? 'webp' : ext.startsWith('.tif') ? 'tiff' : 'jpeg';
    if (format !== wanted) return `it is ${format ?? 'another format'}, not ${FORMAT_NAMES[ext]}`;
    return { width: info.width, height: info.height };
  } catch (err) {
    return (err as Error).message.replace(/^Input file /, '').replace(/\s+/g, ' ').trim();
  }
}

/** Header readers: the image's size, or undefined when the bytes are not that format. */
const HEADERS: Record<string, (b: Buffer) => Size | undefined> = {
  '.exr': exrSize,
  '.hdr': hdrSize,
  '.tga': tgaSize,
  '.bmp': bmpSize,
  '.ppm': (b) => pnmSize(b, ['P6', 'P3']),
  '.pgm': (b) => pnmSize(b, ['P5', 'P2']),
};

/** OpenEXR: magic 76 2f 31 01, a version, then attributes (name\0 type\0 size value) until an empty name; size from `dataWindow` (box2i). */
export function exrSize(b: Buffer): Size | undefined {
  return exrHeader(b)?.size;
}

/** Scanlines per block by OpenEXR compression (NONE, RLE, ZIPS: 1; ZIP, PXR24: 16; PIZ, B44, B44A, DWAA: 32; DWAB: 256). */
const EXR_LINES: readonly number[] = [1, 1, 1, 16, 32, 16, 32, 32, 32, 256];

/**
 * An OpenEXR header read: its size, and for a single-part scanline file whose whole header is
 * in `b`, its compression and where its offset table starts.
 */
function exrHeader(b: Buffer): { size: Size; compression?: number; tableAt?: number } | undefined {
  if (b.length < 8 || b.readUInt32LE(0) !== 20000630) return undefined;
  let at = 8;
  let size: Size | undefined;
  let compression: number | undefined;
  const str = () => {
    const end = b.indexOf(0, at);
    if (end < 0) return undefined;
    const s = b.toString('latin1', at, end);
    at = end + 1;
    return s;
  };
  // tiled (0x200), deep (0x800) and multi-part (0x1000) files lay their blocks out otherwise
  const scanlines = (b.readUInt32LE(4) & 0x1a00) === 0;
  for (let n = 0; n < 1000 && at < b.length; n++) {
    const name = str();
    if (name === undefined) return size ? { size } : undefined;
    if (name === '') return size ? { size, ...(scanlines && compression !== undefined ? { compression, tableAt: at } : {}) } : undefined;
    const type = str();
    if (type === undefined || at + 4 > b.length) return size ? { size } : undefined;
    const len = b.readInt32LE(at);
    at += 4;
    if (len < 0 || at + len > b.length) return size ? { size } : undefined;
    if (name === 'dataWindow' && type === 'box2i' && len === 16) {
      const [xMin, yMin, xMax, yMax] = [0, 4, 8, 12].map((o) => b.readInt32LE(at + o)) as [number, number, number, number];
      if (xMax < xMin || yMax < yMin) return undefined;
      size = { width: xMax - xMin + 1, height: yMax - yMin + 1 };
    }
    if (name === 'compression' && type === 'compression' && len === 1) compression = b[at];
    at += len;
  }
  return size ? { size } : undefined;
}

/**
 * Where a header-read image's data ends, by its header, or undefined when it does not say
 * (compressed Targa and HDR, ASCII PPM, tiled OpenEXR): OpenEXR by its offset table's last block
 * (its 8-byte block header read from the file), BMP, PPM/PGM and uncompressed Targa by their size.
 */
async function dataEnd(ext: string, b: Buffer, fh: FileHandle): Promise<number | undefined> {
  if (ext === '.exr') {
    const h = exrHeader(b);
    const lines = h?.compression !== undefined ? EXR_LINES[h.compression] : undefined;
    if (!h || h.tableAt === undefined || lines === undefined) return undefined;
    const blocks = Math.ceil(h.size.height / lines);
    if (h.tableAt + blocks * 8 > b.length) return h.tableAt + blocks * 8 > HEAD_BYTES ? undefined : h.tableAt + blocks * 8;
    let last = 0;
    for (let i = 0; i < blocks; i++) last = Math.max(last, Number(b.readBigUInt64LE(h.tableAt + i * 8)));
    const block = Buffer.alloc(8);
    const { bytesRead } = await fh.read(block, 0, 8, last);
    return bytesRead < 8 ? last + 8 : last + 8 + block.readInt32LE(4);
  }
  if (ext === '.bmp' && b.length >= 34 && b.readUInt32LE(30) === 0) {
    // BI_RGB: rows of bits × width, padded to 4 bytes
    const row = Math.ceil((b.readUInt16LE(28) * b.readInt32LE(18)) / 32) * 4;
    return b.readUInt32LE(10) + row * Math.abs(b.readInt32LE(22));
  }
  if (ext === '.ppm' || ext === '.pgm') {
    const m = /^P([56])(?:\s|#[^\n]*\n)+(\d+)(?:\s|#[^\n]*\n)+(\d+)(?:\s|#[^\n]*\n)+(\d+)\s/.exec(b.toString('latin1', 0, Math.min(b.length, 1024)));
    if (!m) return undefined;
    const [channels, w, h, max] = [m[1] === '6' ? 3 : 1, Number(m[2]), Number(m[3]), Number(m[4])];
    return m[0].length + w * h * channels * (max < 256 ? 1 : 2);
  }
  if (ext === '.tga' && b.length >= 18 && [1, 2, 3].includes(b[2]!)) {
    const map = b[1] === 1 ? b.readUInt16LE(5) * Math.ceil(b[7]! / 8) : 0;
    return 18 + b[0]! + map + b.readUInt16LE(12) * b.readUInt16LE(14) * Math.ceil(b[16]! / 8);
  }
  return undefined;
}

/** Radiance HDR: `#?RADIANCE` (or `#?RGBE`), header lines, a blank line, then `-Y <h> +X <w>`. */
export function hdrSize(b: Buffer): Size | undefined {
  const text = b.toString('latin1', 0, Math.min(b.length, 8192));
  if (!text.startsWith('#?')) return undefined;
  const m = /\n\n([-+])Y (\d+) ([-+])X (\d+)\n/.exec(text);
  return m ? { width: Number(m[4]), height: Number(m[2]) } : undefined;
}

/** Targa: an 18-byte header; image types 1–3 and 9–11; width and height little-endian at 12 and 14. */
export function tgaSize(b: Buffer): Size | undefined {
  if (b.length < 18 || ![1, 2, 3, 9, 10, 11].includes(b[2]!)) return undefined;
  const width = b.readUInt16LE(12);
  const height = b.readUInt16LE(14);
  return width > 0 && height > 0 ? { width, height } : undefined;
}

/** BMP: `BM`, then the info header's width and (signed: top-down when negative) height at 18 and 22. */
export function bmpSize(b: Buffer): Size | undefined {
  if (b.length < 26 || b.toString('latin1', 0, 2) !== 'BM') return undefined;
  const width = b.readInt32LE(18);
  const height = Math.abs(b.readInt32LE(22));
  return width > 0 && height > 0 ? { width, height } : undefined;
}

/** PPM/PGM: the magic, then width, height and maxval as text, with `#` comments between. */
export function pnmSize(b: Buffer, magics: readonly string[]): Size | undefined {
  const text = b.toString('latin1', 0, Math.min(b.length, 1024));
  if (!magics.includes(text.slice(0, 2))) return undefined;
  const tokens = text.slice(2).replace(/#[^\n]*\n/g, ' ').trim().split(/\s+/);
  const [width, height] = [Number(tokens[0]), Number(tokens[1])];
  return Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0 ? { width, height } : undefined;
}
