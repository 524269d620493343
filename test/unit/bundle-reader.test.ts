import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pack as tarPack, type Header } from 'tar-stream';
import { FarmError, encodeManifest, type BundleManifest } from '../../protocol/index.ts';
import { readBundle, writeBundle, type BundleLimits } from '../../sites/bundles/index.ts';
import { rawHeader } from '../helpers/tar-header.ts';

// Bundle paths may not lie under /tmp (a system directory for the path rules): work in /var/tmp.
let root = '';
let temp = '';
const DATA = '/srv/renderbus-data';
before(async () => {
  root = await mkdtemp('/var/tmp/rb-bundle-test-');
  temp = join(root, 'temp');
  await mkdir(temp);
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
const A = Buffer.from('scene a\n');
const B = Buffer.from('texture b, a little longer\n');

function aManifest(over: Partial<BundleManifest> = {}): BundleManifest {
  return {
    version: 1, kind: 'job', bundleId: 'b-1', from: 'studio', to: 'vendor', route: [], createdAt: 1,
    job: { scene: '/proj/a.pov', frames: '1', output: { dir: '/proj/out' } },
    files: [
      { path: '/proj/a.pov', size: A.length, mode: 0o644, sha256: sha(A) },
      { path: '/proj/tex/b.png', size: B.length, mode: 0o644, sha256: sha(B) },
    ],
    ...over,
  };
}

type Headers = Partial<Header> & { name: string; pax?: Record<string, string> };
type Entry = { header: Headers; body?: Buffer };
const manifestEntry = (m: BundleManifest = aManifest()): Entry => ({ header: { name: 'manifest.msgpack' }, body: Buffer.from(encodeManifest(m)) });
const blob = (b: Buffer, name = `blobs/${sha(b)}`): Entry => ({ header: { name }, body: b });

async function tarOf(entries: Entry[]): Promise<Buffer> {
  const p = tarPack();
  for (const e of entries) p.entry(e.header, e.body ?? Buffer.alloc(0));
  p.finalize();
  const out: Buffer[] = [];
  for await (const c of p) out.push(c as Buffer);
  return Buffer.concat(out);
}

const padded = (b: Buffer) => Buffer.concat([b, Buffer.alloc((512 - (b.length % 512)) % 512)]);

async function read(bytes: Buffer | Readable, limits?: Partial<BundleLimits>) {
  return readBundle({ source: Buffer.isBuffer(bytes) ? Readable.from([bytes]) : bytes, tempDir: temp, dataDir: DATA, ...(limits ? { limits } : {}) });
}

/** The reader refuses with RB_BAD_BUNDLE and leaves nothing in its temp area. */
async function refused(bytes: Buffer | Readable, re: RegExp, limits?: Partial<BundleLimits>): Promise<FarmError> {
  let err: unknown;
  try {
    const r = await read(bytes, limits);
    await rm(r.dir, { recursive: true });
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof FarmError, `a FarmError, not ${String(err)}`);
  assert.equal(err.code, 'RB_BAD_BUNDLE', err.message);
  assert.match(err.message, re);
  assert.deepEqual(await readdir(temp), [], 'nothing of a refused bundle stays');
  return err;
}

test('bundle - writer → reader round trip with real files, deduplicated, atomic', async () => {
  const src = join(root, 'proj');
  await mkdir(join(src, 'tex'), { recursive: true });
  const big = Buffer.alloc(3 * 1024 * 1024 + 17);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7919) & 0xff;
  await writeFile(join(src, 'a.pov'), A);
  await writeFile(join(src, 'tex', 'b.png'), big);
  await writeFile(join(src, 'tex', 'copy.png'), big); // same content: one blob
  await writeFile(join(src, 'empty.inc'), '');
  await writeFile(join(src, 'run.sh'), '#!/bin/sh\n', { mode: 0o4755 });
  const files = ['a.pov', 'tex/b.png', 'tex/copy.png', 'empty.inc', 'run.sh'].map((f) => join(src, f));
  const out = join(root, 'x.rbb');
  const m = await writeBundle({
    head: { kind: 'job', bundleId: 'b-rt', from: 'studio', to: 'vendor', route: [], job: { scene: files[0]!, frames: '1-3', supportFiles: files.slice(1), output: { dir: join(src, 'out') } } },
    files, out, dataDir: DATA,
  });
  assert.deepEqual((await readdir(root)).filter((n) => n.startsWith('x.rbb')), ['x.rbb'], 'no .part left');
  assert.equal(m.files.find((f) => f.path.endsWith('run.sh'))!.mode, 0o755, 'setuid is not carried');
  const r = await read(createReadStream(out));
  assert.deepEqual(r.manifest, m);
  assert.equal(r.blobs.size, 4);
  for (const f of m.files) assert.deepEqual(await readFile(r.blobs.get(f.sha256)!), await readFile(f.path));
  assert.deepEqual((await readdir(r.dir)).sort(), [...r.blobs.keys()].sort(), 'only the verified blobs');
  await rm(r.dir, { recursive: true });
  // the writer applies the path rules too, and leaves nothing behind
  await assert.rejects(writeBundle({ head: { kind: 'job', bundleId: 'b-2', from: 'studio', to: 'vendor', route: [], job: { scene: '/etc/hostname', frames: '1' } }, files: ['/etc/hostname'], out: join(root, 'y.rbb'), dataDir: DATA }), /files\[0\] "\/etc\/hostname" lies under the system directory \/etc/);
  assert.ok(!(await readdir(root)).some((n) => n.startsWith('y.rbb')));
  const head = { kind: 'result' as const, bundleId: 'b-3', from: 'vendor', to: 'studio', route: [] };
  await assert.rejects(writeBundle({ head, files: [join(src, 'nope.png')], out: join(root, 'z.rbb'), dataDir: DATA }), (e: FarmError) => e.code === 'RB_INPUT_NOT_FOUND' && /nope.png/.test(e.message));
  await assert.rejects(writeBundle({ head, files: [join(src, 'tex')], out: join(root, 'z.rbb'), dataDir: DATA }), /bundle file .*\/tex is not a regular file/);
  // an existing bundle is never overwritten (the .part is opened exclusively)
  await writeFile(join(root, 'w.rbb.part'), 'someone else');
  await assert.rejects(writeBundle({ head, files: [files[0]!], out: join(root, 'w.rbb'), dataDir: DATA }), (e: FarmError) => e.code === 'RB_OUTPUT_FAILED' && /cannot create .*w.rbb.part: EEXIST/.test(e.message));
  assert.equal(await readFile(join(root, 'w.rbb.part'), 'utf8'), 'someone else');
  await rm(join(root, 'w.rbb.part'));
  assert.ok(!(await readdir(root)).some((n) => n.startsWith('z.rbb')));
});

test('bundle - a valid hand-built bundle is accepted (the hostile cases below differ from it in one thing)', async () => {
  const r = await read(await tarOf([manifestEntry(), blob(A), blob(B)]));
  assert.equal(r.blobs.size, 2);
  await rm(r.dir, { recursive: true });
});

test('bundle - entry names outside the whitelist, and the manifest first', async () => {
  for (const name of ['../../etc/cron.d/evil', '/etc/passwd', 'files/a/../../../x', 'blobs/' + sha(A) + '/x', 'blobs/' + sha(A).toUpperCase()]) {
    await refused(await tarOf([manifestEntry(), blob(A), blob(B), { header: { name }, body: A }]), /is not one a bundle may hold/);
  }
  await refused(await tarOf([blob(A), manifestEntry(), blob(B)]), /the first entry must be manifest.msgpack/);
  await refused(await tarOf([]), /holds no manifest.msgpack/);
});

test('bundle - symlink, hardlink, device, fifo and directory entries', async () => {
  const types: Headers[] = [
    { name: `blobs/${sha(B)}`, type: 'symlink', linkname: '/etc/shadow' },
    { name: `blobs/${sha(B)}`, type: 'link', linkname: '/etc/shadow' },
    { name: `blobs/${sha(B)}`, type: 'character-device', devmajor: 1, devminor: 3 },
    { name: `blobs/${sha(B)}`, type: 'block-device', devmajor: 8, devminor: 0 },
    { name: `blobs/${sha(B)}`, type: 'fifo' },
    { name: 'blobs/', type: 'directory' },
  ];
  for (const header of types) {
    await refused(await tarOf([manifestEntry(), blob(A), { header }]), new RegExp(`is a ${header.type}; a bundle holds regular files only`));
  }
  // a contiguous file ('7'): tar-stream names it; the reader also checks the raw typeflag, as a second guard
  const raw = Buffer.concat([await tarOf([manifestEntry(), blob(A)]).then((b) => b.subarray(0, b.length - 1024)), rawHeader(Buffer.from(`blobs/${sha(B)}`), B.length, '7'), padded(B), Buffer.alloc(1024)]);
  await refused(raw, /is a (type '7' entry|contiguous-file)/);
});

test('bundle - duplicates, strays, missing blobs, sizes and hashes', async () => {
  await refused(await tarOf([manifestEntry(), blob(A), blob(A), blob(B)]), new RegExp(`entry "blobs/${sha(A)}" appears twice`));
  await refused(await tarOf([manifestEntry(), manifestEntry()]), /entry "manifest.msgpack" appears twice/);
  const C = Buffer.from('not in the manifest');
  await refused(await tarOf([manifestEntry(), blob(A), blob(B), blob(C)]), new RegExp(`blobs/${sha(C)}" is a blob the manifest does not name`));
  await refused(await tarOf([manifestEntry(), blob(A)]), new RegExp(`blob ${sha(B)} \\(${B.length} bytes, of file "/proj/tex/b.png"\\) is missing from the tar`));
  // bad hash: B's content under A's name
  const liar = aManifest({ files: [{ path: '/proj/a.pov', size: B.length, mode: 0o644, sha256: sha(A) }] });
  await refused(await tarOf([manifestEntry(liar), blob(B, `blobs/${sha(A)}`)]), new RegExp(`blob ${sha(A)} does not match its name: its content hashes to ${sha(B)}`));
  // header size differs from the manifest
  await refused(await tarOf([manifestEntry(), blob(A), blob(Buffer.concat([B, Buffer.from('!')]), `blobs/${sha(B)}`)]), new RegExp(`its tar header says ${B.length + 1} bytes, the manifest ${B.length}`));
});

test('bundle - a 50 GiB header on a short stream', async () => {
  const GiB50 = 50 * 1024 ** 3;
  const huge = aManifest({ files: [{ path: '/proj/huge.exr', size: GiB50, mode: 0o644, sha256: sha(A) }] });
  const head = await tarOf([manifestEntry(huge)]).then((b) => b.subarray(0, b.length - 1024));
  const short = Buffer.concat([head, rawHeader(Buffer.from(`blobs/${sha(A)}`), GiB50), Buffer.alloc(64 * 1024, 1)]);
  // refused from the manifest's totals, before any blob is written
  await refused(short, /blobs add up to 53687091200 bytes, at most 1073741824/, { totalBytes: 1024 ** 3 });
  // within the limits, the stream's end stops it, and the partly written blob is removed
  await refused(short, /the tar is malformed|ends after/);
  // a manifest that says 8 bytes against a 50 GiB header
  const head2 = await tarOf([manifestEntry(aManifest({ files: [aManifest().files[0]!] }))]).then((b) => b.subarray(0, b.length - 1024));
  await refused(Buffer.concat([head2, rawHeader(Buffer.from(`blobs/${sha(A)}`), GiB50), Buffer.alloc(4096)]), /its tar header says 53687091200 bytes, the manifest 8/);
});

test('bundle - a million-entry tar bomb stops at once, without reading the million', async () => {
  for (const first of ['manifest', 'bomb'] as const) {
    let made = 0;
    const m = Buffer.from(encodeManifest(aManifest()));
    const bomb = Readable.from((function* () {
      if (first === 'manifest') { yield rawHeader(Buffer.from('manifest.msgpack'), m.length); yield padded(m); }
      for (; made < 1_000_000; made++) yield rawHeader(Buffer.from(`blobs/${made.toString(16).padStart(64, '0')}`), 0);
      yield Buffer.alloc(1024);
    })());
    await refused(bomb, first === 'manifest' ? /is a blob the manifest does not name/ : /the first entry must be manifest.msgpack/);
    assert.ok(made < 10_000, `${made} entries generated`);
  }
  // the entry cap itself: a manifest naming more blobs than the cap allows
  await refused(await tarOf([manifestEntry(), blob(A), blob(B)]), /names 2 blobs, at most 1/, { entries: 3 });
});

test('bundle - a pax header renaming the entry, a NUL in a name, a ustar prefix', async () => {
  const head = await tarOf([manifestEntry(), blob(A)]).then((b) => b.subarray(0, b.length - 1024));
  // the ustar name says A, the pax path says B: tar-stream reports B alone
  const rec = (k: string, v: string) => { const body = ` ${k}=${v}\n`; let n = body.length + 1; while (`${n}${body}`.length !== n) n++; return `${n}${body}`; };
  const paxBody = Buffer.from(rec('path', `blobs/${sha(B)}`));
  await refused(Buffer.concat([head, rawHeader(Buffer.from('PaxHeader'), paxBody.length, 'x'), padded(paxBody), rawHeader(Buffer.from(`blobs/${sha(A)}`), B.length), padded(B), Buffer.alloc(1024)]), new RegExp(`entry "blobs/${sha(B)}" comes with an extended \\(pax or GNU\\) header renaming ustar "blobs/${sha(A)}"`));
  // tar-stream's own pax entries (ustar name 'PaxHeader')
  await refused(await tarOf([manifestEntry(), blob(A), { header: { name: `blobs/${sha(A)}`, pax: { path: `blobs/${sha(B)}` } }, body: B }]), /renaming ustar "PaxHeader"/);
  // a GNU long name ('L') does the same without pax
  const long = Buffer.from(`blobs/${sha(B)}\0`);
  await refused(Buffer.concat([head, rawHeader(Buffer.from('././@LongLink'), long.length, 'L'), padded(long), rawHeader(Buffer.from(`blobs/${sha(A)}`), B.length), padded(B), Buffer.alloc(1024)]), /extended \(pax or GNU\) header/);
  // even a pax header that agrees is refused: the writer never makes one
  await refused(await tarOf([manifestEntry(), blob(A), { header: { name: `blobs/${sha(B)}`, pax: { comment: 'x' } }, body: B }]), /extended \(pax or GNU\) header/);
  // tar-stream cuts 'blobs/<B>\0evil' to 'blobs/<B>' without a word
  const nul = Buffer.concat([head, rawHeader(Buffer.concat([Buffer.from(`blobs/${sha(B)}`), Buffer.from('\0evil')]), B.length), padded(B), Buffer.alloc(1024)]);
  await refused(nul, /its name holds a NUL character/);
  const withPrefix = Buffer.concat([head, (() => { const h = rawHeader(Buffer.from(`blobs/${sha(B)}`), B.length); h.write('x', 345); let s = 0; h.fill(0x20, 148, 156); for (const x of h) s += x; h.write(s.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1'); return h; })(), padded(B), Buffer.alloc(1024)]);
  await refused(withPrefix, /ustar prefix/);
});

test('bundle - hostile manifests: msgpack bombs, bad paths, limits', async () => {
  const manifestOf = (body: Buffer) => tarOf([{ header: { name: 'manifest.msgpack' }, body }]);
  await refused(await manifestOf(Buffer.concat([Buffer.alloc(200_000, 0x91), Buffer.from([0xc0])])), /nests deeper than 32/);
  await refused(await manifestOf(Buffer.from([0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0])), /claims 4294967295 items/);
  await refused(await manifestOf(Buffer.from('not msgpack at all')), /manifest.msgpack/);
  await refused(await manifestOf(Buffer.alloc(2 * 1024 * 1024, 0xc0)), /manifest.msgpack is 2097152 bytes, at most 1048576/);
  const f = aManifest().files[0]!;
  await refused(await tarOf([manifestEntry(aManifest({ files: [{ ...f, path: '/proj/../etc/cron.d/evil' }] })), blob(A)]), /files\[0\] "\/proj\/..\/etc\/cron.d\/evil" is not normalised/);
  await refused(await tarOf([manifestEntry(aManifest({ files: [{ ...f, path: `${DATA}/fed/cas/x` }] })), blob(A)]), /lies under the site's data directory/);
  await refused(await tarOf([manifestEntry(aManifest({ job: { scene: '/proj/a.pov', frames: '1', output: { dir: '/proj/a.pov/out' } } })), blob(A), blob(B)]), /job.output.dir "\/proj\/a.pov\/out" is inside the input path "\/proj\/a.pov"/);
  await refused(await tarOf([manifestEntry(), blob(A), blob(B)]), /lists 2 files, at most 1/, { files: 1 });
});

/** mulberry32: a small seeded generator, so a failing iteration can be replayed. */
function rng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test('bundle - fuzz: random mutations of a valid bundle are accepted or refused with RB_BAD_BUNDLE, nothing else', async () => {
  const valid = await tarOf([manifestEntry(), blob(A), blob(B)]);
  const rand = rng(14);
  const int = (n: number) => Math.floor(rand() * n);
  let accepted = 0;
  let refusedCount = 0;
  const t0 = Date.now();
  for (let i = 0; i < 400; i++) {
    let b = Buffer.from(valid);
    const kind = int(5);
    if (kind === 0) for (let k = 0, n = 1 + int(8); k < n; k++) b[int(b.length)] = int(256); // random bytes
    else if (kind === 1) b = b.subarray(0, int(b.length)); // truncated
    else if (kind === 2) { const at = int(b.length / 512) * 512; b = Buffer.concat([b.subarray(0, at), b.subarray(at - 512 < 0 ? 0 : at - 512, at), b.subarray(at)]); } // a block repeated
    else if (kind === 3) { const at = int(3) * 512; b[at + 124 + int(11)] = 0x30 + int(8); } // a header's size digits
    else { const at = int(b.length); b = Buffer.concat([b.subarray(0, at), Buffer.from(Array.from({ length: 1 + int(600) }, () => int(256))), b.subarray(at)]); } // inserted garbage
    try {
      const r = await read(b);
      accepted++;
      assert.ok(r.dir.startsWith(`${temp}/rbb-`));
      await rm(r.dir, { recursive: true });
    } catch (err) {
      assert.ok(err instanceof FarmError, `iteration ${i}: ${String(err)}`);
      assert.equal(err.code, 'RB_BAD_BUNDLE', `iteration ${i}: ${err.code} ${err.message}`);
      refusedCount++;
    }
    assert.deepEqual(await readdir(temp), [], `iteration ${i} left files`);
    assert.deepEqual((await readdir(root)).filter((n) => n !== 'temp' && n !== 'proj' && n !== 'x.rbb'), [], `iteration ${i} wrote outside its temp dir`);
  }
  console.log(`fuzz: 400 mutations, ${accepted} accepted, ${refusedCount} refused, ${Date.now() - t0} ms`);
  assert.ok(refusedCount > 200);
});
