import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { Readable } from 'node:stream';
import { FarmError } from '../../protocol/index.ts';
import { PeerCas } from '../../sites/cas/index.ts';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

async function tempData(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'rb-cas-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Every path under `dir`, relative, sorted: what "nothing else was touched" compares. */
async function tree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string) => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      out.push(relative(dir, join(d, e.name)));
      if (e.isDirectory()) await walk(join(d, e.name));
    }
  };
  await walk(dir);
  return out.sort();
}

const farmError = (code: string, re?: RegExp) => (err: unknown) => {
  assert.ok(err instanceof FarmError, `expected a FarmError, got ${String(err)}`);
  assert.equal(err.code, code);
  if (re) assert.match(err.message, re);
  return true;
};

test('cas - a put blob lands at sha256/ab/<hex>, read-only; has lists only what is missing; a second put is a no-op', async (t) => {
  const data = await tempData(t);
  const cas = await PeerCas.open(data, 'v1');
  const a = randomBytes(10_000);
  const b = randomBytes(3);
  const ha = sha(a);
  const hb = sha(b);
  assert.deepEqual(await cas.has([ha, hb, ha]), [ha, hb]);
  assert.deepEqual(await cas.put(Readable.from([a]), ha, a.length), { stored: true });
  const path = join(data, 'fed', 'cas', 'v1', 'sha256', ha.slice(0, 2), ha);
  assert.equal(cas.blobPath(ha), path);
  assert.deepEqual(await readFile(path), a);
  assert.equal((await stat(path)).mode & 0o777, 0o444);
  assert.deepEqual(await cas.has([ha, hb]), [hb]);
  assert.deepEqual(await cas.put(Readable.from([a]), ha, a.length), { stored: false });
  // from a file path, and an empty blob
  const file = join(data, 'b.bin');
  await writeFile(file, b);
  assert.deepEqual(await cas.put(file, hb, b.length), { stored: true });
  const empty = new Uint8Array(0);
  assert.deepEqual(await cas.put(Readable.from([]), sha(empty), 0), { stored: true });
  assert.deepEqual(await cas.has([ha, hb, sha(empty)]), []);
  assert.deepEqual(await readdir(join(data, 'fed', 'cas', 'v1', 'tmp')), []);
  // a deferred put is as whole and verified as any; flush() makes its rename durable
  const d = randomBytes(70);
  await assert.rejects(cas.put(Readable.from([randomBytes(70)]), sha(d), 70, { deferDirSync: true }), farmError('RB_BAD_BLOB'));
  assert.deepEqual(await cas.put(Readable.from([d]), sha(d), 70, { deferDirSync: true }), { stored: true });
  await cas.flush();
  assert.deepEqual(await readFile(cas.blobPath(sha(d))), d);
  const chunks: Buffer[] = [];
  for await (const c of await cas.open(ha)) chunks.push(c as Buffer);
  assert.deepEqual(Buffer.concat(chunks), a);
  assert.equal(await cas.verify(ha), true);
});

test('cas - bytes that do not match the hash or the size are refused and nothing is kept', async (t) => {
  const data = await tempData(t);
  const cas = await PeerCas.open(data, 'v1');
  const good = randomBytes(50_000);
  const h = sha(good);
  const bad = Buffer.from(good);
  bad[100] = bad[100]! ^ 1;
  await assert.rejects(cas.put(Readable.from([bad]), h, good.length), farmError('RB_BAD_BLOB', /hash to/));
  await assert.rejects(cas.put(Readable.from([good.subarray(0, 49_999)]), h, good.length), farmError('RB_BAD_BLOB', /49999 bytes where 50000/));
  // a stream that never ends is cut as soon as it passes the size (else this test hangs)
  const endless = new Readable({ read() { this.push(randomBytes(65_536)); } });
  await assert.rejects(cas.put(endless, h, good.length), farmError('RB_BAD_BLOB', /more than the 50000 bytes/));
  await assert.rejects(cas.put(Readable.from([good]), h, -1), farmError('RB_BAD_BLOB', /size -1/));
  await assert.rejects(cas.put(Readable.from([good]), h, 1.5), farmError('RB_BAD_BLOB', /size 1.5/));
  // a source that fails part way
  const broken = new Readable({ read() { this.destroy(new Error('disk gone')); } });
  await assert.rejects(cas.put(broken, h, good.length), farmError('RB_BAD_BLOB', /disk gone/));
  assert.deepEqual(await cas.has([h]), [h]);
  assert.deepEqual(await tree(join(data, 'fed', 'cas', 'v1')), ['refs', 'sha256', 'tmp']);
  assert.deepEqual(await cas.put(Readable.from([good]), h, good.length), { stored: true });
});

test('cas - concurrent puts of one blob all succeed and leave one whole blob; a corrupt one among them fails alone', async (t) => {
  const data = await tempData(t);
  const cas = await PeerCas.open(data, 'v1');
  const blob = randomBytes(4 * 1024 * 1024);
  const h = sha(blob);
  const corrupt = Buffer.from(blob);
  corrupt[corrupt.length - 1] = corrupt[corrupt.length - 1]! ^ 0xff;
  const chunked = (b: Buffer) => Readable.from((function* () { for (let i = 0; i < b.length; i += 65_536) yield b.subarray(i, i + 65_536); })());
  const results = await Promise.allSettled([
    ...Array.from({ length: 6 }, () => cas.put(chunked(blob), h, blob.length)),
    cas.put(chunked(corrupt), h, blob.length),
  ]);
  assert.equal(results.filter((r) => r.status === 'fulfilled').length, 6);
  const rejected = results.filter((r) => r.status === 'rejected');
  assert.equal(rejected.length, 1);
  assert.equal(((rejected[0] as PromiseRejectedResult).reason as FarmError).code, 'RB_BAD_BLOB');
  assert.equal(sha(await readFile(cas.blobPath(h))), h);
  assert.deepEqual(await readdir(join(data, 'fed', 'cas', 'v1', 'tmp')), []);
  assert.deepEqual(await readdir(join(data, 'fed', 'cas', 'v1', 'sha256', h.slice(0, 2))), [h]);
});

test('cas - adopt takes a verified file from the temp folder without a copy, and refuses one that does not match', async (t) => {
  const data = await tempData(t);
  const cas = await PeerCas.open(data, 'v1');
  const blob = randomBytes(20_000);
  const h = sha(blob);
  const file = join(cas.tempDir, 'reader-1.part');
  await writeFile(file, blob);
  const ino = (await stat(file)).ino;
  assert.deepEqual(await cas.adopt(file, h, blob.length), { stored: true });
  assert.equal((await stat(cas.blobPath(h))).ino, ino);
  assert.equal((await stat(cas.blobPath(h))).mode & 0o777, 0o444);
  const wrong = join(cas.tempDir, 'reader-2.part');
  const other = randomBytes(20_000);
  await writeFile(wrong, other);
  await assert.rejects(cas.adopt(wrong, '1'.repeat(64), other.length), farmError('RB_BAD_BLOB', /hash to/));
  await writeFile(wrong, other);
  await assert.rejects(cas.adopt(wrong, sha(other), 19_999), farmError('RB_BAD_BLOB', /20000 bytes where 19999/));
  assert.deepEqual(await readdir(cas.tempDir), []);
  assert.deepEqual(await cas.has(['1'.repeat(64), sha(other)]), ['1'.repeat(64), sha(other)]);
  const outside = join(data, 'mine.bin');
  await writeFile(outside, other);
  await assert.rejects(cas.adopt(outside, sha(other), other.length), farmError('RB_BAD_ARGUMENT', /temp folder/));
  await assert.rejects(cas.adopt(join(cas.tempDir, '..', 'mine.bin'), sha(other), other.length), farmError('RB_BAD_ARGUMENT'));
  assert.deepEqual(await readFile(outside), other);
});

test('cas - linkOut hardlinks into a job tree, copies across filesystems, and refuses a different file in the way', async (t) => {
  const data = await tempData(t);
  const cas = await PeerCas.open(data, 'v1');
  const blob = randomBytes(1000);
  const h = sha(blob);
  await cas.put(Readable.from([blob]), h, blob.length);
  const dest = join(data, 'fed', 'jobs', 'j1', 'root', 'proj', 'scene.pov');
  assert.equal(await cas.linkOut(h, dest), 'link');
  assert.equal((await stat(dest)).ino, (await stat(cas.blobPath(h))).ino);
  assert.equal(await cas.linkOut(h, dest), 'present');
  // a real other filesystem when there is one (tmpfs), else a link call that says EXDEV
  const shm = await stat('/dev/shm').then(() => true, () => false);
  const other = shm ? await mkdtemp('/dev/shm/rb-cas-') : join(data, 'other');
  t.after(() => rm(other, { recursive: true, force: true }));
  const viaCopy = shm ? cas : await PeerCas.open(data, 'v1', { link: () => Promise.reject(Object.assign(new Error('cross-device'), { code: 'EXDEV' })) });
  const copy = join(other, 'tex', 'a.png');
  assert.equal(await viaCopy.linkOut(h, copy), 'copy');
  assert.deepEqual(await readFile(copy), blob);
  assert.deepEqual((await readdir(join(other, 'tex'))), ['a.png']);
  // the same blob already copied there is fine; another file is not replaced
  assert.equal(await viaCopy.linkOut(h, copy), 'present');
  const taken = join(data, 'taken.txt');
  await writeFile(taken, 'mine');
  await assert.rejects(cas.linkOut(h, taken), farmError('RB_BAD_ARGUMENT', /already exists/));
  assert.equal(await readFile(taken, 'utf8'), 'mine');
  await assert.rejects(cas.linkOut('0'.repeat(64), join(data, 'x')), farmError('RB_NO_SUCH_BLOB'));
  await assert.rejects(cas.open('0'.repeat(64)), farmError('RB_NO_SUCH_BLOB'));
});

test('cas - gc removes unreferenced blobs unused for the period, keeps referenced and recently used ones, and old temp files go', async (t) => {
  const data = await tempData(t);
  const cas = await PeerCas.open(data, 'v1');
  const [a, b, c] = [randomBytes(100), randomBytes(200), randomBytes(300)];
  for (const x of [a, b, c]) await cas.put(Readable.from([x]), sha(x), x.length);
  await cas.addRef('bundle-1', [sha(a)]);
  assert.deepEqual(await cas.refs(), ['bundle-1']);
  const old = new Date(Date.now() - 3_600_000);
  for (const x of [a, b]) await utimes(cas.blobPath(sha(x)), old, old); // a and b last used an hour ago, c now
  const leftover = join(cas.root, 'tmp', `${sha(b)}.dead.part`);
  await writeFile(leftover, 'half');
  await utimes(leftover, old, old);
  const r1 = await cas.gc(60_000);
  assert.deepEqual(r1, { removed: 2, bytesFreed: 204, kept: 2 });
  assert.deepEqual(await cas.has([sha(a), sha(b), sha(c)]), [sha(b)]);
  // has() counted as a use: c and a are fresh again; gc with "older than 0 ms" a minute ahead takes c, a is held by its reference
  const r2 = await cas.gc(0, { now: Date.now() + 60_000 });
  assert.deepEqual([r2.removed, r2.kept], [1, 1]);
  await cas.removeRef('bundle-1');
  assert.equal((await cas.gc(0, { now: Date.now() + 60_000 })).removed, 1);
  assert.deepEqual(await cas.has([sha(a)]), [sha(a)]);
  // an unreadable reference stops gc before it removes anything
  await cas.put(Readable.from([a]), sha(a), a.length);
  await writeFile(join(cas.root, 'refs', 'broken.json'), '{not json');
  await assert.rejects(cas.gc(0, { now: Date.now() + 60_000 }), farmError('RB_BAD_ARGUMENT', /gc removed nothing/));
  assert.deepEqual(await cas.has([sha(a)]), []);
});

test('cas - verify finds a blob damaged on disk and removes it, so the next want-list asks for it', async (t) => {
  const data = await tempData(t);
  const cas = await PeerCas.open(data, 'v1');
  const blob = randomBytes(5000);
  const h = sha(blob);
  await cas.put(Readable.from([blob]), h, blob.length);
  await chmod(cas.blobPath(h), 0o644);
  const damaged = Buffer.from(blob);
  damaged[0] = damaged[0]! ^ 1;
  await writeFile(cas.blobPath(h), damaged);
  assert.equal(await cas.verify(h), false);
  assert.deepEqual(await cas.has([h]), [h]);
});

test('cas - hostile peer names, hashes and reference names are refused by name and touch nothing', async (t) => {
  const data = await tempData(t);
  const outside = join(data, 'outside');
  await writeFile(outside, 'precious');
  for (const peer of ['', '.', '..', '../x', 'a/b', 'A', 'a.b', 'a b', '*', '>', 'a\0b', 'x'.repeat(65), '/etc']) {
    await assert.rejects(PeerCas.open(data, peer), farmError('RB_BAD_PEER', /is not a NATS token/), JSON.stringify(peer));
  }
  assert.deepEqual(await tree(data), ['outside']);
  const cas = await PeerCas.open(data, 'v1');
  const before = await tree(data);
  const hex = 'ab'.repeat(32);
  const hostile = ['../../../outside', `../${hex.slice(3)}`, hex.toUpperCase(), hex.slice(1), `${hex}0`, `${hex.slice(1)}\0`, `${hex.slice(0, 62)}/.`, '', 'sha256'];
  const stream = () => Readable.from([Buffer.from('precious')]);
  for (const h of hostile) {
    const bad = farmError('RB_BAD_BLOB', /is not 64 lowercase hex/);
    await assert.rejects(cas.has([hex, h]), bad, JSON.stringify(h));
    await assert.rejects(cas.put(stream(), h, 8), bad);
    await assert.rejects(cas.open(h), bad);
    await assert.rejects(cas.verify(h), bad);
    await assert.rejects(cas.linkOut(h, join(data, 'out')), bad);
    await assert.rejects(cas.addRef('b1', [h]), bad);
  }
  for (const name of ['../outside', '.hidden', 'a/b', '', '..', 'x'.repeat(129)]) {
    await assert.rejects(cas.addRef(name, [hex]), farmError('RB_BAD_ARGUMENT', /is not a bundle or job id/), JSON.stringify(name));
    await assert.rejects(cas.removeRef(name), farmError('RB_BAD_ARGUMENT'));
  }
  assert.deepEqual(await tree(data), before);
  assert.equal(await readFile(outside, 'utf8'), 'precious');
});
