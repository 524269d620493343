import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FarmError } from '../../protocol/index.ts';
import { PeerCas } from '../../sites/cas/index.ts';

// PeerCas.adopt with the digest its caller computed while writing the file (the site link hashes
// a blob's chunks as they arrive): the file is not read again, and a digest that is not the
// blob's name is refused like a file that does not hash to it.

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

test('cas - adopt with the writer\'s digest takes the file as is, and refuses a digest that is not its name', async (t) => {
  const data = await mkdtemp(join(tmpdir(), 'rb-cas-digest-'));
  t.after(() => rm(data, { recursive: true, force: true }));
  const cas = await PeerCas.open(data, 'v1');
  const blob = randomBytes(50_000);
  const file = join(cas.tempDir, 'chunks-1.asm');
  // the bytes on disk are not what the digest says (a test only: the link writes what it hashes);
  // adopt trusts the digest, so it did not read the file
  await writeFile(file, Buffer.alloc(blob.length));
  assert.deepEqual(await cas.adopt(file, sha(blob), blob.length, { digest: sha(blob) }), { stored: true });
  const other = join(cas.tempDir, 'chunks-2.asm');
  await writeFile(other, blob);
  await assert.rejects(cas.adopt(other, sha(Buffer.from('x')), blob.length, { digest: sha(blob) }), (err: unknown) => err instanceof FarmError && err.code === 'RB_BAD_BLOB' && /hash to/.test(err.message));
  assert.deepEqual(await readdir(cas.tempDir), [], 'the refused file is removed');
});
