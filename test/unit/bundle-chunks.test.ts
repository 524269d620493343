import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pack as tarPack } from 'tar-stream';
import { FarmError, encodeManifest, manifestBlobs, type BundleManifest } from '../../protocol/index.ts';
import {
  CHUNK_AVG, CHUNK_FILES_ABOVE, CHUNK_MAX, CHUNK_MIN, ContentChunker, chunkSizes, readBundle, writeBundle,
} from '../../sites/bundles/index.ts';

// Content-defined chunks (docs/federation.md, "Content-defined chunks"): the chunker's cuts, and
// large files through the bundle writer and reader.

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** Deterministic bytes that look random (xorshift32 from a seed hashed into it). */
function det(n: number, seed = 'rb-cdc'): Buffer {
  const words = new Uint32Array(Math.ceil(n / 4));
  let x = createHash('sha256').update(seed).digest().readUInt32BE(0) || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  return Buffer.from(words.buffer, 0, n);
}

const ends = (sizes: number[]) => sizes.reduce<number[]>((a, s) => [...a, (a.at(-1) ?? 0) + s], []);

test('bundle-chunks - the chunker cuts known content at known places, however it is fed', () => {
  const data = det(8 << 20);
  // pinned: a change here changes every large file's blobs, and every receiver would take them again
  assert.deepEqual(chunkSizes(data), [1498405, 1011725, 1115360, 1408109, 1155787, 2199222]);
  const c = new ContentChunker();
  const cuts: number[] = [];
  for (let at = 0; at < data.length; at += 65_537) for (const x of c.push(data.subarray(at, at + 65_537))) cuts.push(at + x);
  assert.deepEqual(cuts, ends(chunkSizes(data)).slice(0, -1), 'the same cuts fed in odd pieces');
  // content without variety (zeros) is cut at the maximum
  assert.deepEqual(chunkSizes(Buffer.alloc(9 << 20)), [CHUNK_MAX, CHUNK_MAX, 1 << 20]);
});

test('bundle-chunks - sizes stay within bounds and average about 1 MiB; an insertion or an edit moves no later cut', () => {
  const data = det(24 << 20, 'bounds');
  const sizes = chunkSizes(data);
  assert.equal(sizes.reduce((a, b) => a + b, 0), data.length);
  for (const s of sizes.slice(0, -1)) assert.ok(s >= CHUNK_MIN && s <= CHUNK_MAX, `chunk of ${s} bytes`);
  const avg = data.length / sizes.length;
  assert.ok(avg > CHUNK_AVG * 0.6 && avg < CHUNK_AVG * 1.6, `average ${avg}`);
  const before = ends(sizes);
  const inserted = Buffer.concat([data.subarray(0, 3000), det(1024, 'ins'), data.subarray(3000)]);
  const after1 = new Set(ends(chunkSizes(inserted)));
  assert.ok(before.slice(1).every((e) => after1.has(e + 1024)), 'every cut after the first chunk moved by exactly the inserted kilobyte');
  const edited = Buffer.from(data);
  det(100, 'edit').copy(edited, 12 << 20);
  const after2 = ends(chunkSizes(edited));
  const changed = after2.filter((e) => !before.includes(e)).length;
  assert.ok(changed <= 1, `${changed} cuts moved for a 100-byte edit`);
});

let root = '';
const DATA = '/srv/renderbus-data';
before(async () => {
  root = await mkdtemp('/var/tmp/rb-bundle-chunks-');
  await mkdir(join(root, 'temp'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

test('bundle-chunks - a large file travels as chunks, a small one whole; the reader joins and checks it', async () => {
  const big = join(root, 'big.exr');
  const small = join(root, 'small.pov');
  const bigBytes = det(CHUNK_FILES_ABOVE + (3 << 20), 'big');
  await writeFile(big, bigBytes);
  await writeFile(small, det(CHUNK_FILES_ABOVE, 'small'));
  const out = join(root, 'b-chunks.rbb');
  const m = await writeBundle({ head: { kind: 'status', bundleId: 'b-chunks', from: 'studio', to: 'v1', route: [] }, files: [big, small], out, dataDir: DATA });
  const fBig = m.files.find((f) => f.path === big)!;
  const fSmall = m.files.find((f) => f.path === small)!;
  assert.equal(fBig.sha256, sha(bigBytes), 'the manifest still gives the whole file\'s sha256');
  assert.deepEqual(fBig.chunks!.map((c) => c.size), chunkSizes(bigBytes));
  assert.equal(fSmall.chunks, undefined, 'a file of CHUNK_FILES_ABOVE bytes is one blob');
  const blobs = manifestBlobs(m);
  assert.equal(blobs.size, fBig.chunks!.length + 1);
  assert.ok(!blobs.has(fBig.sha256), 'the chunked file itself is no blob');

  const r = await readBundle({ source: createReadStream(out), tempDir: join(root, 'temp'), dataDir: DATA });
  try {
    assert.equal(sha(await readFile(r.blobs.get(fBig.sha256)!)), fBig.sha256, 'the reader joined the chunks into the file');
    for (const c of fBig.chunks!) assert.ok(r.blobs.has(c.sha256));
  } finally {
    await rm(r.dir, { recursive: true, force: true });
  }
});

test('bundle-chunks - chunks that do not join to the file\'s sha256 are refused, naming the file', async () => {
  const a = det(300_000, 'a');
  const b = det(200_000, 'b');
  const m: BundleManifest = {
    version: 1, kind: 'status', bundleId: 'b-bad', from: 'studio', to: 'v1', route: [], createdAt: 1,
    // the chunks are sound blobs, the whole file's hash is of other content
    files: [{ path: '/proj/big.exr', size: a.length + b.length, mode: 0o644, sha256: sha(Buffer.concat([b, a])), chunks: [{ sha256: sha(a), size: a.length }, { sha256: sha(b), size: b.length }] }],
  };
  const p = tarPack();
  p.entry({ name: 'manifest.msgpack' }, Buffer.from(encodeManifest(m)));
  p.entry({ name: `blobs/${sha(a)}` }, a);
  p.entry({ name: `blobs/${sha(b)}` }, b);
  p.finalize();
  const parts: Buffer[] = [];
  for await (const c of p) parts.push(c as Buffer);
  const temp = join(root, 'temp-bad');
  await mkdir(temp);
  await assert.rejects(readBundle({ source: Readable.from([Buffer.concat(parts)]), tempDir: temp, dataDir: DATA }), (err: unknown) => {
    assert.ok(err instanceof FarmError && err.code === 'RB_BAD_BUNDLE', String(err));
    assert.match(err.message, /"\/proj\/big\.exr": its chunks join to content that hashes to/);
    return true;
  });
  const { readdir } = await import('node:fs/promises');
  assert.deepEqual(await readdir(temp), [], 'nothing of the refused bundle stays');
});
