import { test } from 'node:test';
import assert from 'node:assert/strict';
import { link, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { FarmError } from '../../protocol/index.ts';
import { diskUse } from '../../sites/cas/index.ts';
import { checkQuota, peerUse } from '../../sites/intake/index.ts';
import { addPeer, DEFAULT_PEER_QUOTA_BYTES, ensureSite, newLeafPassword, PeerRole, readSiteStore, setPeerQuota, siteStorePath } from '../../sites/links/index.ts';
import type { Io } from '../../tools/cli/format.ts';
import { run } from '../../tools/cli/main.ts';
import { parseSize } from '../../tools/cli/site.ts';

const tmp = async (t: { after(fn: () => Promise<void>): void }) => {
  const dir = await mkdtemp(join(tmpdir(), 'rb-quota-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
};

test('peer quota - checkQuota refuses a bundle past the quota, naming use, size and quota; at or under it, or adding nothing, passes', () => {
  checkQuota('studio', 'b-1', { used: 90, adding: 10 }, 100);
  checkQuota('studio', 'b-1', { used: 500, adding: 0 }, 100); // a replayed bundle whose blobs are all stored adds nothing
  assert.throws(() => checkQuota('studio', 'b-2', { used: 90, adding: 11 }, 100), (err: unknown) => {
    assert.ok(err instanceof FarmError);
    assert.equal(err.code, 'RB_QUOTA_EXCEEDED');
    assert.equal(err.retryable, false, 'to failed/ at once, not retried');
    assert.match(err.message, /^bundle b-2 would store 11 bytes \(11 bytes\) for studio, which already uses 90 bytes \(90 bytes\) of its quota of 100 bytes \(100 bytes\) here: nothing of it was stored \('renderbus site studio --quota SIZE' raises it\)$/);
    return true;
  });
  assert.throws(() => checkQuota('v1', 'b-3', { used: 3 * 1024 ** 3, adding: 1.5 * 1024 ** 3 }, 4 * 1024 ** 3), /would store 1.5 GiB .* already uses 3 GiB .* quota of 4 GiB/);
});

test('peer quota - diskUse counts each inode once (a job tree of hard links into the store), skips symlinks and missing paths', async (t) => {
  const dir = await tmp(t);
  await mkdir(join(dir, 'cas', 'sha256'), { recursive: true });
  await mkdir(join(dir, 'jobs', 'j-1', 'root'), { recursive: true });
  await writeFile(join(dir, 'cas', 'sha256', 'a'), Buffer.alloc(1000));
  await link(join(dir, 'cas', 'sha256', 'a'), join(dir, 'jobs', 'j-1', 'root', 'scene.pov'));
  await writeFile(join(dir, 'jobs', 'j-1', 'frame.png'), Buffer.alloc(234));
  await symlink('/etc/passwd', join(dir, 'jobs', 'j-1', 'sneaky'));
  assert.equal(await diskUse([join(dir, 'cas'), join(dir, 'jobs'), join(dir, 'nowhere')]), 1234);
  assert.equal(await diskUse([join(dir, 'nowhere')]), 0);
});

test('peer quota - peerUse: a peer\'s store and job trees, and what a manifest adds beyond the blobs it holds', async (t) => {
  const data = await tmp(t);
  const casBlob = join(data, 'fed', 'cas', 'studio', 'sha256', 'aa', 'a'.repeat(64));
  await mkdir(join(casBlob, '..'), { recursive: true });
  await writeFile(casBlob, Buffer.alloc(100));
  await mkdir(join(data, 'fed', 'jobs', 'studio', 'j-1', 'out'), { recursive: true });
  await writeFile(join(data, 'fed', 'jobs', 'studio', 'j-1', 'out', 'f.png'), Buffer.alloc(50));
  await mkdir(join(data, 'fed', 'jobs', 'other'), { recursive: true });
  await writeFile(join(data, 'fed', 'jobs', 'other', 'x'), Buffer.alloc(7000)); // another peer's: not counted
  const files = [
    { path: '/p/a.pov', size: 100, mode: 0o644, sha256: 'a'.repeat(64) },
    { path: '/p/b.png', size: 30, mode: 0o644, sha256: 'b'.repeat(64) },
  ];
  const m = { version: 1, kind: 'job', bundleId: 'b', from: 'studio', to: 'v1', route: [], createdAt: 1, jobRef: { site: 'studio', job: 'j-2' }, files } as const;
  assert.deepEqual(await peerUse(data, 'studio', m as never), { used: 150, adding: 30 });
  assert.deepEqual(await peerUse(data, 'studio'), { used: 150, adding: 0 });
});

test('peer quota - the store keeps quotaBytes per peer, checked; setPeerQuota sets it', async (t) => {
  const data = await tmp(t);
  await ensureSite(data, 'v1', { host: '0.0.0.0', port: 7422, advertise: 'v1.example:7422' });
  await addPeer(data, { name: 'studio', role: PeerRole.Leaf, password: newLeafPassword() });
  assert.equal((await readSiteStore(data))!.peers[0]!.quotaBytes, undefined, 'unset: the default applies');
  await setPeerQuota(data, 'studio', 500 * 1024 ** 3);
  assert.equal((await readSiteStore(data))!.peers[0]!.quotaBytes, 500 * 1024 ** 3);
  await assert.rejects(setPeerQuota(data, 'nobody', 1), /'nobody' is not a peer of this site/);
  await assert.rejects(setPeerQuota(data, 'studio', -1), /whole number of bytes/);
  const doc = JSON.parse(await readFile(siteStorePath(data), 'utf8'));
  doc.peers[0].quotaBytes = '500G';
  await writeFile(siteStorePath(data), JSON.stringify(doc));
  await assert.rejects(readSiteStore(data), /peers\[0\]\.quotaBytes must be a whole number of bytes/);
  assert.equal(DEFAULT_PEER_QUOTA_BYTES, 200 * 1024 ** 3);
});

test('peer quota - parseSize takes what an operator writes (binary units) and refuses the rest', () => {
  assert.equal(parseSize('500G'), 500 * 1024 ** 3);
  assert.equal(parseSize('1.5T'), 1.5 * 1024 ** 4);
  assert.equal(parseSize('200MiB'), 200 * 1024 ** 2);
  assert.equal(parseSize('64k'), 65536);
  assert.equal(parseSize('1048576'), 1048576);
  assert.equal(parseSize('0'), 0);
  for (const bad of ['', 'lots', '-1G', '5X', '1e3', 'G']) assert.throws(() => parseSize(bad), /is not a size/, bad);
});

function captureIo(): Io & { out(): string; err(): string } {
  const sink = () => {
    const chunks: string[] = [];
    return { w: new Writable({ write(c: Buffer | string, _e, cb) { chunks.push(c.toString()); cb(); } }), text: () => chunks.join('') };
  };
  const o = sink();
  const e = sink();
  return { stdout: o.w, stderr: e.w, out: o.text, err: e.text };
}

test('peer quota - renderbus site <peer> --quota sets it and shows what the peer stores against it', { timeout: 30_000 }, async (t) => {
  const data = await tmp(t);
  await ensureSite(data, 'v1', { host: '0.0.0.0', port: 7422, advertise: 'v1.example:7422' });
  await addPeer(data, { name: 'studio', role: PeerRole.Leaf, password: newLeafPassword() });
  await mkdir(join(data, 'fed', 'jobs', 'studio', 'j-1'), { recursive: true });
  await writeFile(join(data, 'fed', 'jobs', 'studio', 'j-1', 'f'), Buffer.alloc(3 * 1024 ** 2));
  let io = captureIo();
  assert.equal(await run(['node', 'renderbus', '--data', data, 'site', 'studio'], io), 0, io.err());
  assert.match(io.out(), /stored here\s+3 MiB of its quota of 200 GiB \(0\.0 %\)/);
  io = captureIo();
  assert.equal(await run(['node', 'renderbus', '--data', data, 'site', 'studio', '--quota', '12M'], io), 0, io.err());
  assert.match(io.out(), /stored here\s+3 MiB of its quota of 12 MiB \(25\.0 %\)/);
  assert.equal((await readSiteStore(data))!.peers[0]!.quotaBytes, 12 * 1024 ** 2);
  io = captureIo();
  assert.equal(await run(['node', 'renderbus', '--data', data, 'site', 'studio', '--json'], io), 0, io.err());
  assert.deepEqual(JSON.parse(io.out()).storage, { used: 3 * 1024 ** 2, quota: 12 * 1024 ** 2 });
  io = captureIo();
  assert.equal(await run(['node', 'renderbus', '--data', data, 'site', 'studio', '--quota', 'lots'], io), 2);
  assert.match(io.err(), /--quota 'lots' is not a size/);
  io = captureIo();
  assert.equal(await run(['node', 'renderbus', '--data', data, 'site', 'remove', 'studio', '--quota', '1G'], io), 2);
  assert.match(io.err(), /--quota goes with a peer: 'renderbus site PEER --quota SIZE', not with 'remove'/);
  assert.equal((await readSiteStore(data))!.peers.length, 1, 'nothing removed');
});
