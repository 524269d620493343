import { open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { pack as tarPack } from 'tar-stream';
import { BUNDLE_ENTRY, FarmError, decodeManifest } from '../../protocol/index.ts';
import { syncDir } from '../cas/index.ts';
import { verifySiteSignature, type SiteKey } from './site-key.ts';
import { BLOCK, padding, parseHeader } from './tar-layout.ts';

/**
 * Makes a bundle in `outgoing/<peer>/` carry this site's signature before the link takes it
 * (docs/federation.md, "Signatures and quarantine at the intake"). The packer and the returner
 * sign what they write; a bundle an operator dropped by hand, unsigned or signed by another key,
 * is signed here: the tar is rewritten beside itself with `manifest.sig` right after the manifest
 * (the manifest's bytes untouched, any other signature dropped, the blobs copied as they are),
 * then renamed over the original. So the file in outgoing/, and later in processed/, is the signed
 * bundle the peer receives, and a copy carried by hand from here is signed too.
 *
 * A bundle that is not from `site`, or whose first entry is not a manifest, is left as it is: the
 * link refuses it with its reason (prepareOutgoing). Resolves to what was done.
 */
export async function signOutgoing(o: { path: string; site: string; key: SiteKey }): Promise<'had' | 'signed' | 'not ours'> {
  const fh = await open(o.path, 'r');
  let manifestBytes: Buffer;
  let manifestEnd: number;
  let rest: number;
  try {
    const read = async (at: number, len: number) => {
      const b = Buffer.alloc(len);
      return (await fh.read(b, 0, len, at)).bytesRead === len ? b : undefined;
    };
    const first = await read(0, BLOCK);
    const head = first && tryHeader(first);
    if (!head || head.what.kind !== 'manifest' || head.size > 1024 * 1024) return 'not ours';
    const bytes = await read(BLOCK, head.size);
    if (!bytes) return 'not ours';
    manifestBytes = bytes;
    try {
      if (decodeManifest(manifestBytes).from !== o.site) return 'not ours';
    } catch {
      return 'not ours';
    }
    manifestEnd = BLOCK + head.size + padding(head.size);
    rest = manifestEnd;
    const next = await read(manifestEnd, BLOCK);
    const sigHead = next && tryHeader(next);
    if (sigHead?.what.kind === 'signature' && sigHead.size <= 4096) {
      const sig = await read(manifestEnd + BLOCK, sigHead.size);
      if (sig && verifySiteSignature(o.key.publicKey, manifestBytes, sig)) return 'had';
      rest = manifestEnd + BLOCK + sigHead.size + padding(sigHead.size); // another key's signature: replaced
    }
  } finally {
    await fh.close();
  }
  const { mode } = await stat(o.path);
  const tmp = `${o.path}.signing`; // not `*.rbb`: the watcher never takes it
  await rm(tmp, { force: true }); // left by a link that died mid-rewrite; this name is only ever ours
  const out = await open(tmp, 'wx', mode & 0o777);
  try {
    const src = await open(o.path, 'r');
    try {
      await copyRange(src, 0, manifestEnd, out);
      await out.write(await signatureEntry(o.key.sign(manifestBytes)));
      await copyRange(src, rest, (await src.stat()).size - rest, out);
    } finally {
      await src.close();
    }
    await out.sync();
  } catch (err) {
    await out.close();
    await rm(tmp, { force: true });
    throw FarmError.from(err, 'RB_OUTPUT_FAILED');
  }
  await out.close();
  await rename(tmp, o.path);
  await syncDir(dirname(o.path));
  return 'signed';
}

/** Appends `len` bytes of `src` from `at` to `out`, a MiB at a time. */
async function copyRange(src: FileHandle, at: number, len: number, out: FileHandle): Promise<void> {
  const buf = Buffer.allocUnsafe(1024 * 1024);
  for (let done = 0; done < len; ) {
    const { bytesRead } = await src.read(buf, 0, Math.min(buf.length, len - done), at + done);
    if (bytesRead === 0) throw new FarmError('RB_BAD_BUNDLE', 'the bundle shrank while it was being signed');
    await out.write(buf, 0, bytesRead);
    done += bytesRead;
  }
}

function tryHeader(h: Buffer) {
  if (h.every((b) => b === 0)) return undefined;
  try {
    return parseHeader(h);
  } catch {
    return undefined;
  }
}

/** The tar entry `manifest.sig` holding `sig`: its header, the bytes, the padding to a block. */
async function signatureEntry(sig: Uint8Array): Promise<Buffer> {
  if (sig.length > 512) throw new FarmError('RB_BAD_BUNDLE', `a signature of ${sig.length} bytes: an Ed25519 signature is 64`);
  const p = tarPack();
  p.entry({ name: BUNDLE_ENTRY.signature, size: sig.length, mode: 0o644, mtime: new Date() }, Buffer.from(sig));
  p.finalize();
  const chunks: Buffer[] = [];
  for await (const c of p) chunks.push(c as Buffer);
  return Buffer.concat(chunks).subarray(0, BLOCK + 512);
}
