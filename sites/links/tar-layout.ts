import { BLOB_ENTRY, BUNDLE_ENTRY, FarmError } from '../../protocol/index.ts';

/**
 * A bundle tar's shape without its contents: its 512-byte entry headers in order and the zero
 * bytes after the last entry. The sender sends this beside the manifest, the receiver rebuilds the
 * tar from its content store byte for byte (so a bundle arrives identical, and any signature over
 * the manifest bytes still holds). Pure: parsing and checking only.
 */

export const BLOCK = 512;

export interface TarEntry {
  /** What the entry holds: the manifest, the signature, or a blob (its sha256). */
  what: { kind: 'manifest' } | { kind: 'signature' } | { kind: 'blob'; sha256: string };
  size: number;
  header: Uint8Array;
}

const bad = (msg: string) => new FarmError('RB_BAD_BUNDLE', `tar layout: ${msg}`);

/** Padding after an entry of `size` bytes, up to the next block. */
export const padding = (size: number): number => (BLOCK - (size % BLOCK)) % BLOCK;

/** One header's name and size, checked: its checksum, a regular file, a bundle entry name. */
export function parseHeader(h: Uint8Array): TarEntry {
  if (h.length !== BLOCK) throw bad(`a header is ${h.length} bytes, not ${BLOCK}`);
  const field = (at: number, len: number) => {
    const b = h.subarray(at, at + len);
    const end = b.indexOf(0);
    return Buffer.from(end < 0 ? b : b.subarray(0, end)).toString('latin1');
  };
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : h[i]!;
  const stored = parseInt(field(148, 8).trim(), 8);
  if (stored !== sum) throw bad('a header checksum does not match');
  const name = field(0, 100);
  const typeflag = String.fromCharCode(h[156]!);
  if (typeflag !== '0' && typeflag !== '\0') throw bad(`entry '${name}' is not a regular file`);
  if (field(345, 155) !== '') throw bad(`entry '${name}' has a ustar prefix`);
  const sizeText = field(124, 12).trim();
  if (!/^[0-7]{1,11}$/.test(sizeText)) throw bad(`entry '${name}' has no octal size`);
  const size = parseInt(sizeText, 8);
  if (name === BUNDLE_ENTRY.manifest) return { what: { kind: 'manifest' }, size, header: h };
  if (name === BUNDLE_ENTRY.signature) return { what: { kind: 'signature' }, size, header: h };
  const sha256 = BLOB_ENTRY.exec(name)?.[1];
  if (!sha256) throw bad(`entry '${name}' is not a bundle entry`);
  return { what: { kind: 'blob', sha256 }, size, header: h };
}

/**
 * The entries of a layout (headers concatenated), checked against what the receiver knows: the
 * manifest first with its size, the signature's size, every blob of the manifest exactly once
 * with its size, nothing else. A hostile layout can therefore only describe the bundle itself.
 */
export function checkLayout(headers: Uint8Array, o: { manifestSize: number; signatureSize?: number; blobs: ReadonlyMap<string, number> }): TarEntry[] {
  if (headers.length % BLOCK !== 0) throw bad(`${headers.length} bytes of headers is not whole blocks`);
  const entries: TarEntry[] = [];
  const seen = new Set<string>();
  for (let at = 0; at < headers.length; at += BLOCK) {
    const e = parseHeader(headers.subarray(at, at + BLOCK));
    const key = e.what.kind === 'blob' ? e.what.sha256 : e.what.kind;
    if (seen.has(key)) throw bad(`entry ${key} appears twice`);
    seen.add(key);
    if (entries.length === 0 && e.what.kind !== 'manifest') throw bad('the first entry is not the manifest');
    const want = e.what.kind === 'manifest' ? o.manifestSize : e.what.kind === 'signature' ? o.signatureSize : o.blobs.get(e.what.sha256);
    if (want === undefined) throw bad(`entry ${key} is not part of this bundle`);
    if (want !== e.size) throw bad(`entry ${key} says ${e.size} bytes, the bundle ${want}`);
    entries.push(e);
  }
  for (const h of o.blobs.keys()) if (!seen.has(h)) throw bad(`blob ${h} has no entry`);
  if (o.signatureSize !== undefined && !seen.has('signature')) throw bad('the signature has no entry');
  return entries;
}

/** The tar's size from its layout. */
export function layoutSize(entries: readonly TarEntry[], trailer: number): number {
  return entries.reduce((n, e) => n + BLOCK + e.size + padding(e.size), 0) + trailer;
}
