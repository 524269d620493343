import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FarmError } from '../../protocol/index.ts';
import { createReadStream } from 'node:fs';
import { AGE_HEADER, checkRecipient, openSealed, readBundle, sealFile, writeBundle } from '../../sites/bundles/index.ts';
import { loadResultKey, resultKeyPath } from '../../sites/links/index.ts';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const hasAge = spawnSync('age', ['--version']).status === 0;

test('result crypto - files of 0 bytes, one chunk, an exact number of 64 KiB chunks and several MB go through and back; the key is kept 0600 in age-keygen form', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'rb-crypt-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const key = await loadResultKey(join(dir, 'data'));
  assert.match(key.recipient, /^age1[a-z0-9]{58}$/);
  assert.equal((await stat(resultKeyPath(join(dir, 'data')))).mode & 0o777, 0o600);
  const text = await readFile(key.path, 'utf8');
  assert.match(text, new RegExp(`^# public key: ${key.recipient}$`, 'm'), 'age-keygen writes the public key as a comment');
  assert.deepEqual(await loadResultKey(join(dir, 'data')), key, 'the same key the second time');

  for (const size of [0, 1000, 2 * 65_536, 3 << 20]) {
    const clear = randomBytes(size);
    const src = join(dir, `clear-${size}`);
    const sealed = join(dir, `sealed-${size}`);
    const back = join(dir, `back-${size}`);
    await writeFile(src, clear);
    const plain = await sealFile(src, sealed, key.recipient);
    assert.deepEqual(plain, { sha256: sha(clear), size });
    const ct = await readFile(sealed);
    assert.equal(ct.subarray(0, AGE_HEADER.length).toString(), AGE_HEADER, 'an age file');
    assert.equal((await stat(sealed)).mode & 0o777, 0o600);
    if (size >= 1000) assert.equal(ct.indexOf(clear.subarray(0, 64)), -1, 'no run of the clear bytes in it');
    await openSealed(sealed, back, key.identity, plain, `file ${size}`);
    assert.ok((await readFile(back)).equals(clear), `${size} bytes back as they were`);
  }
});

test('result crypto - another key, a changed byte, a cut file and the wrong expected hash are refused by name, and leave nothing behind', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'rb-crypt-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const key = await loadResultKey(join(dir, 'studio'));
  const other = await loadResultKey(join(dir, 'other'));
  const clear = randomBytes(150_000); // three chunks: a change in the middle one is found too
  await writeFile(join(dir, 'clear'), clear);
  const plain = await sealFile(join(dir, 'clear'), join(dir, 'sealed'), key.recipient);
  const ct = await readFile(join(dir, 'sealed'));
  await sealFile(join(dir, 'clear'), join(dir, 'to-other'), other.recipient);

  const refused = async (file: string, expect: typeof plain, why: RegExp) => {
    const out = join(dir, 'out');
    await assert.rejects(openSealed(file, out, key.identity, expect, 'outputs[0] "/show/f_0001.png"'), (err: FarmError) => {
      assert.equal(err.code, 'RB_DECRYPT_FAILED');
      assert.match(err.message, /^outputs\[0\] "\/show\/f_0001.png" /);
      assert.match(err.message, why);
      return true;
    });
    assert.equal((await readdir(dir)).includes('out'), false, 'no partial output left');
  };
  await refused(join(dir, 'to-other'), plain, /does not decrypt with this site's result key: no identity matched/);
  const changed = Buffer.from(ct);
  changed[changed.length - 70_000]! ^= 1;
  await writeFile(join(dir, 'changed'), changed);
  await refused(join(dir, 'changed'), plain, /does not decrypt with this site's result key/);
  const headerChanged = Buffer.from(ct);
  headerChanged[40]! ^= 1;
  await writeFile(join(dir, 'header-changed'), headerChanged);
  await refused(join(dir, 'header-changed'), plain, /does not decrypt with this site's result key/);
  await writeFile(join(dir, 'cut'), ct.subarray(0, ct.length - 65_552)); // one whole chunk less: only the last-chunk flag tells
  await refused(join(dir, 'cut'), plain, /does not decrypt with this site's result key/);
  await writeFile(join(dir, 'clear-file'), clear);
  await refused(join(dir, 'clear-file'), plain, /does not decrypt with this site's result key/);
  await refused(join(dir, 'sealed'), { ...plain, sha256: sha(Buffer.from('something else')) }, /decrypts to 150000 bytes with sha256 [0-9a-f]{64}, not the 150000 bytes with sha256/);
});

test('result crypto - the age tool decrypts a sealed file with the key file as it is', { skip: hasAge ? false : 'the age tool is not installed (tools/bootstrap.sh --test installs it)' }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'rb-crypt-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const key = await loadResultKey(join(dir, 'data'));
  const clear = randomBytes(200_000);
  await writeFile(join(dir, 'clear'), clear);
  await sealFile(join(dir, 'clear'), join(dir, 'sealed'), key.recipient);
  const r = spawnSync('age', ['-d', '-i', key.path, join(dir, 'sealed')], { maxBuffer: 1 << 24 });
  assert.equal(r.status, 0, r.stderr.toString());
  assert.ok(r.stdout.equals(clear));
  // and the other way: what the age tool encrypts to the recipient opens here
  const e = spawnSync('age', ['-r', key.recipient, '-o', join(dir, 'by-age'), join(dir, 'clear')]);
  assert.equal(e.status, 0, e.stderr.toString());
  await openSealed(join(dir, 'by-age'), join(dir, 'back'), key.identity, { sha256: sha(clear), size: clear.length }, 'by-age');
  assert.ok((await readFile(join(dir, 'back'))).equals(clear));
});

test('result crypto - a sealed frame above the chunking size travels in a bundle as content-defined chunks and opens from the joined blob', async (t) => {
  const dir = await mkdtemp('/var/tmp/rb-crypt-'); // bundle paths may not lie under /tmp
  t.after(() => rm(dir, { recursive: true, force: true }));
  const key = await loadResultKey(join(dir, 'studio'));
  const clear = randomBytes(6 << 20);
  await writeFile(join(dir, 'f_0001.exr'), clear);
  const plain = await sealFile(join(dir, 'f_0001.exr'), join(dir, 'sealed'), key.recipient);
  const out = join(dir, 'r.rbb');
  const m = await writeBundle({ head: { kind: 'result', bundleId: 'r', from: 'v1', to: 'studio', route: [] }, files: [{ path: '/show/out/f_0001.exr', from: join(dir, 'sealed'), plain }], out, dataDir: join(dir, 'v1') });
  const f = m.files[0]!;
  assert.deepEqual(f.plain, plain);
  assert.ok((f.chunks?.length ?? 0) > 1, 'the ciphertext is chunked');
  assert.equal(f.size, (await stat(join(dir, 'sealed'))).size);
  await mkdir(join(dir, 'read'));
  const read = await readBundle({ source: createReadStream(out), tempDir: join(dir, 'read'), dataDir: join(dir, 'studio') });
  assert.deepEqual(read.manifest.files[0]!.plain, plain, 'plain survives the manifest round trip');
  await openSealed(read.blobs.get(f.sha256)!, join(dir, 'back'), key.identity, plain, 'outputs[0]');
  assert.ok((await readFile(join(dir, 'back'))).equals(clear));
});

test('result crypto - a recipient that is not an age X25519 key is refused by name', async () => {
  const key = await loadResultKey(await mkdtemp(join(tmpdir(), 'rb-crypt-')));
  checkRecipient(key.recipient, 'encryptResults.to');
  const broken = `${key.recipient.slice(0, -1)}${key.recipient.endsWith('q') ? 'p' : 'q'}`; // the bech32 checksum no longer matches
  assert.throws(() => checkRecipient(broken, 'its encryptResults.to'), (err: FarmError) => err.code === 'RB_BAD_JOB' && /^its encryptResults.to "age1[a-z0-9]+" is not an age recipient \(age1…\): /.test(err.message));
  assert.throws(() => checkRecipient('AGE-SECRET-KEY-1XYZ', 'to'), (err: FarmError) => err.code === 'RB_BAD_JOB');
});
