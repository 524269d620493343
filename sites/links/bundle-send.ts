import { createReadStream } from 'node:fs';
import { open, rename, rm, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { deflateRawSync } from 'node:zlib';
import { FarmError, manifestBlobs, type BundleManifest } from '../../protocol/index.ts';
import { readBundle } from '../bundles/index.ts';
import type { PeerCas } from '../cas/index.ts';
import { BLOCK, padding, parseHeader } from './tar-layout.ts';

/** A bundle from outgoing/<peer>/, read, verified and held in the peer's store, ready to cross. */
export interface OutgoingBundle {
  name: string;
  path: string;
  manifest: BundleManifest;
  manifestBytes: Buffer;
  signature?: Buffer;
  /** sha256 → size, every blob of the bundle. */
  blobs: Map<string, number>;
  /** The tar's entry headers, deflated; and its trailing zero bytes. */
  layout: Buffer;
  trailer: number;
  size: number;
}

/**
 * Reads a bundle dropped for `peer` (readBundle: every blob verified), moves its blobs into the
 * peer's store (the receipt's `missing[]` is answered from there) and notes the tar's headers so
 * the receiver can rebuild it byte for byte. A bundle not from us to this peer is refused.
 */
export async function prepareOutgoing(o: { path: string; name: string; site: string; peer: string; dataDir: string; cas: PeerCas }): Promise<OutgoingBundle> {
  const read = await readBundle({ source: createReadStream(o.path), tempDir: o.cas.tempDir, dataDir: o.dataDir });
  try {
    const m = read.manifest;
    if (m.from !== o.site || m.to !== o.peer) {
      throw new FarmError('RB_BAD_BUNDLE', `${o.name} is from '${m.from}' to '${m.to}'; this folder sends from '${o.site}' to '${o.peer}'`);
    }
    const blobs = manifestBlobs(m);
    for (const [sha256, path] of read.blobs) {
      // adopt takes files straight in the store's temp folder; the reader's folder is one below it
      const tmp = join(o.cas.tempDir, `${sha256}.${basename(read.dir)}.out`);
      await rename(path, tmp);
      await o.cas.adopt(tmp, sha256, blobs.get(sha256)!, { deferDirSync: true });
    }
    await o.cas.flush();
    await o.cas.addRef(m.bundleId, [...blobs.keys()]);
    const { headers, trailer, size } = await tarHeaders(o.path);
    return {
      name: o.name,
      path: o.path,
      manifest: m,
      manifestBytes: read.manifestBytes,
      ...(read.signature ? { signature: read.signature } : {}),
      blobs,
      layout: deflateRawSync(headers),
      trailer,
      size,
    };
  } finally {
    await rm(read.dir, { recursive: true, force: true });
  }
}

/** Walks a tar's headers (no content read): the headers concatenated, the trailing bytes, the size. */
async function tarHeaders(path: string): Promise<{ headers: Buffer; trailer: number; size: number }> {
  const { size } = await stat(path);
  const fh = await open(path, 'r');
  try {
    const parts: Buffer[] = [];
    let at = 0;
    for (;;) {
      const h = Buffer.alloc(BLOCK);
      const { bytesRead } = await fh.read(h, 0, BLOCK, at);
      if (bytesRead < BLOCK) throw new FarmError('RB_BAD_BUNDLE', `${path}: the tar ends inside a header`);
      if (h.every((b) => b === 0)) break;
      const e = parseHeader(h);
      parts.push(h);
      at += BLOCK + e.size + padding(e.size);
    }
    return { headers: Buffer.concat(parts), trailer: size - at, size };
  } finally {
    await fh.close();
  }
}
