import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import type { BundleManifest, JobSpec } from '../../protocol/index.ts';
import { AGE_HEADER, readBundle, sealFile, writeBundle, type BundleSource, type ReadBundleResult } from '../../sites/bundles/index.ts';
import { dropFile, hotFolderDirs, type HotOutcome } from '../../sites/hotfolders/index.ts';
import { loadResultKey, type ResultKey } from '../../sites/links/index.ts';
import { TestFarm, TINY_SCENE, waitUntil } from '../helpers/farm.ts';

// Two farms in one test file, bundles carried between their hot folders by hand: the studio
// outsources to v1, v1 renders with POV-Ray and returns everything encrypted to the studio's key.
// Bundle paths may not lie under /tmp (the path rules): both farms work in /var/tmp.
let studio: TestFarm;
let vendor: TestFarm;
let key: ResultKey;
const studioOutcomes: HotOutcome[] = [];
const vendorOutcomes: HotOutcome[] = [];
const hasAge = spawnSync('age', ['--version']).status === 0;

before(async () => {
  [studio, vendor] = await Promise.all([TestFarm.start({ site: 'studio', peers: ['v1'], tmpBase: '/var/tmp' }), TestFarm.start({ site: 'v1', tmpBase: '/var/tmp' })]);
  await Promise.all([studio.scheduler(), vendor.registry(), vendor.scheduler(), vendor.renderServer('rs1', 2)]);
  // the site's policy: results encrypted, the vendor may keep its clear copies (a job asking for purge gets it)
  await studio.studioIntake({ encryptResults: { purge: false }, onOutcome: (_peer, o) => studioOutcomes.push(o) });
  await vendor.remoteIntake(['studio'], { onOutcome: (_peer, o) => vendorOutcomes.push(o) });
  key = await loadResultKey(studio.dataDir);
});

after(async () => {
  await Promise.all([studio?.stop(), vendor?.stop()]);
});

const sha256 = async (path: string) => {
  const h = createHash('sha256');
  for await (const c of createReadStream(path)) h.update(c as Buffer);
  return h.digest('hex');
};
const studioDirs = () => hotFolderDirs(studio.dataDir, 'v1');
const vendorDirs = () => hotFolderDirs(vendor.dir, 'studio');

/** Drops a bundle into a farm's incoming folder and waits for its intake's outcome. */
async function carry(file: string, to: 'studio' | 'vendor'): Promise<HotOutcome> {
  const name = file.split('/').pop()!;
  const [dir, outcomes] = to === 'studio' ? [studioDirs().incoming, studioOutcomes] : [vendorDirs().incoming, vendorOutcomes];
  const seen = outcomes.length;
  await dropFile(dir, name, file);
  return waitUntil(`the ${to}'s intake's outcome of ${name}`, () => outcomes.slice(seen).find((x) => x.name === name && x.to !== 'retry'), 30_000);
}

async function open(file: string): Promise<ReadBundleResult> {
  const tempDir = join(studio.dir, 'read');
  await mkdir(tempDir, { recursive: true });
  return readBundle({ source: createReadStream(file), tempDir, dataDir: join(studio.dir, 'elsewhere') });
}

async function jobBundle(jobId: string): Promise<{ file: string; manifest: BundleManifest }> {
  const file = join(studioDirs().outgoing, `job-${jobId}.rbb`);
  await waitUntil(`the bundle of ${jobId} in outgoing/v1`, () => stat(file).then(() => true, () => false), 20_000);
  return { file, manifest: (await open(file)).manifest };
}

/** Every regular file under `dir`, recursively. */
async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) if (e.isFile()) out.push(join(e.parentPath, e.name));
  return out;
}

const pixels = async (path: string) => (await sharp(path).removeAlpha().raw().toBuffer()).toString('base64');

test('fed-encrypt - frames, logs and samples come back encrypted to the studio\'s key, decrypt to the frames of a plain render, and v1 keeps nothing in clear', { timeout: 120_000 }, async () => {
  const proj = join(studio.dir, 'proj');
  await mkdir(proj, { recursive: true });
  const scene = join(proj, 'shot.pov');
  await writeFile(scene, TINY_SCENE);
  const outDir = join(studio.dir, 'out-enc');
  const spec: JobSpec = { name: 'enc', scene, frames: '1-3', resolution: '64x48', output: { dir: outDir, pattern: 'f_####.png' } };
  // the same frames rendered plainly (at v1, into a folder of the studio's: v1's own data dir must hold no clear frame)
  const direct = await vendor.submit({ ...spec, name: 'direct', output: { dir: join(studio.dir, 'direct'), pattern: 'f_####.png' } });
  const jobId = await studio.submit({ ...spec, site: 'v1', encryptResults: true });

  const job = await jobBundle(jobId);
  assert.deepEqual(job.manifest.encryptResults, { to: key.recipient, purge: true }, 'the job asks for purge, stricter than the site\'s keep');
  assert.equal(job.manifest.job?.encryptResults, undefined, 'the manifest says it, with the key; not the spec');
  assert.equal((await carry(job.file, 'vendor')).to, 'processed');

  await waitUntil('v1 to send the bill', () => stat(join(vendorDirs().outgoing, `v1.${jobId}.bill.rbb`)).then(() => true, () => false), 60_000, 100);
  await vendor.waitJob(direct, 'done', 30_000);
  const sent = (await readdir(vendorDirs().outgoing)).filter((n) => n.startsWith(`v1.${jobId}.`) && n.endsWith('.rbb'));
  const withTimes = await Promise.all(sent.map(async (n) => ({ n, at: (await open(join(vendorDirs().outgoing, n))).manifest.createdAt })));
  const ordered = withTimes.sort((a, b) => a.at - b.at || a.n.localeCompare(b.n)).map((x) => x.n);

  // every file in every bundle is an age file whose clear hash the manifest keeps
  const plainShas = new Set<string>();
  let carried = 0;
  for (const n of ordered) {
    const read = await open(join(vendorDirs().outgoing, n));
    for (const f of read.manifest.files) {
      assert.ok(f.plain, `${n}: ${f.path} is encrypted`);
      const head = (await readFile(read.blobs.get(f.sha256)!)).subarray(0, AGE_HEADER.length).toString();
      assert.equal(head, AGE_HEADER, `${n}: ${f.path} is an age file`);
      assert.notEqual(f.sha256, f.plain.sha256);
      plainShas.add(f.plain.sha256);
      carried++;
    }
  }
  assert.ok(carried >= 3 + 3 + 3 + 3 + 3, `frames and logs twice (partial and result) and three samples: ${carried} files`);

  // the age tool opens a returned frame with the studio's key file as it is
  const result = await open(join(vendorDirs().outgoing, `v1.${jobId}.result.rbb`));
  const f2 = result.manifest.files.find((f) => f.path === join(outDir, 'f_0002.png'))!;
  if (hasAge) {
    const r = spawnSync('age', ['-d', '-i', key.path, result.blobs.get(f2.sha256)!], { maxBuffer: 1 << 24 });
    assert.equal(r.status, 0, r.stderr.toString());
    assert.equal(createHash('sha256').update(r.stdout).digest('hex'), f2.plain!.sha256, 'the age tool decrypts it to the frame');
  }

  // nothing readable in clear at v1: no file under its data dir has the content of a frame, log or thumbnail
  const p = join(vendor.dir, 'fed', 'jobs', 'studio', jobId);
  assert.equal(await stat(join(p, 'out')).then(() => true, () => false), false, 'its out/ is gone');
  assert.ok((await readdir(join(p, 'root'))).length > 0, 'its inputs stay (a re-render needs them)');
  const clearAtVendor = [];
  for (const f of await filesUnder(vendor.dir)) if (plainShas.has(await sha256(f))) clearAtVendor.push(f);
  assert.deepEqual(clearAtVendor, [], 'no clear copy at v1');
  assert.deepEqual(await readdir(join(vendor.dir, 'fed', 'sealing')), [], 'no ciphertext left aside either');

  // the studio decrypts each bundle as it comes: frames land exactly as a plain result's
  for (const n of ordered) {
    const o = await carry(join(vendorDirs().outgoing, n), 'studio');
    assert.equal(o.to, 'processed', `${n}: ${o.error?.message}`);
  }
  const done = await studio.waitJob(jobId, 'done', 10_000);
  assert.equal(done.counts.done, 3);
  for (const f of [1, 2, 3]) {
    const got = join(outDir, `f_000${f}.png`);
    assert.equal(await pixels(got), await pixels(join(studio.dir, 'direct', `f_000${f}.png`)), `frame ${f} is the plain render's`);
  }
  assert.equal(await sha256(join(outDir, 'f_0002.png')), f2.plain!.sha256);
  assert.equal((await readdir(join(outDir, '.rb-samples'))).length, 3, 'the sample thumbnails, decrypted');
  assert.equal((await readdir(join(outDir, '.rb-logs', 'remote-v1'))).length, 3, 'the task logs, decrypted');
  // the search above finds clear files where they are: here, every frame, log and thumbnail
  const found = new Set<string>();
  for (const f of await filesUnder(outDir)) {
    const h = await sha256(f);
    if (plainShas.has(h)) found.add(h);
  }
  assert.equal(found.size, plainShas.size, 'each clear content is found at the studio');
});

/** A studio job sent to v1 and never rendered (a command job): its spec as v1 got it. */
async function outsourcedJob(name: string): Promise<{ jobId: string; outDir: string; manifest: BundleManifest }> {
  const scene = await studio.writeScene(`${name}.pov`);
  const outDir = join(studio.dir, `out-${name}`);
  const jobId = await studio.submit({ name, scene, renderer: 'command', command: 'sh -c "echo {frame} > {output}"', frames: '1-2', output: { dir: outDir, pattern: 'f_####.txt' }, site: 'v1' });
  return { jobId, outDir, manifest: (await jobBundle(jobId)).manifest };
}

test('fed-encrypt - a clear file, a changed byte, another key or the wrong clear hash refuse the bundle into failed/ naming the file; nothing is written', async () => {
  const { jobId, outDir, manifest } = await outsourcedJob('refuse');
  assert.deepEqual(manifest.encryptResults, { to: key.recipient, purge: false }, 'the site\'s policy: encrypted, the vendor may keep its copies');
  const work = join(vendor.dir, 'by-hand');
  await mkdir(work, { recursive: true });
  const frame = join(work, 'f_0001.txt');
  await writeFile(frame, '1\n');
  const target = join(outDir, 'f_0001.txt');
  const sealed = join(work, 'f_0001.age');
  await rm(sealed, { force: true });
  const plain = await sealFile(frame, sealed, key.recipient);
  const ct = await readFile(sealed);

  let n = 0;
  const result = async (source: BundleSource) => {
    const out = join(work, `r${++n}-${jobId}.rbb`);
    await writeBundle({ head: { kind: 'result', bundleId: `r${n}-${jobId}`, from: 'v1', to: 'studio', route: ['v1'], jobRef: { site: 'studio', job: jobId }, job: manifest.job!, outputs: [target] }, files: [source], out, dataDir: join(vendor.dir, 'elsewhere') });
    return carry(out, 'studio');
  };
  const refused = async (source: BundleSource, why: RegExp) => {
    const o = await result(source);
    assert.equal(o.to, 'failed');
    const reason = (await readFile(`${o.path}.reason.txt`, 'utf8')).split('\n')[0]!;
    assert.match(reason, new RegExp(`bundle r${n}-${jobId}: outputs\\[0\\] "${target}" `), reason);
    assert.match(reason, why, reason);
    assert.equal(await stat(outDir).then(() => true, () => false), false, 'nothing written');
  };

  await refused({ path: target, from: frame }, /^RB_FORBIDDEN: .* came in clear, but job .* results must come encrypted to studio's result key: nothing of it was written$/);
  const changed = Buffer.from(ct);
  changed[changed.length - 3]! ^= 1;
  await writeFile(join(work, 'changed.age'), changed);
  await refused({ path: target, from: join(work, 'changed.age'), plain }, /^RB_DECRYPT_FAILED: .* does not decrypt with this site's result key: .*nothing of it was written$/);
  const other = await loadResultKey(join(work, 'other-site'));
  await rm(join(work, 'other.age'), { force: true });
  await sealFile(frame, join(work, 'other.age'), other.recipient);
  await refused({ path: target, from: join(work, 'other.age'), plain }, /^RB_DECRYPT_FAILED: .* does not decrypt with this site's result key: no identity matched/);
  await refused({ path: target, from: sealed, plain: { ...plain, sha256: createHash('sha256').update('2\n').digest('hex') } }, /^RB_DECRYPT_FAILED: .* decrypts to 2 bytes with sha256 [0-9a-f]{64}, not the 2 bytes with sha256 [0-9a-f]{64} its manifest names/);
  assert.equal((await studio.job(jobId)).counts.done, 0);

  // the same frame sealed as it should be is taken: the refusals were the crypto's
  const ok = await result({ path: target, from: sealed, plain });
  assert.equal(ok.to, 'processed', ok.error?.message);
  assert.equal(await readFile(target, 'utf8'), '1\n');
});

test('fed-encrypt - a job whose encryptResults.to is no age key is rejected by v1 at once, naming it', async () => {
  const scene = join(studio.dir, 'proj-bad', 'shot.pov');
  await mkdir(join(studio.dir, 'proj-bad'), { recursive: true });
  await writeFile(scene, TINY_SCENE);
  const broken = `${key.recipient.slice(0, -1)}${key.recipient.endsWith('q') ? 'p' : 'q'}`; // its bech32 checksum no longer matches
  const out = join(studio.dir, 'staged', 'studio-j-bad-job.rbb');
  await mkdir(join(studio.dir, 'staged'), { recursive: true });
  await writeBundle({
    head: { kind: 'job', bundleId: 'studio-j-bad-job', from: 'studio', to: 'v1', route: ['studio'], jobRef: { site: 'studio', job: 'j-bad' }, job: { name: 'bad', scene, frames: '1', output: { dir: join(studio.dir, 'out-bad') } }, encryptResults: { to: broken, purge: true } },
    files: [scene], out, dataDir: studio.dataDir,
  });
  assert.equal((await carry(out, 'vendor')).to, 'processed');
  const rejected = join(vendorDirs().outgoing, 'v1.j-bad.rejected.rbb');
  await waitUntil('v1 to reject it', () => stat(rejected).then(() => true, () => false), 20_000);
  const st = (await open(rejected)).manifest.status!;
  assert.equal(st.state, 'rejected');
  assert.match(st.reason ?? '', /^RB_BAD_JOB: its encryptResults.to "age1[a-z0-9]+" is not an age recipient \(age1…\): /);
  assert.equal((await vendor.jobs()).filter((j) => j.origin?.job === 'j-bad').length, 0, 'nothing queued');
});
