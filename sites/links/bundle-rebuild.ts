import { Readable } from 'node:stream';
import type { PeerCas } from '../cas/index.ts';
import { padding, type TarEntry } from './tar-layout.ts';

/**
 * The bundle tar rebuilt from its layout and the receiver's store: each header as the sender's tar
 * had it, then the manifest bytes, the signature or the blob, then padding, then the trailing
 * zeros. Streamed (a blob is never held whole in memory); the caller drops it with `dropFile`.
 */
export function rebuildBundle(o: { entries: readonly TarEntry[]; manifestBytes: Uint8Array; signature?: Uint8Array; trailer: number; cas: PeerCas }): Readable {
  async function* tar(): AsyncGenerator<Uint8Array> {
    for (const e of o.entries) {
      yield e.header;
      if (e.what.kind === 'manifest') yield o.manifestBytes;
      else if (e.what.kind === 'signature') yield o.signature ?? new Uint8Array(0);
      else if (e.size > 0) for await (const chunk of await o.cas.open(e.what.sha256)) yield chunk as Buffer;
      const pad = padding(e.size);
      if (pad > 0) yield new Uint8Array(pad);
    }
    yield new Uint8Array(o.trailer);
  }
  return Readable.from(tar(), { objectMode: false });
}
