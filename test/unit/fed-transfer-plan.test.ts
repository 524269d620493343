import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { pack as tarPack } from 'tar-stream';
import { acceptChunk, bundleKey, CHUNK, chunkCount, planChunks, stillMissing, type BlobAssembly } from '../../sites/links/transfer-plan.ts';
import { BLOCK, checkLayout, layoutSize, padding } from '../../sites/links/tar-layout.ts';
import { isToken } from '../../protocol/index.ts';

const h = (s: string) => createHash('sha256').update(s).digest('hex');
const A = h('a');
const B = h('b');
const E = h('');

test('fed-transfer-plan - a want becomes fixed 256 KiB chunks, each blob once, in the want order', () => {
  const blobs = new Map([[A, CHUNK * 2 + 5], [B, 10], [E, 0]]);
  const p = planChunks(blobs, [B, A, B, E]);
  assert.deepEqual(p.chunks.map((c) => [c.sha256 === A ? 'A' : c.sha256 === B ? 'B' : 'E', c.offset, c.length]), [
    ['B', 0, 10],
    ['A', 0, CHUNK],
    ['A', CHUNK, CHUNK],
    ['A', CHUNK * 2, 5],
    ['E', 0, 0],
  ]);
  assert.equal(p.bytes, CHUNK * 2 + 15);
  assert.deepEqual(p.refused, []);
});

test('fed-transfer-plan - a want for a hash the bundle does not hold is refused, never planned', () => {
  const p = planChunks(new Map([[A, 3]]), [A, B]);
  assert.deepEqual(p.refused, [B]);
  assert.deepEqual(p.chunks.map((c) => c.sha256), [A]);
});

test('fed-transfer-plan - a blob is whole when every chunk of the grid arrived; a repeat counts once', () => {
  const a: BlobAssembly = { sha256: A, size: CHUNK + 7, got: new Set() };
  assert.deepEqual(acceptChunk(a, CHUNK, 7), { ok: true, complete: false, duplicate: false });
  assert.deepEqual(acceptChunk(a, CHUNK, 7), { ok: true, complete: false, duplicate: true });
  assert.deepEqual(acceptChunk(a, 0, CHUNK), { ok: true, complete: true, duplicate: false });
  const empty: BlobAssembly = { sha256: E, size: 0, got: new Set() };
  assert.deepEqual(acceptChunk(empty, 0, 0), { ok: true, complete: true, duplicate: false });
  assert.equal(chunkCount(0), 1);
});

test('fed-transfer-plan - a chunk off the grid, of the wrong length or past the declared size is refused', () => {
  const a: BlobAssembly = { sha256: A, size: 100, got: new Set() };
  for (const [off, len] of [[1, 99], [0, 101], [0, 50], [CHUNK, 0], [-CHUNK, 100], [0.5, 100]] as const) {
    const v = acceptChunk(a, off, len);
    assert.ok(!v.ok, `offset ${off} length ${len}`);
    assert.equal(v.error.code, 'RB_BAD_BLOB');
  }
  assert.equal(a.got.size, 0, 'nothing refused was noted');
});

test('fed-transfer-plan - what is still missing, and bundle keys are subject tokens', () => {
  assert.deepEqual(stillMissing(new Map([[A, 1], [B, 2]]), new Set([A])), [B]);
  const k = bundleKey('b-Mixed.Case_id-1');
  assert.ok(isToken(k));
  assert.equal(k, bundleKey('b-Mixed.Case_id-1'));
  assert.notEqual(k, bundleKey('b-mixed.case_id-1'));
});

async function tarOf(entries: { name: string; body: Buffer; type?: 'file' | 'symlink' }[]): Promise<Buffer> {
  const p = tarPack();
  for (const e of entries) p.entry({ name: e.name, size: e.body.length, mode: 0o644, mtime: new Date(0), type: e.type ?? 'file', ...(e.type === 'symlink' ? { linkname: 'x' } : {}) }, e.body);
  p.finalize();
  const parts: Buffer[] = [];
  for await (const c of p) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

function headersOf(tar: Buffer): { headers: Buffer; trailer: number } {
  const hs: Buffer[] = [];
  let at = 0;
  while (!tar.subarray(at, at + BLOCK).every((b) => b === 0)) {
    const size = parseInt(tar.subarray(at + 124, at + 136).toString('latin1').replace(/\0.*$/s, '').trim() || '0', 8);
    hs.push(tar.subarray(at, at + BLOCK));
    at += BLOCK + size + padding(size);
  }
  return { headers: Buffer.concat(hs), trailer: tar.length - at };
}

test('fed-transfer-plan - a layout describes only the bundle: manifest first, each blob once with its size', async () => {
  const man = Buffer.from('manifest');
  const tar = await tarOf([{ name: 'manifest.msgpack', body: man }, { name: `blobs/${A}`, body: Buffer.from('a') }, { name: `blobs/${E}`, body: Buffer.alloc(0) }]);
  const { headers, trailer } = headersOf(tar);
  const blobs = new Map([[A, 1], [E, 0]]);
  const entries = checkLayout(headers, { manifestSize: man.length, blobs });
  assert.equal(layoutSize(entries, trailer), tar.length);
  const refuse = (hs: Buffer, o: Partial<Parameters<typeof checkLayout>[1]>, re: RegExp) =>
    assert.throws(() => checkLayout(hs, { manifestSize: man.length, blobs, ...o }), (e: Error & { code?: string }) => e.code === 'RB_BAD_BUNDLE' && re.test(e.message));
  refuse(headers, { blobs: new Map([[A, 2], [E, 0]]) }, /says 1 bytes, the bundle 2/);
  refuse(headers, { blobs: new Map([[A, 1], [E, 0], [B, 4]]) }, /has no entry/);
  refuse(headers, { blobs: new Map([[A, 1]]) }, /not part of this bundle/);
  refuse(Buffer.concat([headers.subarray(BLOCK, BLOCK * 2), headers]), {}, /first entry is not the manifest/);
  refuse(Buffer.concat([headers, headers.subarray(BLOCK, BLOCK * 2)]), {}, /appears twice/);
  const tampered = Buffer.from(headers);
  tampered[BLOCK + 10] = 0x41; // inside the second header's name, checksum not updated
  refuse(tampered, {}, /checksum/);
  const evil = headersOf(await tarOf([{ name: 'manifest.msgpack', body: man }, { name: '../../etc/passwd', body: Buffer.from('a') }]));
  refuse(evil.headers, {}, /not a bundle entry/);
  const link = headersOf(await tarOf([{ name: 'manifest.msgpack', body: man }, { name: `blobs/${A}`, body: Buffer.alloc(0), type: 'symlink' }]));
  refuse(link.headers, {}, /not a regular file/);
});
