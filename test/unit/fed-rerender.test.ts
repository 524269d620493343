import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { access, mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import type { BundleManifest, JobDetail, JobSpec } from '../../protocol/index.ts';
import { PeerCas } from '../../sites/cas/index.ts';
import { jobBundleOf } from '../../sites/outsource/index.ts';
import {
  bundleIdFor, formatKeep, inputsGoneReason, parseKeepDuration, planRerender, remoteJobPaths, RemoteJobRecords, RerenderRefused, sweepChoice, sweepRemoteJobs,
  type RemoteJobRecord, type SweepFacts,
} from '../../sites/remote-jobs/index.ts';
import { rerenderSpec } from '../../tools/cli/rerender.ts';

const DAY = 86_400_000;
const exists = (p: string) => access(p).then(() => true, () => false);
const log = pino({ level: 'silent' });

test('rerender - --keep-inputs takes a whole number and a unit, or parts together, and refuses anything else naming the forms', () => {
  assert.equal(parseKeepDuration('7d'), 7 * DAY);
  assert.equal(parseKeepDuration('36h'), 36 * 3_600_000);
  assert.equal(parseKeepDuration('90m'), 90 * 60_000);
  assert.equal(parseKeepDuration('30s'), 30_000);
  assert.equal(parseKeepDuration('2w'), 14 * DAY);
  assert.equal(parseKeepDuration('1d12h'), 36 * 3_600_000);
  assert.equal(parseKeepDuration(' 7D '), 7 * DAY);
  assert.equal(parseKeepDuration('0s'), 0);
  for (const bad of ['7', '7 days', '-1d', '', '1.5h', 'd', '7x', '1d 2h']) {
    assert.throws(() => parseKeepDuration(bad), (err: Error & { code?: string }) => err.code === 'RB_BAD_ARGUMENT' && /is not a duration: write a whole number and a unit: '7d', '36h', '90m', '30s', '2w'/.test(err.message), bad);
  }
  assert.throws(() => parseKeepDuration('4000d'), /longer than ten years/);
  assert.equal(formatKeep(7 * DAY), '7 days');
  assert.equal(formatKeep(DAY), '1 day');
  assert.equal(formatKeep(36 * 3_600_000), '36 hours');
  assert.equal(formatKeep(90_000), '90 seconds');
  assert.equal(inputsGoneReason('j-12', { at: Date.UTC(2026, 11, 3, 15, 4), keptMs: 7 * DAY }), 'inputs of j-12 were removed on 2026-12-03 15:04 UTC after 7 days');
});

const theirs: JobSpec = { name: 'shot', scene: '/proj/shot/scene.pov', frames: '1-10', supportFiles: ['/proj/shot/inc/a.inc'], output: { dir: '/proj/shot/out', pattern: 'f_####.png' }, priority: 20 };
const rec = (over: Partial<RemoteJobRecord> = {}): RemoteJobRecord => ({ v: 1, peer: 'studio', originJob: 'j-12', bundleId: 'job-j-12', state: 'accepted', jobId: 'jv1', theirSpec: theirs, samples: [1, 10, 5], at: 1_000, ...over });

test('rerender - the sweep keeps a job while it or a re-render of it runs, and for the retention after the last of them ended', () => {
  const keep = 7 * DAY;
  const facts = (over: Partial<SweepFacts>): SweepFacts => ({ rec: rec(), endedAt: 10 * DAY, leftovers: true, rerenders: [], ...over });
  assert.deepEqual(sweepChoice(facts({ endedAt: undefined }), keep, 100 * DAY), { do: 'keep' }, 'still running');
  assert.deepEqual(sweepChoice(facts({}), keep, 16 * DAY), { do: 'keep', until: 17 * DAY });
  assert.deepEqual(sweepChoice(facts({}), keep, 17 * DAY), { do: 'remove' });
  assert.deepEqual(sweepChoice(facts({ rerenders: [undefined] }), keep, 100 * DAY), { do: 'keep' }, 'a re-render of it runs');
  assert.deepEqual(sweepChoice(facts({ rerenders: [12 * DAY, 11 * DAY] }), keep, 18 * DAY), { do: 'keep', until: 19 * DAY }, 'kept from the last re-render\'s end');
  assert.deepEqual(sweepChoice(facts({ rerenders: [12 * DAY] }), keep, 19 * DAY), { do: 'remove' });
  assert.deepEqual(sweepChoice(facts({ rec: rec({ inputsGone: { at: 17 * DAY, keptMs: keep } }) }), keep, 18 * DAY), { do: 'finish' }, 'a sweep stopped half way');
  assert.deepEqual(sweepChoice(facts({ rec: rec({ inputsGone: { at: 17 * DAY, keptMs: keep } }), leftovers: false }), keep, 18 * DAY), { do: 'none' });
  assert.deepEqual(sweepChoice(facts({ rec: rec({ state: 'rejected' }), leftovers: false }), keep, 100 * DAY), { do: 'none' });
});

test('rerender - the command makes a new job of the ended one: those frames, its output folder and site, naming the first job', () => {
  const job = { jobId: 'j-12', name: 'shot', state: 'done', outputDir: '/proj/shot/out', spec: { ...theirs, site: 'v1', hold: true, after: ['j-11'] } } as Pick<JobDetail, 'jobId' | 'name' | 'state' | 'spec' | 'outputDir' | 'outsourced'>;
  assert.deepEqual(rerenderSpec(job, '3,7-9'), {
    name: 're-render of j-12: shot', scene: '/proj/shot/scene.pov', frames: '3,7-9', supportFiles: ['/proj/shot/inc/a.inc'], output: { dir: '/proj/shot/out', pattern: 'f_####.png' },
    priority: 20, rerenderOf: 'j-12', site: 'v1',
  });
  // a re-render of a re-render names the first job, whose inputs the vendor kept
  assert.equal(rerenderSpec({ ...job, jobId: 'j-20', spec: { ...job.spec, rerenderOf: 'j-12' } }, '3').rerenderOf, 'j-12');
  // outsourced by the site's policy: the job names no site, its view does
  const { site: _site, ...local } = job.spec;
  assert.equal(rerenderSpec({ ...job, spec: local, outsourced: { site: 'v2' } as JobDetail['outsourced'] }, '3').site, 'v2');
  assert.equal(rerenderSpec({ ...job, spec: local }, '3').site, undefined, 'a local job renders here');
  assert.throws(() => rerenderSpec({ ...job, state: 'rendering' }, '3'), /job j-12 is rendering: only a job that ended \(done, failed or cancelled\).*renderbus retry j-12 --frames 3/);
  assert.throws(() => rerenderSpec(job, '9-12'), /--frames: 2 frames \(11, 12\) are not of job j-12, whose frames are 1-10/);
  assert.throws(() => rerenderSpec(job, 'x'), /--frames: /);
});

test('rerender - the packer sends a re-render to its site with no file; a local job\'s re-render sent by the policy goes with its files, as a job of its own', () => {
  const spec: JobSpec = { ...theirs, supportFiles: ['/proj/shot/inc/a.inc', 'tex/b.png'], rerenderOf: 'j-12', site: 'v1' };
  const sent = jobBundleOf(spec, '/proj/shot/out');
  assert.deepEqual(sent.files, []);
  assert.equal(sent.job.rerenderOf, 'j-12');
  assert.equal(sent.job.site, undefined);
  const { site: _site, ...local } = spec;
  const policy = jobBundleOf(local, '/proj/shot/out');
  assert.deepEqual(policy.files, ['/proj/shot/scene.pov', '/proj/shot/inc/a.inc', '/proj/shot/tex/b.png']);
  assert.equal(policy.job.rerenderOf, undefined);
  const { rerenderOf: _r, ...plain } = local;
  assert.deepEqual(jobBundleOf(plain, '/proj/shot/out').files, policy.files);
});

async function vendorDir(t: { after(f: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'rb-rerender-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const rerenderBundle = (over: Partial<BundleManifest> = {}, spec: Partial<JobSpec> = {}): BundleManifest => ({
  version: 1, kind: 'job', bundleId: 'job-j-20', from: 'studio', to: 'v1', route: ['studio'], createdAt: 1, jobRef: { site: 'studio', job: 'j-20' },
  job: { ...theirs, name: 're-render of j-12: shot', frames: '3,7', rerenderOf: 'j-12', output: { dir: '/proj/shot/out' }, ...spec }, files: [], ...over,
});

test('rerender - the vendor plans a re-render from the kept spec and tree, or refuses it by name', async (t) => {
  const dataDir = await vendorDir(t);
  const records = await RemoteJobRecords.open(dataDir);
  const plan = (m: BundleManifest) => planRerender({ site: 'v1', dataDir, records, peer: 'studio', manifest: m });
  assert.throws(() => plan(rerenderBundle()), (e: Error) => e instanceof RerenderRefused && e.message === 'v1 never rendered job j-12 of studio: no inputs of it are kept here to render again');
  await records.put(rec({ theirSpec: { ...theirs, site: 'v1' } }));
  const p = plan(rerenderBundle());
  const own = remoteJobPaths(dataDir, 'studio', 'j-20');
  const kept = remoteJobPaths(dataDir, 'studio', 'j-12');
  assert.deepEqual(p.paths, { ...own, root: kept.root }, 'its own output folder, the original\'s tree');
  assert.equal(p.spec.scene, theirs.scene);
  assert.deepEqual(p.spec.sandbox, { root: kept.root });
  assert.equal(p.spec.output?.dir, own.out);
  assert.equal(p.spec.frames, '3,7');
  assert.equal(p.spec.user, 'peer:studio');
  assert.equal(p.spec.rerenderOf, undefined, 'the studio\'s job id means nothing in the vendor\'s queue');
  assert.deepEqual(p.theirSpec.output, { dir: '/proj/shot/out', pattern: 'f_####.png' });
  assert.equal(p.theirSpec.rerenderOf, 'j-12');
  // what the bundle says of the files plays no part: the kept spec's scene is rendered
  assert.equal(plan(rerenderBundle({}, { scene: '/elsewhere/evil.pov' })).spec.scene, theirs.scene);

  assert.throws(() => plan(rerenderBundle({ files: [{ path: '/proj/shot/scene.pov', size: 1, mode: 0o644, sha256: createHash('sha256').update('x').digest('hex') }] })), /a re-render carries no files, this one carries 1/);
  assert.throws(() => plan(rerenderBundle({}, { frames: '9-12' })), /frames 11, 12 are not of job j-12 \(its frames: 1-10\)/);
  // a re-render of a re-render renders from the first job's tree
  await records.put(rec({ originJob: 'j-20', jobId: 'jv2', rerenderOf: 'j-12', theirSpec: { ...theirs, frames: '3,7' } }));
  assert.equal(plan(rerenderBundle({ jobRef: { site: 'studio', job: 'j-30' } }, { rerenderOf: 'j-20' })).original.originJob, 'j-12');
  await records.put(rec({ inputsGone: { at: Date.UTC(2026, 11, 3, 15, 4), keptMs: 7 * DAY } }));
  assert.throws(() => plan(rerenderBundle()), (e: Error) => e instanceof RerenderRefused && e.message === 'inputs of j-12 were removed on 2026-12-03 15:04 UTC after 7 days');
  await records.put(rec({ state: 'rejected', reason: 'no host at v1 can render it' }));
  assert.throws(() => plan(rerenderBundle()), /v1 refused job j-12 \(no host at v1 can render it\): no inputs of it are kept here/);
});

/** A peer's job as the intake leaves it: its blob in the store, its reference, its tree, its record; ended when `endedAt` is given. */
async function keptJob(dataDir: string, records: RemoteJobRecords, originJob: string, o: { endedAt?: number; content: string; rerenderOf?: string }): Promise<{ hash: string }> {
  const cas = await PeerCas.open(dataDir, 'studio');
  const bytes = Buffer.from(o.content);
  const hash = createHash('sha256').update(bytes).digest('hex');
  const paths = remoteJobPaths(dataDir, 'studio', originJob);
  if (!o.rerenderOf) {
    const src = join(dataDir, `${originJob}.src`);
    await writeFile(src, bytes);
    await cas.put(src, hash, bytes.length);
    await cas.addRef(`job-${originJob}`, [hash]);
    await cas.linkOut(hash, join(paths.root, 'proj', 'shot', 'scene.pov'));
    // the blob was last used when the job ran: long ago by the clock the sweep is given
    await utimes(cas.blobPath(hash), new Date(1_000), new Date(1_000));
  }
  await mkdir(paths.out, { recursive: true });
  await records.put(rec({ originJob, jobId: `v-${originJob}`, ...(o.rerenderOf ? { rerenderOf: o.rerenderOf } : {}) }));
  if (o.endedAt !== undefined) {
    const id = bundleIdFor('v1', originJob, 'bill');
    await records.markSent({ peer: 'studio', originJob }, id);
    const marker = join(dataDir, 'fed', 'remote-jobs', 'studio', `${originJob}.sent`, id);
    await utimes(marker, new Date(o.endedAt), new Date(o.endedAt));
  }
  return { hash };
}

test('rerender - the sweep removes an ended job\'s tree, reference and blobs after the retention, keeps the rest, and finishes a sweep killed half way', async (t) => {
  const dataDir = await vendorDir(t);
  const records = await RemoteJobRecords.open(dataDir);
  const now = Date.now();
  const old = await keptJob(dataDir, records, 'j-old', { endedAt: now - 8 * DAY, content: 'old' });
  const recent = await keptJob(dataDir, records, 'j-recent', { endedAt: now - 6 * DAY, content: 'recent' });
  await keptJob(dataDir, records, 'j-running', { content: 'running' });
  // ended long ago, but a re-render of it runs
  await keptJob(dataDir, records, 'j-used', { endedAt: now - 30 * DAY, content: 'used' });
  await keptJob(dataDir, records, 'j-again', { rerenderOf: 'j-used', content: '' });
  const cas = await PeerCas.open(dataDir, 'studio');
  const tree = (job: string) => remoteJobPaths(dataDir, 'studio', job).dir;
  const blob = (hash: string) => exists(cas.blobPath(hash));

  const r = await sweepRemoteJobs({ site: 'v1', dataDir, records, keepMs: 7 * DAY, log, now });
  assert.deepEqual(r.removed, ['studio/j-old']);
  assert.equal(r.blobsRemoved, 1);
  assert.ok(!(await exists(tree('j-old'))));
  assert.ok(!(await blob(old.hash)), 'the blob no job references is collected');
  assert.ok(!(await cas.refs()).includes('job-j-old'));
  assert.deepEqual(records.get('studio', 'j-old')?.inputsGone, { at: now, keptMs: 7 * DAY });
  const reread = await RemoteJobRecords.open(dataDir);
  assert.deepEqual(reread.get('studio', 'j-old')?.inputsGone, { at: now, keptMs: 7 * DAY }, 'the mark is on disk');
  for (const job of ['j-recent', 'j-running', 'j-used', 'j-again']) assert.ok(await exists(tree(job)), `${job} kept`);
  assert.ok(await blob(recent.hash), 'a referenced blob stays however old');

  // a sweep killed after it marked the record, before it removed anything: the next one finishes
  await records.put({ ...records.get('studio', 'j-recent')!, inputsGone: { at: now, keptMs: 7 * DAY } });
  const again = await sweepRemoteJobs({ site: 'v1', dataDir, records, keepMs: 7 * DAY, log, now });
  assert.deepEqual(again.removed, ['studio/j-recent']);
  assert.ok(!(await exists(tree('j-recent'))));
  assert.ok(!(await blob(recent.hash)));
  // and one killed after dropping the reference, before its gc: a later sweep's gc takes the blob
  const late = await keptJob(dataDir, records, 'j-late', { endedAt: now - 9 * DAY, content: 'late' });
  await records.put({ ...records.get('studio', 'j-late')!, inputsGone: { at: now, keptMs: 7 * DAY } });
  await cas.removeRef('job-j-late');
  await rm(tree('j-late'), { recursive: true });
  const third = await sweepRemoteJobs({ site: 'v1', dataDir, records, keepMs: 7 * DAY, log, now });
  assert.deepEqual(third.removed, []);
  assert.ok(!(await blob(late.hash)));

  // the re-render ends: the original is kept 7 days from then, then both go
  await records.markSent({ peer: 'studio', originJob: 'j-again' }, bundleIdFor('v1', 'j-again', 'bill'));
  assert.deepEqual((await sweepRemoteJobs({ site: 'v1', dataDir, records, keepMs: 7 * DAY, log, now: now + 6 * DAY })).removed, []);
  assert.deepEqual((await sweepRemoteJobs({ site: 'v1', dataDir, records, keepMs: 7 * DAY, log, now: now + 8 * DAY })).removed.sort(), ['studio/j-again', 'studio/j-used']);
});
