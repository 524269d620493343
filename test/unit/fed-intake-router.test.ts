import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pack as tarPack } from 'tar-stream';
import { BUNDLE_ENTRY, FarmError, encodeManifest, type BundleManifest } from '../../protocol/index.ts';
import { holdReason, routeBundle, routeOf, type ArrivedBundle } from '../../sites/intake/index.ts';
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

test('intake router - a bundle must be signed by the key held for the peer whose folder it came through', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'rb-router-'));
  try {
    const studioKey = await loadSiteKey(join(dir, 'studio'));
    const v2Key = await loadSiteKey(join(dir, 'v2'));
    const strangerKey = await loadSiteKey(join(dir, 'stranger'));
    assert.equal((await loadSiteKey(join(dir, 'studio'))).publicKey, studioKey.publicKey, 'the key is kept');
    const bytes = encodeManifest(base({}));
    const got: ArrivedBundle[] = [];
    const o = (key: string | undefined, allowUnsigned = false) => ({
      site: 'v1', dataDir: join(dir, 'v1'),
      handlers: { peerJob: async (b: ArrivedBundle) => void got.push(b), ownJob: async () => assert.fail('not news') },
      peerKey: () => key, allowUnsigned: () => allowUnsigned,
      knownKeys: () => [['studio', studioKey.publicKey], ['v2', v2Key.publicKey]] as const,
    });
    const bundle = async (name: string, entries: [string, Uint8Array][]) => {
      const f = join(dir, name);
      await writeFile(f, await tarOf(entries));
      return f;
    };
    const refusedWith = (code: string, what: RegExp) => (e: unknown) => e instanceof FarmError && e.code === code && what.test(e.message);

    const signed = await bundle('signed.rbb', [[BUNDLE_ENTRY.manifest, bytes], [BUNDLE_ENTRY.signature, studioKey.sign(bytes)]]);
    await routeBundle(o(studioKey.publicKey), 'studio', signed);
    assert.equal(got.length, 1);
    assert.equal(got[0]!.signed, true);

    const unsigned = await bundle('unsigned.rbb', [[BUNDLE_ENTRY.manifest, bytes]]);
    await assert.rejects(routeBundle(o(studioKey.publicKey), 'studio', unsigned), refusedWith('RB_BUNDLE_UNSIGNED', /bundle b-1 carries no signature \(manifest.sig\): studio's bundles must be signed with studio's site key/));
    // the manifest changed after signing (one byte of the job's frames), the signature kept
    const tampered = await bundle('tampered.rbb', [[BUNDLE_ENTRY.manifest, encodeManifest(base({ job: { scene: '/proj/a.pov', frames: '1-9' } }))], [BUNDLE_ENTRY.signature, studioKey.sign(bytes)]]);
    await assert.rejects(routeBundle(o(studioKey.publicKey), 'studio', tampered), refusedWith('RB_BAD_SIGNATURE', /manifest.sig does not verify with studio's site key: the manifest was changed after it was signed/));
    const byStranger = await bundle('stranger.rbb', [[BUNDLE_ENTRY.manifest, bytes], [BUNDLE_ENTRY.signature, strangerKey.sign(bytes)]]);
    await assert.rejects(routeBundle(o(studioKey.publicKey), 'studio', byStranger), refusedWith('RB_BAD_SIGNATURE', /or a key this site does not know signed it/));
    // another peer's bundle copied into studio's folder: its signer is named
    const byV2 = await bundle('v2.rbb', [[BUNDLE_ENTRY.manifest, bytes], [BUNDLE_ENTRY.signature, v2Key.sign(bytes)]]);
    await assert.rejects(routeBundle(o(studioKey.publicKey), 'studio', byV2), refusedWith('RB_WRONG_SIGNER', /came through studio's folder but is signed by v2's site key, not studio's/));
    // no key of the peer yet: retryable (the intake holds such a peer's bundles)
    await assert.rejects(routeBundle(o(undefined), 'studio', signed), (e: unknown) => refusedWith('RB_PEER_KEY_UNKNOWN', /studio's site key is not known yet/)(e) && (e as FarmError).retryable);
    await assert.rejects(routeBundle(o(undefined), 'studio', unsigned), refusedWith('RB_BUNDLE_UNSIGNED', /carries no signature/));
    assert.equal(got.length, 1, 'nothing refused reached a handler');

    // a peer allowed unsigned bundles (an operator's decision): unsigned passes, a bad signature never
    await routeBundle(o(studioKey.publicKey, true), 'studio', unsigned);
    await routeBundle(o(undefined, true), 'studio', signed);
    assert.deepEqual(got.slice(1).map((b) => b.signed), [false, false]);
    await assert.rejects(routeBundle(o(studioKey.publicKey, true), 'studio', tampered), refusedWith('RB_BAD_SIGNATURE', /changed after it was signed/));
    assert.ok(verifySiteSignature(studioKey.publicKey, bytes, studioKey.sign(bytes)));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('intake hold - a quarantined peer, or one whose key is not known (unless it may send unsigned), is held', () => {
  assert.match(holdReason('v2', { quarantined: true, keyKnown: true, allowUnsigned: false }) ?? '', /v2's link is quarantined: its bundles wait until an operator releases it \('renderbus site release v2'\)/);
  assert.match(holdReason('v2', { quarantined: true, keyKnown: true, allowUnsigned: true }) ?? '', /quarantined/);
  assert.match(holdReason('v2', { quarantined: false, keyKnown: false, allowUnsigned: false }) ?? '', /v2's site key is not known yet/);
  assert.equal(holdReason('v2', { quarantined: false, keyKnown: false, allowUnsigned: true }), undefined);
  assert.equal(holdReason('v2', { quarantined: false, keyKnown: true, allowUnsigned: false }), undefined);
});
