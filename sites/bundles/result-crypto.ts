import { createHash, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { Decrypter, Encrypter } from 'age-encryption';
import { FarmError } from '../../protocol/index.ts';

/**
 * Encryption of the files a vendor returns (docs/federation.md, "Encrypted results"), in the age
 * format (age-encryption.org/v1: X25519 to the recipient, ChaCha20-Poly1305 in 64 KiB chunks,
 * each authenticated), through `age-encryption`, the age authors' TypeScript implementation. A
 * file streams through in pieces, so a frame of tens of MB is never held whole; an operator can
 * decrypt any blob with the `age` tool.
 */

/** The first line of every age file. */
export const AGE_HEADER = 'age-encryption.org/v1\n';

/** A file's plaintext as the manifest names it (BundleFile.plain). */
export interface PlainFile {
  sha256: string;
  size: number;
}

/** Refuses what is not an age X25519 recipient (its bech32 checksum, its length), RB_BAD_JOB naming `what`. */
export function checkRecipient(recipient: string, what: string): void {
  try {
    new Encrypter().addRecipient(recipient);
  } catch (cause) {
    throw new FarmError('RB_BAD_JOB', `${what} ${JSON.stringify(recipient.slice(0, 80))} is not an age recipient (age1…): ${(cause as Error).message}`, { cause });
  }
}

/** Counts and hashes what passes through, unchanged. */
function tap(h: Hash, seen: { size: number }): TransformStream<Uint8Array, Uint8Array> {
  return new TransformStream({
    transform(chunk, ctl) {
      h.update(chunk);
      seen.size += chunk.length;
      ctl.enqueue(chunk);
    },
  });
}

const webOf = (path: string) => Readable.toWeb(createReadStream(path, { highWaterMark: 1 << 20 })) as unknown as ReadableStream<Uint8Array>;
const nodeOf = (s: ReadableStream<Uint8Array>) => Readable.fromWeb(s as unknown as WebReadableStream<Uint8Array>);

/**
 * Encrypts `src` to `recipient` (`age1…`) into `dest` (a new file, 0600; nothing is left of it on
 * failure). Returns the plaintext's sha256 and size, read in the same pass.
 */
export async function sealFile(src: string, dest: string, recipient: string): Promise<PlainFile> {
  const h = createHash('sha256');
  const seen = { size: 0 };
  const fh = await open(dest, 'wx', 0o600);
  try {
    const e = new Encrypter();
    e.addRecipient(recipient);
    const sealed = await e.encrypt(webOf(src).pipeThrough(tap(h, seen)));
    await pipeline(nodeOf(sealed), fh.createWriteStream());
  } catch (err) {
    await fh.close().catch(() => {});
    await rm(dest, { force: true });
    throw FarmError.from(err, 'RB_OUTPUT_FAILED');
  }
  return { sha256: h.digest('hex'), size: seen.size };
}

/**
 * Decrypts `src` with `identity` (`AGE-SECRET-KEY-1…`) into `dest` (a new file) and checks it
 * against `expect`. A file that does not decrypt (another key, a changed or cut byte) or that
 * decrypts to other content is refused, RB_DECRYPT_FAILED naming `what`; `dest` is then removed.
 */
export async function openSealed(src: string, dest: string, identity: string, expect: PlainFile, what: string): Promise<void> {
  const h = createHash('sha256');
  const seen = { size: 0 };
  try {
    const d = new Decrypter();
    d.addIdentity(identity);
    const clear = await d.decrypt(webOf(src));
    await pipeline(nodeOf(clear.pipeThrough(tap(h, seen))), createWriteStream(dest, { flags: 'wx', mode: 0o644 }));
  } catch (err) {
    await rm(dest, { force: true });
    // the disk failing is no fault of the file
    if (err instanceof FarmError || typeof (err as NodeJS.ErrnoException).code === 'string') throw FarmError.from(err, 'RB_OUTPUT_FAILED');
    const why = (err as Error).message || String(err);
    throw new FarmError('RB_DECRYPT_FAILED', `${what} does not decrypt with this site's result key: ${why}`, { cause: err });
  }
  const sha256 = h.digest('hex');
  if (sha256 !== expect.sha256 || seen.size !== expect.size) {
    await rm(dest, { force: true });
    throw new FarmError('RB_DECRYPT_FAILED', `${what} decrypts to ${seen.size} bytes with sha256 ${sha256}, not the ${expect.size} bytes with sha256 ${expect.sha256} its manifest names`);
  }
}
