import { createHash } from 'node:crypto';

/**
 * Content-defined chunking (FastCDC: a gear hash rolled over the bytes, "normalised" with a
 * stricter mask before the average size and a looser one after it). A boundary depends only on
 * the few dozen bytes before it, so an edit changes the chunk it falls in (and at most the next),
 * and an insertion shifts no later boundary: the chunks after it are the same blobs as before,
 * already in the receiver's store. No well-kept npm package does this (the `rabin*` ones are
 * native bindings or unmaintained), and it is this short.
 */

/** Files larger than this travel as chunks; smaller ones as one blob. */
export const CHUNK_FILES_ABOVE = 4 * 1024 * 1024;
export const CHUNK_MIN = 256 * 1024;
export const CHUNK_AVG = 1024 * 1024;
export const CHUNK_MAX = 4 * 1024 * 1024;

// The gear table: 256 fixed 32-bit values, derived from sha256 so that every site (and every
// version of this code) cuts the same content at the same places. Changing it would make every
// large file look new to every receiver once.
const GEAR = new Int32Array(256);
for (let i = 0; i < 256; i++) GEAR[i] = createHash('sha256').update(`renderbus-gear-${i}`).digest().readInt32BE(0);

// Bit k of the hash depends on the last k + 1 bytes only, so the masks take the top bits (the
// last 32 bytes). 2^20 ≈ CHUNK_AVG: 22 bits before the average (cuts rarer), 18 after (more likely).
const MASK_S = 0xfffffc00 | 0; // top 22 bits
const MASK_L = 0xffffc000 | 0; // top 18 bits

/**
 * A streaming chunker: feed it a file's bytes in any pieces, it says where chunks end. The cuts
 * are the same however the bytes are split into pieces.
 */
export class ContentChunker {
  private h = 0;
  /** Bytes in the chunk under way. */
  private len = 0;

  /** Feeds `buf`; returns the offsets in `buf` just after each chunk that ends in it. */
  push(buf: Uint8Array): number[] {
    const cuts: number[] = [];
    const n = buf.length;
    let h = this.h;
    let len = this.len;
    let i = 0;
    while (i < n) {
      if (len < CHUNK_MIN) {
        // no cut can fall before the minimum: skip those bytes unhashed (FastCDC's cut-point skipping)
        const skip = Math.min(CHUNK_MIN - len, n - i);
        i += skip;
        len += skip;
        continue;
      }
      // the strict mask up to the average, then the loose one up to the maximum
      const strict = len < CHUNK_AVG;
      const mask = strict ? MASK_S : MASK_L;
      const end = Math.min(n, i + (strict ? CHUNK_AVG : CHUNK_MAX) - len);
      const from = i;
      let cut = false;
      for (; i < end; i++) {
        h = ((h << 1) + GEAR[buf[i]!]!) | 0;
        if ((h & mask) === 0) {
          i++;
          cut = true;
          break;
        }
      }
      len += i - from;
      if (cut || len >= CHUNK_MAX) {
        cuts.push(i);
        h = 0;
        len = 0;
      }
    }
    this.h = h;
    this.len = len;
    return cuts;
  }

  /** Bytes of the last chunk, not yet cut (the end of the file cuts it). */
  get pending(): number {
    return this.len;
  }
}

/** The chunk sizes of `data`, in order (the last one is what is left at the end). */
export function chunkSizes(data: Uint8Array): number[] {
  const c = new ContentChunker();
  const sizes: number[] = [];
  let last = 0;
  for (const cut of c.push(data)) {
    sizes.push(cut - last);
    last = cut;
  }
  if (last < data.length) sizes.push(data.length - last);
  return sizes;
}
