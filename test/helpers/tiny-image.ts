import { deflateSync } from 'node:zlib';
import { PNG } from 'pngjs';

/*
 * Real, tiny images for stand-in renderers: a command job's frame named `.png` or `.exr` must
 * decode as one (actors/render-slot/frame-check.ts), so a stand-in writes these, not text.
 */

/** A valid grey PNG, 2×2 unless told. */
export function tinyPng(width = 2, height = 2): Buffer {
  const png = new PNG({ width, height });
  png.data.fill(128);
  return PNG.sync.write(png);
}

/**
 * A valid OpenEXR of one grey FLOAT channel `Y`, 2×2 unless told: the header's required
 * attributes, the offset table, then ZIP-compressed blocks of 16 scanlines (byte halves split,
 * deltas, zlib, as OpenEXR does), so even 1920×1080 takes a few kilobytes.
 */
export function tinyExr(width = 2, height = 2): Buffer {
  const i32 = (...v: number[]) => Buffer.from(new Int32Array(v).buffer);
  const f32 = (...v: number[]) => Buffer.from(new Float32Array(v).buffer);
  const attr = (name: string, type: string, value: Buffer) => Buffer.concat([Buffer.from(`${name}\0${type}\0`, 'latin1'), i32(value.length), value]);
  const box = i32(0, 0, width - 1, height - 1);
  const header = Buffer.concat([
    i32(20000630, 2),
    attr('channels', 'chlist', Buffer.concat([Buffer.from('Y\0'), i32(2), Buffer.from([0, 0, 0, 0]), i32(1, 1), Buffer.from([0])])),
    attr('compression', 'compression', Buffer.from([3])), // ZIP: 16 scanlines a block
    attr('dataWindow', 'box2i', box),
    attr('displayWindow', 'box2i', box),
    attr('lineOrder', 'lineOrder', Buffer.from([0])),
    attr('pixelAspectRatio', 'float', f32(1)),
    attr('screenWindowCenter', 'v2f', f32(0, 0)),
    attr('screenWindowWidth', 'float', f32(1)),
    Buffer.from([0]),
  ]);
  const blocks: Buffer[] = [];
  for (let y = 0; y < height; y += 16) {
    const raw = f32(...Array<number>(width * Math.min(16, height - y)).fill(0.5));
    const split = Buffer.alloc(raw.length);
    const half = Math.ceil(raw.length / 2);
    for (let i = 0; i < raw.length; i++) split[i % 2 === 0 ? i / 2 : half + (i - 1) / 2] = raw[i]!;
    for (let i = split.length - 1; i > 0; i--) split[i] = (split[i]! - split[i - 1]! + 128 + 256) & 0xff;
    const zipped = deflateSync(split);
    const data = zipped.length < raw.length ? zipped : raw; // stored as is when it would not shrink
    blocks.push(Buffer.concat([i32(y, data.length), data]));
  }
  const offsets = Buffer.alloc(blocks.length * 8);
  blocks.reduce((at, b, i) => (offsets.writeBigUInt64LE(BigInt(at), i * 8), at + b.length), header.length + offsets.length);
  return Buffer.concat([header, offsets, ...blocks]);
}

/**
 * A shell command writing `bytes` to `target` (`{output}`, `"$out"`), for a stand-in's script:
 * every byte but letters and digits as an octal escape of printf, inside double quotes, so it
 * fits in a template's single-quoted `sh -c '…'` and in a script file alike.
 */
export function shellWrite(bytes: Buffer, target: string): string {
  const text = [...bytes].map((b) => (/[A-Za-z0-9]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `\\${b.toString(8).padStart(3, '0')}`)).join('');
  return `printf "${text}" > ${target}`;
}

/** `printf "…" > {output}`: a stand-in's tiny PNG frame. */
export const WRITE_PNG = shellWrite(tinyPng(), '{output}');
