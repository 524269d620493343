import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pack } from 'msgpackr';
import {
  FarmError, checkBundlePaths, decodeManifest, encodeManifest, guardMsgpack, manifestBlobs, pathProblem,
  type BundleManifest,
} from '../../protocol/index.ts';

const H = (c: string) => c.repeat(64);
const DATA = '/srv/renderbus';
const aManifest = (over: Partial<BundleManifest> = {}): BundleManifest => ({
  version: 1, kind: 'job', bundleId: 'b-1', from: 'studio', to: 'vendor', route: [], createdAt: 1,
  job: { scene: '/proj/shot/a.pov', frames: '1-2', output: { dir: '/proj/shot/out' } },
  files: [
    { path: '/proj/shot/a.pov', size: 3, mode: 0o644, sha256: H('a') },
    { path: '/proj/tex/b.png', size: 5, mode: 0o644, sha256: H('b') },
  ],
  ...over,
});
const refusal = (fn: () => unknown): FarmError => {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof FarmError, `a FarmError, not ${String(err)}`);
    assert.equal(err.code, 'RB_BAD_BUNDLE');
    return err;
  }
  assert.fail('expected a refusal');
};

test('bundle manifest - round trips through msgpack and names a schema violation', () => {
  const m = aManifest({
    jobRef: { site: 'studio', job: 'j-7' },
    status: { state: 'done', frames: { total: 2, done: 2, failed: 0, running: 0 }, at: 1 },
    bill: {
      currency: 'EUR',
      rate: { perCoreHourMinor: 40, perGbMinor: 5, minimumMinor: 100 },
      frames: [{ frame: 1, host: 'n1', wallMs: 700, cpuMs: 690, bytes: 12_000 }],
      totals: { frames: 1, wallMs: 700, cpuMs: 690, bytes: 12_000, amountMinor: 100 },
    },
  });
  assert.deepEqual(decodeManifest(encodeManifest(m)), m);
  assert.match(refusal(() => decodeManifest(pack({ ...m, kind: 'zip' }))).message, /manifest.msgpack: \/kind/);
  assert.match(refusal(() => decodeManifest(pack({ ...m, files: [{ ...m.files[0], sha256: 'XYZ' }] }))).message, /\/files\/0\/sha256/);
  assert.match(refusal(() => decodeManifest(pack({ ...m, files: [{ ...m.files[0], mode: 0o4755 }] }))).message, /\/files\/0\/mode/);
  assert.match(refusal(() => decodeManifest(pack({ ...m, extra: 1 }))).message, /manifest.msgpack/);
  assert.match(refusal(() => decodeManifest(pack({ ...m, status: { state: 'teleported', at: 1 } }))).message, /\/status\/state/);
  assert.match(refusal(() => decodeManifest(pack({ ...m, jobRef: { site: 'Studio!', job: 'j-7' } }))).message, /\/jobRef\/site/);
  // a __proto__ key reaches no prototype (msgpackr renames it) and is an unknown field
  const proto = Buffer.concat([Buffer.from([0x81, 0xa9]), Buffer.from('__proto__'), Buffer.from([0x81, 0xa1, 0x78, 0x01])]);
  assert.match(refusal(() => decodeManifest(proto)).message, /manifest.msgpack/);
  assert.equal(({} as Record<string, unknown>).x, undefined);
});

test('bundle manifest - msgpack bombs are refused before decoding', () => {
  // 100 000 nested one-element arrays: msgpackr would recurse once per level
  const deep = Buffer.concat([Buffer.alloc(100_000, 0x91), Buffer.from([0xc0])]);
  assert.match(refusal(() => decodeManifest(deep)).message, /nests deeper than 32/);
  // an array32 header claiming 4 294 967 295 items in 5 bytes
  assert.match(refusal(() => decodeManifest(Buffer.from([0xdd, 0xff, 0xff, 0xff, 0xff]))).message, /claims 4294967295 items/);
  assert.match(refusal(() => decodeManifest(Buffer.from([0xdf, 0x00, 0x10, 0x00, 0x00, 0xc0]))).message, /claims 2097152 items/);
  assert.match(refusal(() => decodeManifest(Buffer.from([0xdb, 0xff, 0xff, 0xff, 0xf0, 0x61]))).message, /ends early/);
  assert.match(refusal(() => decodeManifest(Buffer.from([0xd4, 0x01, 0x00]))).message, /type 0xd4.*not allowed/);
  assert.match(refusal(() => decodeManifest(Buffer.from([0xc0, 0xc0]))).message, /1 bytes follow/);
  // a real manifest passes the walk
  guardMsgpack(encodeManifest(aManifest()), 'm');
});

test('bundle paths - each rule of an original path, by name', () => {
  const o = { dataDir: DATA };
  assert.equal(pathProblem('/proj/a.pov', o), null);
  // /lib* as the shell reads it: /lib, /lib64, /libx32, and any other top-level name starting with lib
  assert.equal(pathProblem('/library/x', o), 'lies under the system directory /lib*');
  assert.equal(pathProblem('/proj/lib/x', o), null);
  assert.equal(pathProblem('proj/a.pov', o), 'is not absolute');
  assert.equal(pathProblem('/proj/./a', o), 'is not normalised (holds a . or .. component)');
  assert.equal(pathProblem('/proj/../etc/x', o), 'is not normalised (holds a . or .. component)');
  assert.equal(pathProblem('/proj//a', o), 'is not normalised (holds //)');
  assert.equal(pathProblem('/proj/a/', o), 'ends with /');
  assert.equal(pathProblem('/proj/a\0b', o), 'holds a NUL character');
  assert.equal(pathProblem('/p/' + 'x'.repeat(4094), o), 'is longer than 4096 bytes');
  assert.equal(pathProblem('/p/' + 'é'.repeat(2047), o), 'is longer than 4096 bytes'); // bytes, not characters
  for (const d of ['/usr', '/etc', '/proc', '/sys', '/dev', '/bin', '/sbin', '/lib', '/lib64', '/run', '/tmp', '/var/lib/renderbus']) {
    assert.equal(pathProblem(`${d}/x`, o), `lies under the system directory ${d.startsWith('/lib') ? '/lib*' : d}`, d);
  }
  assert.equal(pathProblem('/usrx/a', o), null);
  assert.equal(pathProblem(`${DATA}/fed/cas/x`, o), `lies under the site's data directory ${DATA}`);
});

test('bundle paths - manifest rules name the entry and the rule', () => {
  const o = { dataDir: DATA };
  checkBundlePaths(aManifest(), o);
  const f = (path: string, sha = 'a') => ({ path, size: 1, mode: 0o644, sha256: H(sha) });
  // a job's inputs may not lie under the data dir; its output folder and a result's frames may
  // (a studio's default output folder is under its data dir)
  assert.match(refusal(() => checkBundlePaths(aManifest({ files: [f(`${DATA}/x.pov`)] }), o)).message, /files\[0\] .* lies under the site's data directory/);
  const out = `${DATA}/output/shot-j1`;
  checkBundlePaths(aManifest({ job: { scene: '/proj/shot/a.pov', frames: '1', output: { dir: out } } }), o);
  checkBundlePaths(aManifest({ kind: 'result', job: { scene: '/proj/shot/a.pov', frames: '1', output: { dir: out } }, files: [f(`${out}/f_0001.png`)], outputs: [`${out}/f_0001.png`] }), o);
  assert.match(refusal(() => checkBundlePaths(aManifest({ files: [f('/etc/passwd')] }), o)).message, /files\[0\] "\/etc\/passwd" lies under the system directory \/etc/);
  assert.match(refusal(() => checkBundlePaths(aManifest({ files: [f('/p/a'), f('/p/a', 'b')] }), o)).message, /files\[1\] "\/p\/a" appears twice with different hashes/);
  checkBundlePaths(aManifest({ files: [f('/p/a'), f('/p/a')] }), o); // the same file twice is harmless
  assert.match(refusal(() => checkBundlePaths(aManifest({ files: [f('/p/a'), f('/p/a-b'), f('/p/a/c')] }), o)).message, /file "\/p\/a" is also a directory of "\/p\/a\/c"/);
  checkBundlePaths(aManifest({ files: [f('/p/a'), f('/p/a-b'), f('/p/ab/c')] }), o);
  assert.match(refusal(() => checkBundlePaths(aManifest({ job: { scene: '/p/a', frames: '1', output: { dir: '/p/a' } }, files: [f('/p/a')] }), o)).message, /job.output.dir "\/p\/a" is an input path/);
  assert.match(refusal(() => checkBundlePaths(aManifest({ job: { scene: '/p/a', frames: '1', output: { dir: '/p/a/out' } }, files: [f('/p/a')] }), o)).message, /inside the input path "\/p\/a"/);
  assert.match(refusal(() => checkBundlePaths(aManifest({ job: { scene: '/p/a', frames: '1', output: { dir: '/tmp/out' } } }), o)).message, /job.output.dir "\/tmp\/out" lies under the system directory \/tmp/);
  const result = (outputs: string[]) => aManifest({ kind: 'result', files: [f('/proj/shot/out/f1.png'), f('/proj/x.log', 'b')], outputs, logs: ['/proj/x.log'] });
  checkBundlePaths(result(['/proj/shot/out/f1.png']), o);
  assert.match(refusal(() => checkBundlePaths(result(['/proj/x.log']), o)).message, /outputs\[0\] "\/proj\/x.log" lies outside the job's output.dir/);
  assert.match(refusal(() => checkBundlePaths(result(['/proj/shot/out/f2.png']), o)).message, /outputs\[0\] .* is not one of the bundle's files/);
  assert.match(refusal(() => checkBundlePaths(aManifest({ job: undefined }), o)).message, /a job bundle must carry its job/);
});

test('bundle manifest - blobs: chunks must add up, one hash one size', () => {
  assert.equal(manifestBlobs(aManifest()).size, 2);
  const chunked = aManifest({ files: [{ path: '/p/a', size: 5, mode: 0o644, sha256: H('a'), chunks: [{ sha256: H('c'), size: 2 }, { sha256: H('d'), size: 3 }] }] });
  assert.deepEqual([...manifestBlobs(chunked)], [[H('c'), 2], [H('d'), 3]]);
  assert.match(refusal(() => manifestBlobs(aManifest({ files: [{ path: '/p/a', size: 6, mode: 0o644, sha256: H('a'), chunks: [{ sha256: H('c'), size: 2 }] }] }))).message, /chunks add up to 2 bytes, the file has 6/);
  assert.match(refusal(() => manifestBlobs(aManifest({ files: [{ path: '/p/a', size: 1, mode: 0o644, sha256: H('a') }, { path: '/p/b', size: 2, mode: 0o644, sha256: H('a') }] }))).message, /given as 1 and 2 bytes/);
});
