import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { prepareJob, PROTOCOL_MAJOR, type FrameRecord, type JobSpec } from '../../protocol/index.ts';
import { JobBook } from '../../actors/scheduler/index.ts';
import { intakeRequests } from '../../actors/scheduler/job-origin.ts';
import { applyRecord } from '../../actors/scheduler/replay.ts';
import { readBundle, writeBundle } from '../../sites/bundles/index.ts';
import { loadSiteKey, verifySiteSignature } from '../../sites/links/site-key.ts';
import {
  billOf, bundleIdFor, localSpec, NO_RATES, noHostReason, originalOutput, originalSample, rateCardOf, remoteJobPaths, sampleFrames, treePath,
} from '../../sites/remote-jobs/index.ts';
import { aJobSpec } from '../helpers/builders.ts';

const paths = remoteJobPaths('/srv/rb', 'studio', 'j-12');
const theirs: JobSpec = {
  name: 'shot', scene: '/proj/shot/scene.pov', frames: '1-10', supportFiles: ['/proj/shot/inc/a.inc'], output: { dir: '/proj/shot/out', pattern: 'f_####.png' },
  site: 'v1', notify: ['https://studio.example/hook'], after: ['j-11'], limits: ['maya'], hold: true, user: 'ann', group: 'fx', priority: 20,
};
const files = new Set(['/proj/shot/scene.pov', '/proj/shot/inc/a.inc']);

test('remote jobs - a peer\'s spec runs in the sandbox over the job\'s tree, at its original paths, and loses what only means something at the studio', () => {
  assert.deepEqual(paths, { dir: '/srv/rb/fed/jobs/studio/j-12', root: '/srv/rb/fed/jobs/studio/j-12/root', out: '/srv/rb/fed/jobs/studio/j-12/out', samples: '/srv/rb/fed/jobs/studio/j-12/samples' });
  const spec = localSpec(theirs, { peer: 'studio', paths, files });
  assert.deepEqual(spec, {
    name: 'shot', scene: '/proj/shot/scene.pov', frames: '1-10', priority: 20, sandbox: { root: '/srv/rb/fed/jobs/studio/j-12/root' },
    supportFiles: ['/proj/shot/inc/a.inc'], output: { dir: '/srv/rb/fed/jobs/studio/j-12/out', pattern: 'f_####.png' },
    user: 'peer:studio', group: 'peer:studio', project: 'peer:studio', previewFirst: true,
  });
  assert.ok(prepareJob(spec).requirements.packages?.includes('sandbox'), 'only a host that can sandbox takes it');
});

test('remote jobs - refuses a command job, and a scene or support file the bundle does not carry', () => {
  assert.throws(() => localSpec({ ...theirs, renderer: 'command', command: 'rm -rf /' }, { peer: 'studio', paths, files }), /renderer 'command' is not taken from a peer/);
  assert.throws(() => localSpec({ ...theirs, scene: '/proj/other.pov' }, { peer: 'studio', paths, files }), /scene "\/proj\/other.pov" is not one of the bundle's files/);
  assert.throws(() => localSpec({ ...theirs, supportFiles: ['/proj/x.inc'] }, { peer: 'studio', paths, files }), /support file "\/proj\/x.inc"/);
  assert.throws(() => localSpec({ ...theirs, output: {} }, { peer: 'studio', paths, files }), /no output.dir/);
  assert.throws(() => treePath(paths.root, '/proj/../../etc/passwd'), /RB_BAD_BUNDLE|not an absolute, normalised path/);
  assert.throws(() => remoteJobPaths('/srv/rb', '../x', 'j'), /not a subject token/);
});

test('remote jobs - files written here map back under the studio\'s output.dir, and nothing outside out/ does', () => {
  assert.equal(originalOutput(paths, '/proj/shot/out', `${paths.out}/f_0001.png`), '/proj/shot/out/f_0001.png');
  assert.equal(originalOutput(paths, '/proj/shot/out/', `${paths.out}/.rb-logs/abc.0-a1.log`), '/proj/shot/out/.rb-logs/abc.0-a1.log');
  assert.throws(() => originalOutput(paths, '/proj/shot/out', `${paths.root}/proj/shot/scene.pov`), /not inside the job's output folder/);
  assert.throws(() => originalOutput(paths, '/proj/shot/out', paths.out), /not inside/);
  assert.equal(originalSample('/proj/shot/out', 'f_0001.png.png'), '/proj/shot/out/.rb-samples/f_0001.png.png');
});

test('remote jobs - the sample frames are the first, last and middle ones', () => {
  assert.deepEqual(sampleFrames('1-10'), [1, 10, 5]);
  assert.deepEqual(sampleFrames('7'), [7]);
  assert.deepEqual(sampleFrames('1,9'), [1, 9]);
  assert.deepEqual(sampleFrames('10-50x10'), [10, 50, 30]);
});

const frame = (f: number, task: number, over: Partial<FrameRecord> = {}): FrameRecord => ({
  frame: f, state: 'done', taskIndex: task, attempt: 1, host: 'h1', stats: { wallMs: 1000, cpuMs: 3000, peakRssKb: 2048, bytesWritten: 100 }, ...over,
});

test('remote jobs - a bill has a line per frame done, a chunk\'s figures shared out, and totals that add up', () => {
  const b = billOf([frame(1, 0), frame(2, 1, { stats: { wallMs: 1001, cpuMs: 3001, peakRssKb: 4096, bytesWritten: 101 } }), frame(3, 1, { stats: { wallMs: 1001, cpuMs: 3001, peakRssKb: 4096, bytesWritten: 101 } }), frame(4, 2, { state: 'failed' }), frame(5, 3, { state: 'queued', stats: undefined })], NO_RATES);
  assert.deepEqual(b.frames, [
    { frame: 1, host: 'h1', wallMs: 1000, cpuMs: 3000, bytes: 100, peakRssMb: 2 },
    { frame: 2, host: 'h1', wallMs: 501, cpuMs: 1501, bytes: 51, peakRssMb: 4 },
    { frame: 3, host: 'h1', wallMs: 500, cpuMs: 1500, bytes: 50, peakRssMb: 4 },
  ]);
  assert.deepEqual(b.totals, { frames: 3, wallMs: 2001, cpuMs: 6001, bytes: 201, amountMinor: 0 });
  assert.equal(b.currency, 'XXX');
});

test('remote jobs - the amount: core hours and GB at the card\'s rates, in minor units, at least the minimum', () => {
  const hour = frame(1, 0, { stats: { wallMs: 3_600_000, cpuMs: 7_200_000, peakRssKb: 0, bytesWritten: 3e9 } });
  const rate = { currency: 'EUR', perCoreHourMinor: 150, perGbMinor: 7, minimumMinor: 0 };
  assert.equal(billOf([hour], rate).totals.amountMinor, 2 * 150 + 3 * 7);
  assert.equal(billOf([hour], { ...rate, minimumMinor: 1000 }).totals.amountMinor, 1000);
  assert.equal(billOf([], { ...rate, minimumMinor: 1000 }).totals.amountMinor, 0, 'nothing rendered, nothing owed');
  assert.equal(billOf([hour], rate).frames[0]!.peakRssMb, undefined, 'no memory measured: none stated');
});

test('remote jobs - the rate card: a peer\'s own rates over the site\'s, and no guessing', () => {
  const doc = { currency: 'EUR', perCoreHourMinor: 4, perGbMinor: 2, peers: { studio: { perCoreHourMinor: 3 } } };
  assert.deepEqual(rateCardOf(doc, 'studio'), { currency: 'EUR', perCoreHourMinor: 3, perGbMinor: 2, minimumMinor: 0 });
  assert.deepEqual(rateCardOf(doc, 'other'), { currency: 'EUR', perCoreHourMinor: 4, perGbMinor: 2, minimumMinor: 0 });
  assert.deepEqual(rateCardOf({}, 'x'), NO_RATES);
  assert.throws(() => rateCardOf({ perCoreHourMinor: 1.5 }, 'x'), /perCoreHourMinor must be a whole number/);
  assert.throws(() => rateCardOf({ perGbMinor: -1 }, 'x'), /perGbMinor must be a whole number/);
  assert.throws(() => rateCardOf({ currency: 'euro' }, 'x'), /not an ISO 4217 code/);
  assert.throws(() => rateCardOf({ peers: { x: { minimumMinor: '5' } } }, 'x'), /minimumMinor/);
});

test('remote jobs - bundle ids are the same every time, and stay within the manifest\'s 128 characters', () => {
  assert.equal(bundleIdFor('v1', 'j-12', 't3-a1'), 'v1.j-12.t3-a1');
  const long = bundleIdFor('v'.repeat(64), 'j'.repeat(64), 'result');
  assert.match(long, /^r-[0-9a-f]{64}$/);
  assert.equal(long, bundleIdFor('v'.repeat(64), 'j'.repeat(64), 'result'));
});

test('remote jobs - the registry\'s answer as a reason', () => {
  assert.equal(noHostReason('v1', { hosts: [], closest: [], totalHosts: 0 }), 'no render host is registered at v1');
  assert.equal(noHostReason('v1', { hosts: [], closest: [{ host: 'rs1', missing: ['needs blender, has no blender'] }], totalHosts: 1 }), 'no host at v1 can render it (closest: rs1: needs blender, has no blender)');
});

test('scheduler intake - one job per origin: concurrent and repeated submits, and after a restart', async () => {
  const book = new JobBook();
  let submits = 0;
  const handle = intakeRequests({
    book: () => book,
    submit: async (req, user, origin) => {
      submits += 1;
      await new Promise((r) => setTimeout(r, 5)); // the journal write
      const id = `job-${submits}`;
      const job = book.add(id, req.spec, prepareJob(req.spec), 1000, origin);
      assert.equal(job.user, user);
      return { jobId: id, frames: job.counts.total, tasks: job.prepared.taskCount };
    },
    cancel: () => Promise.reject(new Error('not here')),
  });
  const req = { v: PROTOCOL_MAJOR as 1, kind: 'submit' as const, originJob: 'j-1', spec: aJobSpec({ user: 'mallory' }) };
  const [a, b] = await Promise.all([handle(req, 'studio'), handle(req, 'studio')]);
  assert.equal(submits, 1);
  assert.equal(a.jobId, b.jobId);
  assert.deepEqual([a.existing, b.existing], [false, true]);
  assert.equal(book.jobs.get(a.jobId)?.user, 'peer:studio', 'the peer owns it, whatever the spec says');
  assert.equal((await handle(req, 'studio')).existing, true);
  assert.equal((await handle(req, 'other')).existing, false, 'another peer\'s j-1 is another job');
  await assert.rejects(handle({ ...req, originJob: 'j-2', spec: aJobSpec({ site: 'v2' }) }, 'studio'), /rendered here, not sent on to v2/);
  await assert.rejects(handle({ v: PROTOCOL_MAJOR, kind: 'cancel', originJob: 'j-9' }, 'studio'), /RB_UNKNOWN_JOB|no job here came from studio's job 'j-9'/);
  // a restarted scheduler rebuilds the index from the journal's submit records
  const replayed = new JobBook();
  applyRecord(replayed, { v: PROTOCOL_MAJOR, kind: 'submit', jobId: 'job-1', spec: req.spec, at: 1000, origin: { site: 'studio', job: 'j-1' } }, 1);
  assert.equal(replayed.origins.get('studio/j-1'), 'job-1');
  assert.deepEqual(replayed.summary(replayed.jobs.get('job-1')!).origin, { site: 'studio', job: 'j-1' });
});

test('bundle writer - files under their original paths from local files, and a signature over the manifest', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'rb-writer-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'frame.png'), 'pixels');
  const key = await loadSiteKey(join(dir, 'data'));
  const out = join(dir, 'b.rbb');
  const head = { kind: 'result' as const, bundleId: 'b-1', from: 'v1', to: 'studio', route: [], jobRef: { site: 'studio', job: 'j-1' }, job: { scene: '/proj/s.pov', frames: '1', output: { dir: '/proj/out' } }, outputs: ['/proj/out/f_0001.png'] };
  const m = await writeBundle({ head, files: [{ path: '/proj/out/f_0001.png', from: join(dir, 'frame.png') }], out, dataDir: join(dir, 'data'), sign: key });
  assert.deepEqual(m.files.map((f) => f.path), ['/proj/out/f_0001.png']);
  const read = await readBundle({ source: createReadStream(out), tempDir: dir, dataDir: '/srv/other' });
  assert.ok(read.signature && verifySiteSignature(key.publicKey, read.manifestBytes, read.signature));
  const other = await loadSiteKey(join(dir, 'other'));
  assert.equal(verifySiteSignature(other.publicKey, read.manifestBytes, read.signature), false);
  await assert.rejects(writeBundle({ head, files: [{ path: '/proj/out/f_0001.png', from: join(dir, 'frame.png') }, { path: '/proj/out/f_0001.png', from: join(dir, 'other.png') }], out: join(dir, 'c.rbb'), dataDir: join(dir, 'data') }), /given twice/);
});
