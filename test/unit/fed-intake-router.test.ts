import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pack as tarPack } from 'tar-stream';
import { BUNDLE_ENTRY, FarmError, encodeManifest, type BundleManifest } from '../../protocol/index.ts';
import { routeBundle, routeOf, type ArrivedBundle } from '../../sites/intake/router.ts';
import { loadSiteKey, verifySiteSignature } from '../../sites/links/site-key.ts';

const base = (over: Partial<BundleManifest>): BundleManifest => ({
  version: 1, kind: 'job', bundleId: 'b-1', from: 'studio', to: 'v1', route: [], createdAt: 1, files: [],
  job: { scene: '/proj/a.pov', frames: '1-2' }, jobRef: { site: 'studio', job: 'j-1' }, ...over,
});
const refused = (fn: () => unknown, what: RegExp) =>
  assert.throws(fn, (e: unknown) => e instanceof FarmError && e.code === 'RB_BAD_BUNDLE' && what.test(e.message));

test('intake router - a job and a cancel from the peer are work for us; news of our own job goes to the other half', () => {
  assert.equal(routeOf('v1', 'studio', base({})), 'peerJob');
  assert.equal(routeOf('v1', 'studio', base({ kind: 'status', job: undefined, status: { state: 'cancel', at: 1 } })), 'peerJob');
  const news = { from: 'v1', to: 'studio', job: undefined, jobRef: { site: 'studio', job: 'j-1' } };
  assert.equal(routeOf('studio', 'v1', base({ ...news, kind: 'result' })), 'ownJob');
  assert.equal(routeOf('studio', 'v1', base({ ...news, kind: 'status', status: { state: 'accepted', at: 1 } })), 'ownJob');
});

test('intake router - refuses a bundle whose sender, addressee or job does not fit the folder it came through', () => {
  refused(() => routeOf('v1', 'studio', base({ from: 'v2' })), /says it is from 'v2', but came through studio's folder/);
  refused(() => routeOf('v1', 'studio', base({ to: 'v2' })), /addressed to 'v2', not to this site \(v1\)/);
  refused(() => routeOf('v1', 'studio', base({ jobRef: undefined })), /names no job/);
  refused(() => routeOf('v1', 'studio', base({ jobRef: { site: 'v2', job: 'j-1' } })), /must be about one of studio's jobs, not v2's job j-1/);
  refused(() => routeOf('v1', 'studio', base({ job: undefined })), /job bundle without a job description/);
  // a vendor returning results of a job the studio never owned (a third site's)
  refused(() => routeOf('studio', 'v1', base({ from: 'v1', to: 'studio', kind: 'result', jobRef: { site: 'v2', job: 'j-9' } })), /about v2's job j-9, which this site never sent to v1/);
  refused(() => routeOf('studio', 'v1', base({ from: 'v1', to: 'studio', kind: 'status', jobRef: { site: 'studio', job: 'j-1' } })), /status bundle without a status/);
});

async function tarOf(entries: [string, Uint8Array][]): Promise<Buffer> {
  const p = tarPack();
  for (const [name, data] of entries) p.entry({ name, size: data.length }, Buffer.from(data));
  p.finalize();
  const chunks: Buffer[] = [];
  for await (const c of p) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

test('intake router - checks manifest.sig with the peer\'s key, and refuses unsigned bundles when the peer must sign', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'rb-router-'));
  try {
    const studioKey = await loadSiteKey(join(dir, 'studio'));
    const otherKey = await loadSiteKey(join(dir, 'other'));
    assert.equal((await loadSiteKey(join(dir, 'studio'))).publicKey, studioKey.publicKey, 'the key is kept');
    const bytes = encodeManifest(base({}));
    const got: ArrivedBundle[] = [];
    const o = (key: string, require = false) => ({
      site: 'v1', dataDir: join(dir, 'v1'),
      handlers: { peerJob: async (b: ArrivedBundle) => void got.push(b), ownJob: async () => assert.fail('not news') },
      peerKey: () => key, requireSignature: () => require,
    });
    const signed = join(dir, 'signed.rbb');
    await writeFile(signed, await tarOf([[BUNDLE_ENTRY.manifest, bytes], [BUNDLE_ENTRY.signature, studioKey.sign(bytes)]]));
    await routeBundle(o(studioKey.publicKey), 'studio', signed);
    assert.equal(got.length, 1);
    assert.equal(got[0]!.signed, true);
    assert.ok(verifySiteSignature(studioKey.publicKey, bytes, studioKey.sign(bytes)));
    await assert.rejects(routeBundle(o(otherKey.publicKey), 'studio', signed), /manifest.sig does not match studio's key/);
    const unsigned = join(dir, 'unsigned.rbb');
    await writeFile(unsigned, await tarOf([[BUNDLE_ENTRY.manifest, bytes]]));
    await assert.rejects(routeBundle(o(studioKey.publicKey, true), 'studio', unsigned), /is not signed, and studio's bundles must be/);
    await routeBundle(o(studioKey.publicKey, false), 'studio', unsigned);
    assert.equal(got.length, 2);
    assert.equal(got[1]!.signed, false);
    // signed, but no key of the peer is held yet: it counts as unsigned
    const noKey = { ...o(studioKey.publicKey), peerKey: () => undefined };
    await routeBundle(noKey, 'studio', signed);
    assert.equal(got[2]!.signed, false);
    await assert.rejects(routeBundle({ ...noKey, requireSignature: () => true }, 'studio', signed), /is not signed with a key this site holds for studio, and studio's bundles must be/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
