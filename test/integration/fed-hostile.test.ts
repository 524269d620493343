import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { gzipSync } from 'node:zlib';
import { pack as tarPack, type Header } from 'tar-stream';
import { encodeManifest, type BundleManifest } from '../../protocol/index.ts';
import { readBundle } from '../../sites/bundles/index.ts';
import { dropFile, hotFolderDirs, type HotOutcome } from '../../sites/hotfolders/index.ts';
import { peerUse } from '../../sites/intake/index.ts';
import { DEFAULT_PEER_QUOTA_BYTES } from '../../sites/links/index.ts';
import { loadSiteKey, type SiteKey } from '../../sites/links/site-key.ts';
import { TestFarm, TINY_SCENE, waitUntil } from '../helpers/farm.ts';
import { rawHeader } from '../helpers/tar-header.ts';

// Hostile bundles dropped into a real incoming/studio/ of site v1 with its intake running (issue 15,
// item 3): each ends in failed/ with a reason naming the problem, nothing is written outside
// failed/, no job is submitted, and a good bundle dropped after all of them is still taken. The
// reader's own cases in full (a million entries streamed, pax, fuzz): test/unit/bundle-reader.test.ts.

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const SCENE = Buffer.from(TINY_SCENE);
const TEX = Buffer.from('a texture, a little longer than the scene name\n');
const ROOT = '/projects-hostile/shot-1'; // an original path of the studio's: not under a system directory

type Entry = { header: Partial<Header> & { name: string }; body?: Buffer };

function manifestOf(job: string, over: Partial<BundleManifest> = {}): BundleManifest {
  return {
    version: 1, kind: 'job', bundleId: `studio-${job}-job`, from: 'studio', to: 'v1', route: [], createdAt: Date.now(),
    jobRef: { site: 'studio', job },
    job: { name: job, scene: `${ROOT}/scene.pov`, frames: '1', resolution: '32x24', supportFiles: [`${ROOT}/tex/t.txt`], output: { dir: `${ROOT}/out` } },
    files: [
      { path: `${ROOT}/scene.pov`, size: SCENE.length, mode: 0o644, sha256: sha(SCENE) },
      { path: `${ROOT}/tex/t.txt`, size: TEX.length, mode: 0o644, sha256: sha(TEX) },
    ],
    ...over,
  };
}

const blob = (b: Buffer, name = `blobs/${sha(b)}`): Entry => ({ header: { name }, body: b });

/** The manifest first, signed with the studio's key (the point of these bundles is their content, not their signature). */
function head(key: SiteKey | null, m: BundleManifest | Buffer): Entry[] {
  const bytes = Buffer.isBuffer(m) ? m : Buffer.from(encodeManifest(m));
  return [{ header: { name: 'manifest.msgpack' }, body: bytes }, ...(key ? [{ header: { name: 'manifest.sig' }, body: Buffer.from(key.sign(bytes)) }] : [])];
}

async function tarOf(entries: Entry[], end = true): Promise<Buffer> {
  const p = tarPack();
  for (const e of entries) p.entry(e.header, e.body ?? Buffer.alloc(0));
  p.finalize();
  const out: Buffer[] = [];
  for await (const c of p) out.push(c as Buffer);
  const tar = Buffer.concat(out);
  return end ? tar : tar.subarray(0, tar.length - 1024); // without the end blocks, to append raw headers
}

const padded = (b: Buffer) => Buffer.concat([b, Buffer.alloc((512 - (b.length % 512)) % 512)]);

/** Every file under `dir` with its size, as paths relative to it. */
async function files(dir: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const walk = async (d: string): Promise<void> => {
    for (const n of await readdir(d).catch(() => [] as string[])) {
      const p = join(d, n);
      const st = await lstat(p).catch(() => null);
      if (!st) continue;
      if (st.isDirectory()) await walk(p);
      else out.set(relative(dir, p), st.size);
    }
  };
  await walk(dir);
  return out;
}

test('fed-hostile - hostile bundles in a real incoming/<peer>/ end in failed/ with their reason; nothing is written outside; the quota holds; a good bundle is still taken', { timeout: 180_000 }, async (t) => {
  const farm = await TestFarm.start({ site: 'v1', tmpBase: '/var/tmp' });
  t.after(() => farm.stop());
  await farm.registry();
  await farm.scheduler();
  await farm.renderServer('rs1', 1);
  const studioDir = await mkdtemp(join(tmpdir(), 'rb-hostile-studio-'));
  t.after(() => rm(studioDir, { recursive: true, force: true }));
  const key = await loadSiteKey(studioDir);
  await loadSiteKey(farm.dir); // v1's own key, as a running site has it: its answers are signed with it
  const outcomes: HotOutcome[] = [];
  let quota: number | undefined;
  await farm.remoteIntake(['studio'], {
    scanEveryMs: 100,
    peerKey: () => key.publicKey,
    quotaBytes: () => quota ?? DEFAULT_PEER_QUOTA_BYTES,
    onOutcome: (_peer, o) => outcomes.push(o),
  });
  const dirs = hotFolderDirs(farm.dir, 'studio');
  // what may change when a bundle is refused: failed/ gains it and its reason; nothing else
  const outside = async () => new Map([...(await files(farm.dir))].filter(([p]) => !p.startsWith(relative(farm.dir, dirs.failed) + '/') && !p.startsWith(relative(farm.dir, dirs.incoming) + '/')));
  const studioJobs = async () => (await farm.jobs()).filter((j) => j.origin?.site === 'studio');

  /**
   * Drops a bundle, waits for the intake's verdict on it, and asserts it failed with `reason` and
   * nothing else changed; `answer`: a job refused for the quota is answered, which writes the
   * answer's bundle in outgoing/studio/ and its sent-marker under fed/remote-jobs/, and nothing else.
   */
  const refused = async (name: string, tar: Buffer, reason: RegExp, answer?: string) => {
    const before = await outside();
    await dropFile(dirs.incoming, `${name}.rbb`, tar);
    const o = await waitUntil(`the intake's verdict on ${name}`, () => outcomes.find((x) => x.name === `${name}.rbb`), 20_000, 50);
    assert.equal(o.to, 'failed', `${name}: ${o.error?.message ?? 'taken'}`);
    const text = await readFile(join(dirs.failed, `${name}.rbb.reason.txt`), 'utf8');
    assert.match(text, reason, text);
    assert.deepEqual(await readdir(dirs.incoming), [], 'the bundle left incoming/');
    const after = await outside();
    if (answer) {
      const added = [...after.keys()].filter((p) => !before.has(p)).sort();
      assert.deepEqual(added.map((p) => p.replace(/^fed\/remote-jobs\/.*\//, 'fed/remote-jobs/…/')), [`fed/remote-jobs/…/${answer}`, relative(farm.dir, join(dirs.outgoing, `${answer}.rbb`))].sort(), added.join(' '));
      for (const p of added) after.delete(p);
    }
    assert.deepEqual(after, before, `${name}: nothing written or removed outside failed/`);
    return text;
  };

  const good = () => [blob(SCENE), blob(TEX)];
  const escape = join(farm.dir, '..', `rb-hostile-escape-${process.pid}`);

  await t.test('member names: .. and absolute', async () => {
    const m = manifestOf('j-dotdot');
    await refused('dotdot', await tarOf([...head(key, m), ...good(), blob(TEX, `../../${relative('/', escape)}`)]), /^RB_BAD_BUNDLE\b[\s\S]*is not one a bundle may hold/);
    await refused('absolute', await tarOf([...head(key, m), ...good(), blob(TEX, escape)]), /^RB_BAD_BUNDLE\b[\s\S]*is not one a bundle may hold/);
    await assert.rejects(lstat(escape), { code: 'ENOENT' });
  });

  await t.test('symlinks, hard links, devices and fifos', async () => {
    const m = manifestOf('j-links');
    const cases: [string, Partial<Header>][] = [
      ['symlink', { type: 'symlink', linkname: '/etc/shadow' }],
      ['hardlink', { type: 'link', linkname: '/etc/shadow' }],
      ['chardev', { type: 'character-device', devmajor: 1, devminor: 3 }],
      ['blockdev', { type: 'block-device', devmajor: 8, devminor: 0 }],
      ['fifo', { type: 'fifo' }],
    ];
    for (const [name, h] of cases) {
      await refused(name, await tarOf([...head(key, m), blob(SCENE), { header: { name: `blobs/${sha(TEX)}`, ...h } }]), new RegExp(`^RB_BAD_BUNDLE\\b[\\s\\S]*is a ${h.type}; a bundle holds regular files only`));
    }
  });

  await t.test('a NUL in a name', async () => {
    const tar = Buffer.concat([await tarOf([...head(key, manifestOf('j-nul')), blob(SCENE)], false), rawHeader(Buffer.from(`blobs/${sha(TEX)}\0evil`), TEX.length), padded(TEX), Buffer.alloc(1024)]);
    await refused('nul', tar, /^RB_BAD_BUNDLE\b[\s\S]*its name holds a NUL character/);
  });

  await t.test('duplicate names, a hash that does not match', async () => {
    await refused('duplicate', await tarOf([...head(key, manifestOf('j-dup')), blob(SCENE), blob(SCENE), blob(TEX)]), /^RB_BAD_BUNDLE\b[\s\S]*appears twice/);
    // TEX's bytes under a name of the same size whose hash they do not have
    const other = Buffer.from(TEX.toString().toUpperCase());
    const m = manifestOf('j-hash', { files: [{ path: `${ROOT}/scene.pov`, size: SCENE.length, mode: 0o644, sha256: sha(SCENE) }, { path: `${ROOT}/tex/t.txt`, size: other.length, mode: 0o644, sha256: sha(other) }] });
    await refused('hash', await tarOf([...head(key, m), blob(SCENE), blob(TEX, `blobs/${sha(other)}`)]), new RegExp(`^RB_BAD_BUNDLE\\b[\\s\\S]*blob ${sha(other)} does not match its name`));
  });

  await t.test('a declared size of 50 GiB on a short file', async () => {
    const GiB50 = 50 * 1024 ** 3;
    const m = manifestOf('j-huge', { files: [{ path: `${ROOT}/scene.pov`, size: GiB50, mode: 0o644, sha256: sha(SCENE) }], job: { scene: `${ROOT}/scene.pov`, frames: '1', output: { dir: `${ROOT}/out` } } });
    const tar = Buffer.concat([await tarOf(head(key, m), false), rawHeader(Buffer.from(`blobs/${sha(SCENE)}`), GiB50), Buffer.alloc(256 * 1024, 7)]);
    // within the default quota (200 GiB) and the reader's limits (64 GiB): the file's end stops it, its partial blob removed
    await refused('huge', tar, /^RB_BAD_BUNDLE\b[\s\S]*(the tar is malformed|ends after)/);
    // with a quota below it: refused from the manifest, before a byte of the blob is written
    quota = 10 * 1024 ** 3;
    await refused('huge-quota', tar, /^RB_QUOTA_EXCEEDED: bundle studio-j-huge-job would store 50 GiB \(53687091200 bytes\) for studio, which already uses .* of its quota of 10 GiB/, 'v1.j-huge.rejected');
    quota = undefined;
  });

  await t.test('many entries: strays after the manifest, a manifest claiming a million files', async () => {
    // 20 000 empty stray entries (10 MB; the unit test streams a million): refused at the first
    const strays: Buffer[] = [];
    for (let i = 0; i < 20_000; i++) strays.push(rawHeader(Buffer.from(`blobs/${i.toString(16).padStart(64, '0')}`), 0));
    await refused('strays', Buffer.concat([await tarOf([...head(key, manifestOf('j-strays')), ...good()], false), ...strays, Buffer.alloc(1024)]), /^RB_BAD_BUNDLE\b[\s\S]*is a blob the manifest does not name/);
    // a msgpack array header claiming 1 000 000 items, in 5 bytes
    await refused('million', await tarOf(head(key, Buffer.from([0xdd, 0x00, 0x0f, 0x42, 0x40, 0xc0]))), /^RB_BAD_BUNDLE\b[\s\S]*claims 1000000 items/);
  });

  await t.test('compression bombs: a gzip\'d bundle, a nesting msgpack manifest', async () => {
    // 64 MiB of zeros in 64 KiB: a .rbb is a plain tar, so this is refused at its first header, never inflated
    await refused('gzip', gzipSync(Buffer.concat([await tarOf([...head(key, manifestOf('j-gzip')), ...good()], false), Buffer.alloc(64 * 1024 ** 2)]), { level: 9 }), /^RB_BAD_BUNDLE\b[\s\S]*(the first entry must be manifest.msgpack|the tar is malformed)/);
    await refused('nesting', await tarOf(head(key, Buffer.concat([Buffer.alloc(200_000, 0x91), Buffer.from([0xc0])]))), /^RB_BAD_BUNDLE\b[\s\S]*nests deeper than 32/);
  });

  await t.test('manifest paths outside the allowed roots', async () => {
    const under = (path: string, name: string) => manifestOf(name, { files: [{ path, size: SCENE.length, mode: 0o644, sha256: sha(SCENE) }], job: { scene: path, frames: '1', output: { dir: `${ROOT}/out` } } });
    await refused('datadir', await tarOf([...head(key, under(join(farm.dir, 'fed', 'cas', 'studio', 'x.pov'), 'j-data')), blob(SCENE)]), /^RB_BAD_BUNDLE\b[\s\S]*lies under the site's data directory/);
    await refused('system', await tarOf([...head(key, under('/etc/cron.d/rb.pov', 'j-etc')), blob(SCENE)]), /^RB_BAD_BUNDLE\b[\s\S]*\/etc/);
    await refused('climb', await tarOf([...head(key, under(`${ROOT}/../../etc/x.pov`, 'j-climb')), blob(SCENE)]), /^RB_BAD_BUNDLE\b[\s\S]*is not normalised/);
  });

  await t.test('the signature: a good bundle unsigned, or signed by another key', async () => {
    await refused('unsigned', await tarOf([...head(null, manifestOf('j-unsigned')), ...good()]), /^RB_BUNDLE_UNSIGNED\b/);
    const stranger = await loadSiteKey(join(studioDir, 'stranger'));
    await refused('stranger', await tarOf([...head(stranger, manifestOf('j-stranger')), ...good()]), /^RB_BAD_SIGNATURE\b/);
  });

  await t.test('the peer\'s quota: a bundle past it is refused before its blobs are stored; raised, the same bundle is taken', async () => {
    const { used } = await peerUse(farm.dir, 'studio');
    quota = used + SCENE.length; // room for one of its two blobs, not both
    const big = await tarOf([...head(key, manifestOf('j-big')), ...good()]);
    const text = await refused('over-quota', big, new RegExp(`^RB_QUOTA_EXCEEDED: bundle studio-j-big-job would store ${SCENE.length + TEX.length} bytes \\(${SCENE.length + TEX.length} bytes\\) for studio, which already uses ${used} bytes \\(${used} bytes\\) of its quota of ${quota} bytes`), 'v1.j-big.rejected');
    assert.match(text, /nothing of it was stored/);
    // the studio is answered, so that its job does not wait for ever
    const answer = await readBundle({ source: createReadStream(join(dirs.outgoing, 'v1.j-big.rejected.rbb')), tempDir: studioDir, dataDir: studioDir });
    await rm(answer.dir, { recursive: true, force: true });
    assert.equal(answer.manifest.status?.state, 'rejected');
    assert.deepEqual(answer.manifest.jobRef, { site: 'studio', job: 'j-big' });
    assert.match(answer.manifest.status?.reason ?? '', /^RB_QUOTA_EXCEEDED: bundle studio-j-big-job would store/);
    assert.deepEqual(await studioJobs(), [], 'no job was submitted for any hostile bundle');
    // a forged bundle past the quota (not signed by the studio) is refused for its signature, and never answered
    const stranger = await loadSiteKey(join(studioDir, 'stranger'));
    await refused('over-quota-forged', await tarOf([...head(stranger, manifestOf('j-forged')), ...good()]), /^RB_BAD_SIGNATURE\b/);

    quota = undefined;
    const tar = await tarOf([...head(key, manifestOf('j-good')), ...good()]);
    await dropFile(dirs.incoming, 'good.rbb', tar);
    const o = await waitUntil('the good bundle taken', () => outcomes.find((x) => x.name === 'good.rbb'), 30_000, 50);
    assert.equal(o.to, 'processed', o.error?.message);
    const jobs = await studioJobs();
    assert.equal(jobs.length, 1);
    assert.equal(jobs[0]!.origin?.job, 'j-good');
    assert.ok((await peerUse(farm.dir, 'studio')).used >= used + SCENE.length + TEX.length, 'its blobs are stored now');
  });
});
