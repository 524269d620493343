import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createReadStream } from 'node:fs';
import { readBundle, writeBundle } from '../../sites/bundles/index.ts';
import { prepareOutgoing } from '../../sites/links/bundle-send.ts';
import { signOutgoing } from '../../sites/links/bundle-sign.ts';
import { loadSiteKey, verifySiteSignature } from '../../sites/links/site-key.ts';
import { ensureHotFolders } from '../../sites/hotfolders/index.ts';
import { startIntake } from '../../sites/intake/index.ts';
import { waitUntil } from '../helpers/farm.ts';

test('bundle sign - a bundle dropped unsigned, or signed by another key, is signed in place with the site key; the blobs and manifest kept byte for byte', async () => {
  const dir = await mkdtemp('/var/tmp/rb-sign-'); // bundle files may not lie under /tmp (path rules)
  try {
    const studio = await loadSiteKey(join(dir, 'studio-data'));
    const other = await loadSiteKey(join(dir, 'other-data'));
    await mkdir(join(dir, 'src'));
    const files = [join(dir, 'src', 'a.bin'), join(dir, 'src', 'empty.bin'), join(dir, 'src', 'c.txt')];
    await writeFile(files[0]!, Buffer.alloc(70_000, 7));
    await writeFile(files[1]!, '');
    await writeFile(files[2]!, 'hello');
    const head = (id: string) => ({ kind: 'status' as const, bundleId: id, from: 'studio', to: 'v1', route: [] });
    const read = async (f: string) => readBundle({ source: createReadStream(f), tempDir: dir, dataDir: join(dir, 'v1-data') });

    for (const [id, sign] of [['unsigned', undefined], ['other', other]] as const) {
      const f = join(dir, `${id}.rbb`);
      await writeBundle({ head: head(id), files, out: f, dataDir: join(dir, 'studio-data'), ...(sign ? { sign } : {}) });
      const before = await read(f);
      assert.equal(await signOutgoing({ path: f, site: 'studio', key: studio }), 'signed');
      const after = await read(f);
      assert.ok(after.signature && verifySiteSignature(studio.publicKey, after.manifestBytes, after.signature), `${id}: signed with the studio's key`);
      assert.deepEqual(after.manifestBytes, before.manifestBytes, `${id}: the manifest's bytes untouched`);
      for (const [sha, p] of before.blobs) assert.deepEqual(await readFile(after.blobs.get(sha)!), await readFile(p));
      // the link can send it (its layout checked), and it is not signed twice
      assert.ok((await prepareOutgoing({ path: f, name: `${id}.rbb`, site: 'studio', peer: 'v1', dataDir: join(dir, 'studio-data') })).signature);
      const size = (await stat(f)).size;
      assert.equal(await signOutgoing({ path: f, site: 'studio', key: studio }), 'had');
      assert.equal((await stat(f)).size, size);
      for (const r of [before, after]) await rm(r.dir, { recursive: true, force: true });
    }
    // a bundle that says it is from another site is not ours to sign: left for the link to refuse
    const theirs = join(dir, 'theirs.rbb');
    await writeBundle({ head: { ...head('theirs'), from: 'v2' }, files, out: theirs, dataDir: join(dir, 'studio-data') });
    const bytes = await readFile(theirs);
    assert.equal(await signOutgoing({ path: theirs, site: 'studio', key: studio }), 'not ours');
    await writeFile(join(dir, 'junk.rbb'), 'not a tar at all');
    assert.equal(await signOutgoing({ path: join(dir, 'junk.rbb'), site: 'studio', key: studio }), 'not ours');
    assert.deepEqual(await readFile(theirs), bytes);
    assert.deepEqual((await readdir(dir)).filter((n) => n.endsWith('.signing')), [], 'no temp file left');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('intake hold - a held peer\'s bundles stay in incoming/ while the intake keeps looking, and are taken once the hold ends', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'rb-hold-'));
  try {
    const studio = await loadSiteKey(join(dir, 'studio-data'));
    const data = join(dir, 'v1-data');
    const dirs = await ensureHotFolders(data, 'studio');
    await writeBundle({ head: { kind: 'status', bundleId: 'b-held', from: 'studio', to: 'v1', route: [], jobRef: { site: 'studio', job: 'j-1' }, status: { state: 'cancel', at: 1 } }, files: [], out: join(dirs.incoming, 'b-held.rbb'), dataDir: join(dir, 'studio-data'), sign: studio });
    let held: string | undefined = 'quarantined';
    const taken: string[] = [];
    const scans: number[] = [];
    const intake = await startIntake({
      site: 'v1', dataDir: data, peers: ['studio'], scanEveryMs: 50,
      handlers: { peerJob: async (b) => void taken.push(b.manifest.bundleId), ownJob: async () => assert.fail('not news') },
      peerKey: () => studio.publicKey,
      held: () => held,
      onScan: (_p, n) => scans.push(n),
    });
    try {
      await waitUntil('three looks while held', () => scans.length >= 3, 5_000, 10);
      assert.deepEqual(taken, []);
      assert.deepEqual(await readdir(dirs.incoming), ['b-held.rbb']);
      held = undefined;
      await waitUntil('taken after the hold', () => taken.length === 1, 5_000, 10);
      await waitUntil('moved to processed/', async () => (await readdir(dirs.processed)).includes('b-held.rbb'), 5_000, 10);
    } finally {
      await intake.stop();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
