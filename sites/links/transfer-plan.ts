import { createHash } from 'node:crypto';
import { FarmError } from '../../protocol/index.ts';

/**
 * The link's bookkeeping for one bundle, pure (no I/O): which chunks a want asks for, which a
 * receiver still lacks, when a blob is whole. Chunks are fixed: chunk i of a blob covers bytes
 * [i × CHUNK, min(size, (i + 1) × CHUNK)), so a chunk sent twice (a replay, a resend) lands on
 * the same bytes and counts once.
 */

/** Bytes of one `blob` message: well under max_payload (1 MiB), the size the lab measured best. */
export const CHUNK = 256 * 1024;
/** Blob messages published and not yet acknowledged by the local server, at most. */
export const WINDOW = 32;

/** The subject-safe key of a bundle id (ids may hold upper case and dots; subject tokens may not). */
export function bundleKey(bundleId: string): string {
  return createHash('sha256').update(bundleId).digest('hex').slice(0, 32);
}

/** How many chunks a blob of `size` bytes travels in (an empty blob is one empty chunk). */
export const chunkCount = (size: number): number => Math.max(1, Math.ceil(size / CHUNK));

export interface ChunkRef {
  sha256: string;
  /** The blob's size. */
  size: number;
  offset: number;
  length: number;
}

/**
 * The chunks to publish for a want-list, in order. `blobs` is the bundle's blob → size; a want
 * for a hash the bundle does not hold is refused (returned in `refused`, never sent: a peer
 * cannot use us to read our store).
 */
export function planChunks(blobs: ReadonlyMap<string, number>, want: readonly string[]): { chunks: ChunkRef[]; bytes: number; refused: string[] } {
  const chunks: ChunkRef[] = [];
  const refused: string[] = [];
  const seen = new Set<string>();
  let bytes = 0;
  for (const sha256 of want) {
    if (seen.has(sha256)) continue;
    seen.add(sha256);
    const size = blobs.get(sha256);
    if (size === undefined) {
      refused.push(sha256);
      continue;
    }
    for (let i = 0; i < chunkCount(size); i++) {
      const offset = i * CHUNK;
      const length = Math.min(CHUNK, size - offset);
      chunks.push({ sha256, size, offset, length });
      bytes += length;
    }
  }
  return { chunks, bytes, refused };
}

/** One blob being put together by a receiver: which of its chunks arrived. */
export interface BlobAssembly {
  sha256: string;
  size: number;
  got: Set<number>;
}

export type ChunkVerdict =
  | { ok: true; complete: boolean; duplicate: boolean }
  | { ok: false; error: FarmError };

/**
 * Checks a chunk against the blob it claims to be part of, and notes it. A chunk at another offset
 * than the fixed grid, longer or shorter than its place, or past the declared size is refused: a
 * blob can never grow beyond what the manifest declared.
 */
export function acceptChunk(a: BlobAssembly, offset: number, length: number): ChunkVerdict {
  const bad = (why: string) => ({ ok: false as const, error: new FarmError('RB_BAD_BLOB', `blob ${a.sha256} (${a.size} bytes): chunk at ${offset} of ${length} bytes ${why}`) });
  if (!Number.isSafeInteger(offset) || offset < 0 || offset % CHUNK !== 0) return bad(`is not on the ${CHUNK}-byte grid`);
  if (offset > 0 && offset >= a.size) return bad('starts past the declared size');
  const expected = Math.min(CHUNK, a.size - offset);
  if (length !== expected) return bad(`should be ${expected} bytes`);
  const i = offset / CHUNK;
  const duplicate = a.got.has(i);
  a.got.add(i);
  return { ok: true, complete: a.got.size === chunkCount(a.size), duplicate };
}

/** Blobs of a bundle still missing, in the bundle's order, given what the store holds. */
export function stillMissing(blobs: ReadonlyMap<string, number>, present: ReadonlySet<string>): string[] {
  return [...blobs.keys()].filter((h) => !present.has(h));
}

/** Resend rounds after which a sender gives a bundle up (a receiver that keeps missing blobs is broken). */
export const MAX_RESENDS = 3;
