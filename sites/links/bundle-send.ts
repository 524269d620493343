import { open, stat } from 'node:fs/promises';
import { deflateRawSync } from 'node:zlib';
import { DEFAULT_BUNDLE_LIMITS } from '../bundles/index.ts';
import { FarmError, checkBundlePaths, decodeManifest, manifestBlobs, type BundleManifest } from '../../protocol/index.ts';
import { BLOCK, checkLayout, padding } from './tar-layout.ts';

/** A bundle from outgoing/<peer>/, its shape checked, ready to cross. */
export interface OutgoingBundle {
  name: string;
  path: string;
  manifest: BundleManifest;
  manifestBytes: Buffer;
  signature?: Buffer;
  /** sha256 → size, every blob of the bundle. */
  blobs: Map<string, number>;
  /** sha256 → where its bytes start in the tar. */
  offsets: Map<string, number>;
  /** The tar's entry headers, deflated; and its trailing zero bytes. */
  layout: Buffer;
  trailer: number;
  size: number;
}

const bad = (msg: string) => new FarmError('RB_BAD_BUNDLE', msg);

/**
 * Reads a bundle dropped for `peer` without copying it: its headers (plain ustar regular files,
 * checked by `checkLayout`), its manifest (schema, path rules, limits) and signature; the bundle
 * must say it is from us to this peer. The blobs stay in the tar and are read from there when the
 * peer wants them, hashed as they go (`sendBlobs`): a blob that does not match its name fails the
 * bundle, and the receiver refuses it anyway. (A first version read the whole bundle into the
 * sender's store first, with `readBundle`: a third of the time of a cold 256 MB send; docs/federation.md.)
 */
export async function prepareOutgoing(o: { path: string; name: string; site: string; peer: string; dataDir: string }): Promise<OutgoingBundle> {
  const { size } = await stat(o.path);
  const fh = await open(o.path, 'r');
  try {
    const read = async (at: number, len: number) => {
      const b = Buffer.alloc(len);
      const { bytesRead } = await fh.read(b, 0, len, at);
      if (bytesRead < len) throw bad(`${o.name}: the tar ends early`);
      return b;
    };
    const headers: Buffer[] = [];
    const starts: number[] = [];
    let at = 0;
    let manifestBytes: Buffer | undefined;
    let signature: Buffer | undefined;
    for (;;) {
      const h = await read(at, BLOCK);
      if (h.every((b) => b === 0)) break;
      // name and size only here; checkLayout checks every header below, once the manifest is known
      const name = h.subarray(0, 100).toString('latin1').replace(/\0.*$/s, '');
      const entrySize = parseInt(h.subarray(124, 136).toString('latin1').replace(/\0.*$/s, '').trim() || 'x', 8);
      if (!Number.isSafeInteger(entrySize) || entrySize < 0) throw bad(`${o.name}: entry '${name}' has no size`);
      if (headers.length === 0) {
        if (entrySize > DEFAULT_BUNDLE_LIMITS.manifestBytes) throw bad(`${o.name}: its manifest is ${entrySize} bytes, at most ${DEFAULT_BUNDLE_LIMITS.manifestBytes}`);
        manifestBytes = await read(at + BLOCK, entrySize);
      } else if (name === 'manifest.sig' && entrySize <= 4096) {
        signature = await read(at + BLOCK, entrySize);
      }
      if (headers.length > DEFAULT_BUNDLE_LIMITS.entries) throw bad(`${o.name}: more than ${DEFAULT_BUNDLE_LIMITS.entries} entries`);
      headers.push(h);
      starts.push(at + BLOCK);
      at += BLOCK + entrySize + padding(entrySize);
      if (at > size) throw bad(`${o.name}: the tar ends inside an entry`);
    }
    if (!manifestBytes) throw bad(`${o.name}: the tar holds nothing`);
    const manifest = decodeManifest(manifestBytes);
    if (manifest.from !== o.site || manifest.to !== o.peer) {
      throw bad(`${o.name} is from '${manifest.from}' to '${manifest.to}'; this folder sends from '${o.site}' to '${o.peer}'`);
    }
    if (manifest.files.length > DEFAULT_BUNDLE_LIMITS.files) throw bad(`${o.name}: its manifest lists ${manifest.files.length} files, at most ${DEFAULT_BUNDLE_LIMITS.files}`);
    checkBundlePaths(manifest, { dataDir: o.dataDir });
    const blobs = manifestBlobs(manifest);
    const all = Buffer.concat(headers);
    const entries = checkLayout(all, { manifestSize: manifestBytes.length, ...(signature ? { signatureSize: signature.length } : {}), blobs });
    const offsets = new Map<string, number>();
    entries.forEach((e, i) => {
      if (e.what.kind === 'blob') offsets.set(e.what.sha256, starts[i]!);
    });
    return { name: o.name, path: o.path, manifest, manifestBytes, ...(signature ? { signature } : {}), blobs, offsets, layout: deflateRawSync(all), trailer: size - at, size };
  } finally {
    await fh.close();
  }
}
