import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pack as tarPack } from 'tar-stream';
import { encodeManifest, FarmError, type BundleManifest } from '../../protocol/index.ts';
import { readBundle } from '../../sites/bundles/index.ts';

// The reader's onManifest hook, where the intake checks a peer's quota (sites/intake/router.ts).
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const A = Buffer.from('scene a\n');
const m: BundleManifest = {
  version: 1, kind: 'job', bundleId: 'b-1', from: 'studio', to: 'v1', route: [], createdAt: 1, jobRef: { site: 'studio', job: 'j' },
  job: { scene: '/proj/a.pov', frames: '1', output: { dir: '/proj/out' } }, files: [{ path: '/proj/a.pov', size: A.length, mode: 0o644, sha256: sha(A) }],
};

async function tarOf(entries: { name: string; body: Buffer }[]): Promise<Buffer> {
  const p = tarPack();
  for (const e of entries) p.entry({ name: e.name }, e.body);
  p.finalize();
  const out: Buffer[] = [];
  for await (const c of p) out.push(c as Buffer);
  return Buffer.concat(out);
}

test('bundle reader - onManifest is told once, with the signature, before the first blob; what it throws refuses the bundle and nothing stays', async (t) => {
  const temp = await mkdtemp('/var/tmp/rb-reader-hook-');
  t.after(() => rm(temp, { recursive: true, force: true }));
  const bytes = Buffer.from(encodeManifest(m));
  const sig = Buffer.alloc(64, 7);
  const tar = await tarOf([{ name: 'manifest.msgpack', body: bytes }, { name: 'manifest.sig', body: sig }, { name: `blobs/${sha(A)}`, body: A }]);
  const told: { signature?: Buffer; blobsWritten: number }[] = [];
  const r = await readBundle({
    source: Readable.from([tar]), tempDir: temp, dataDir: '/srv/rb',
    onManifest: async (x) => {
      const dirs = await readdir(temp);
      told.push({ ...(x.signature ? { signature: x.signature } : {}), blobsWritten: (await readdir(join(temp, dirs[0]!))).length });
      assert.ok(Buffer.compare(x.manifestBytes, bytes) === 0, 'the manifest bytes as in the tar');
    },
  });
  await rm(r.dir, { recursive: true });
  assert.equal(told.length, 1);
  assert.deepEqual(told[0], { signature: sig, blobsWritten: 0 });

  // a bundle without blobs is told too
  const { job: _job, ...rest } = m;
  const cancel: BundleManifest = { ...rest, kind: 'status', files: [], status: { state: 'cancel', at: 1 } };
  let n = 0;
  const empty = await readBundle({ source: Readable.from([await tarOf([{ name: 'manifest.msgpack', body: Buffer.from(encodeManifest(cancel)) }])]), tempDir: temp, dataDir: '/srv/rb', onManifest: () => { n++; } });
  await rm(empty.dir, { recursive: true });
  assert.equal(n, 1);

  await assert.rejects(
    readBundle({ source: Readable.from([tar]), tempDir: temp, dataDir: '/srv/rb', onManifest: () => { throw new FarmError('RB_QUOTA_EXCEEDED', 'no room'); } }),
    (err: unknown) => err instanceof FarmError && err.code === 'RB_QUOTA_EXCEEDED',
  );
  assert.deepEqual(await readdir(temp), [], 'nothing of the refused bundle stays');
});
