import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { access, copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Subscription } from '@nats-io/transport-node';
import sharp from 'sharp';
import { call } from '../../actors/bus/index.ts';
import { codecs, FarmError, PROTOCOL_MAJOR, Role, subjects, type BundleManifest, type FrameEvent, type JobEvent, type JobSpec, type RemoteUpdate } from '../../protocol/index.ts';
import { writePovProject } from '../helpers/pov-project.ts';
import { readBundle, writeBundle, type BundleHead, type BundleSource } from '../../sites/bundles/index.ts';
import { dropFile, hotFolderDirs, type HotOutcome } from '../../sites/hotfolders/index.ts';
import type { Outsourcing } from '../../sites/outsource/index.ts';
import { rb, TestFarm, waitUntil, type ActorProcess } from '../helpers/farm.ts';

// Bundle paths may not lie under /tmp (a system directory for the path rules): the farm works in /var/tmp.
let farm: TestFarm;
let scheduler: ActorProcess;
let hooks: { posts: { event: string; jobId: string }[]; url: string; stop(): Promise<void> };
const jobEvents: JobEvent[] = [];
const frameEvents: FrameEvent[] = [];
const outcomes: (HotOutcome & { peer: string })[] = [];
const subs: Subscription[] = [];
let packed: Outsourcing['packer']['outcomes'];

before(async () => {
  farm = await TestFarm.start({ site: 'studio', peers: ['v1'], tmpBase: '/var/tmp' });
  scheduler = await farm.scheduler();
  hooks = await startHooks();
  const notifier = await farm.spawnActor('notifier', ['notifier', '--webhook-allow', '127.0.0.1']);
  await waitUntil('the notifier to start', () => notifier.output.includes('"msg":"notifier started"') || !notifier.running, 20_000);
  subs.push(sub(subjects.allJobEvents(farm.site), (d) => jobEvents.push(codecs.jobEvent.decode(d))));
  subs.push(sub(subjects.allFrameEvents(farm.site, 'done'), (d) => frameEvents.push(codecs.frameEvent.decode(d))));
  const { outsourcing } = await farm.studioIntake({ onOutcome: (peer, o) => outcomes.push({ peer, ...o }) });
  packed = outsourcing.packer.outcomes;
});

after(async () => {
  for (const s of subs) s.unsubscribe();
  await farm?.stop();
  await hooks?.stop();
});

function sub(subject: string, on: (data: Uint8Array) => void): Subscription {
  return farm.nc.subscribe(subject, {
    callback: (err, m) => {
      if (!err) on(m.data);
    },
  });
}

/** A webhook receiver: every post's event and job. */
async function startHooks(): Promise<typeof hooks> {
  const posts: { event: string; jobId: string }[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { event: string; job: { jobId: string } };
      posts.push({ event: body.event, jobId: body.job.jobId });
      res.writeHead(204).end();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    posts,
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}/hook`,
    stop: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

const sha256 = async (path: string) => {
  const h = createHash('sha256');
  for await (const c of createReadStream(path)) h.update(c as Buffer);
  return h.digest('hex');
};
const exists = (p: string) => access(p).then(() => true, () => false);
const dirs = () => hotFolderDirs(farm.dataDir, 'v1');

/** The job bundle the packer wrote for a job, once it is in outgoing/v1/. */
async function jobBundle(jobId: string): Promise<{ file: string; manifest: BundleManifest; blobs: Map<string, string> }> {
  const file = join(dirs().outgoing, `job-${jobId}.rbb`);
  await waitUntil(`the bundle of ${jobId} in outgoing/v1`, () => exists(file), 20_000);
  const tempDir = join(farm.dir, 'read');
  await mkdir(tempDir, { recursive: true });
  const read = await readBundle({ source: createReadStream(file), tempDir, dataDir: join(farm.dir, 'vendor-data') });
  return { file, manifest: read.manifest, blobs: read.blobs };
}

/**
 * Acts as vendor v1 by hand: writes a bundle from v1 about a studio job (files read from where
 * they are now), then drops it into incoming/v1 the way an operator would, and waits for the
 * intake's outcome of it.
 */
async function asVendor(head: Omit<BundleHead, 'from' | 'to' | 'route'>, files: BundleSource[], o: { keep?: string; before?: () => Promise<void> } = {}): Promise<HotOutcome> {
  const staging = join(farm.dir, 'vendor-out');
  await mkdir(staging, { recursive: true });
  const out = join(staging, `${head.bundleId}.rbb`);
  await rm(out, { force: true });
  await writeBundle({ head: { ...head, from: 'v1', to: 'studio', route: ['v1'] }, files, out, dataDir: join(farm.dir, 'vendor-data') });
  await o.before?.();
  return drop(out);
}

/** Drops a bundle file into incoming/v1 and waits for the intake's outcome of it. */
async function drop(file: string): Promise<HotOutcome> {
  const name = file.split('/').pop()!;
  const seen = outcomes.length;
  await dropFile(dirs().incoming, name, file);
  return waitUntil(`the intake's outcome of ${name}`, () => outcomes.slice(seen).find((x) => x.name === name && x.to !== 'retry'), 30_000);
}

const status = (jobId: string, bundleId: string, state: 'accepted' | 'started' | 'done', frames?: { total: number; done: number; failed: number; running: number }): Omit<BundleHead, 'from' | 'to' | 'route'> => ({
  kind: 'status', bundleId, jobRef: { site: 'studio', job: jobId }, status: { state, at: Date.now(), remoteJob: `v1-${jobId}`, ...(frames ? { frames } : {}) },
});

/** A POV-Ray scene that #includes a file and maps a PNG texture, with both as support files. */
const povrayProject = () => writePovProject(farm.dir);

/** Renders one frame as the vendor's render server would, with POV-Ray, to `out`. */
function renderFrame(scene: string, frame: number, out: string): void {
  const dir = scene.slice(0, scene.lastIndexOf('/'));
  const r = spawnSync('povray', [`+I${scene}`, `+L${dir}`, `+O${out}`, '+FN', '-D', '-GA', '+W64', '+H48', `+K${frame}`], { cwd: dir, encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
}

async function submit(spec: JobSpec): Promise<string> {
  return farm.submit(spec);
}

test('fed-outsource - a job naming a site that is not a linked peer is refused at submit, naming the peers', async () => {
  const scene = await farm.writeScene('nowhere.pov');
  await assert.rejects(
    submit({ name: 'nowhere', scene, frames: '1', output: { dir: join(farm.dir, 'out-nowhere') }, site: 'nowhere' }),
    (err: FarmError) => err.code === 'RB_BAD_JOB' && /site: 'nowhere' is not a linked peer of studio: the linked peers are v1/.test(err.message),
  );
  // the same from the command line (`--outsource`: `--site` names the farm itself)
  const cli = rb(farm, 'submit', scene, '--frames', '1', '--output', join(farm.dir, 'out-nowhere'), '--outsource', 'nowhere');
  assert.notEqual(cli.code, 0);
  assert.match(cli.stderr, /the scheduler refused the job: site: 'nowhere' is not a linked peer of studio: the linked peers are v1/);
  assert.equal((await farm.jobs()).length, 0);
});

test('fed-outsource - a POV-Ray job goes to v1 with its files, and its frames, logs and end come back as if rendered here', async () => {
  const { scene, inc, tex } = await povrayProject();
  const outDir = join(farm.dir, 'out-shot');
  const jobId = await submit({ name: 'shot', scene, renderer: 'povray', frames: '1-3', resolution: '64x48', supportFiles: [inc, tex], output: { dir: outDir }, site: 'v1', notify: [hooks.url] });

  // the job bundle: scene, include and texture with their sha256; the job without what only means something here
  const { manifest } = await jobBundle(jobId);
  assert.equal(manifest.kind, 'job');
  assert.deepEqual(manifest.jobRef, { site: 'studio', job: jobId });
  assert.equal(manifest.from, 'studio');
  assert.equal(manifest.to, 'v1');
  assert.deepEqual(manifest.files.map((f) => f.path).sort(), [inc, scene, tex].sort());
  for (const f of manifest.files) assert.equal(f.sha256, await sha256(f.path), f.path);
  assert.equal(manifest.job?.site, undefined);
  assert.equal(manifest.job?.notify, undefined);
  assert.equal(manifest.job?.output?.dir, outDir);
  assert.ok(jobEvents.some((e) => e.jobId === jobId && e.event === 'outsourced'));

  // it shows outsourced, in `renderbus job` and `jobs`
  const shown = rb(farm, 'job', jobId);
  assert.equal(shown.code, 0, shown.stderr);
  assert.match(shown.stdout, /outsourced/);
  assert.match(shown.stdout, /outsourced to v1: 0\/3 frames back/);
  assert.match(rb(farm, 'jobs').stdout, /outsourced to v1: 0\/3 frames back/);

  // v1 accepts it and starts
  assert.equal((await asVendor(status(jobId, `s1-${jobId}`, 'accepted'), [])).to, 'processed');
  assert.equal((await asVendor(status(jobId, `s2-${jobId}`, 'started', { total: 3, done: 0, failed: 0, running: 2 }), [])).to, 'processed');
  let job = await farm.job(jobId);
  assert.equal(job.state, 'outsourced');
  assert.equal(job.outsourced?.state, 'started');
  assert.equal(job.outsourced?.remoteJob, `v1-${jobId}`);
  assert.ok(jobEvents.some((e) => e.jobId === jobId && e.event === 'started'));
  assert.match(rb(farm, 'why', jobId).stdout, /outsourced to v1: 0\/3 frames back, 2 rendering \(rendering there\)/);

  // v1 renders (really, with POV-Ray) where the job's frames go, and sends frame 1 back with its log
  const rendered = join(farm.dir, 'v1-render');
  await mkdir(rendered, { recursive: true });
  await mkdir(outDir, { recursive: true });
  const framePath = (n: number) => join(outDir, `frame_000${n}.png`);
  for (const n of [1, 2, 3]) {
    renderFrame(scene, n, framePath(n));
    await copyFile(framePath(n), join(rendered, `frame_000${n}.png`));
  }
  // an early look: v1's thumbnail of sample frame 2 comes ahead of the frame, in a status bundle
  const samplesDir = join(outDir, '.rb-samples');
  const samplePath = join(samplesDir, 'frame_0002.png.png');
  const thumbs = join(farm.dir, 'v1-samples');
  await mkdir(thumbs, { recursive: true });
  await copyFile(join(rendered, 'frame_0002.png'), join(thumbs, 'frame_0002.png.png'));
  const sample = (bundleId: string, path: string) => asVendor({ ...status(jobId, bundleId, 'started'), status: { state: 'progress', at: Date.now() } }, [{ path, from: join(thumbs, 'frame_0002.png.png') }]);
  // a thumbnail named after no frame of the job is refused, nothing written
  const stray = await sample(`sx-${jobId}`, join(samplesDir, 'frame_0009.png.png'));
  assert.equal(stray.to, 'failed');
  assert.match(stray.error?.message ?? '', /is not the sample of any frame of job/);
  assert.equal(await exists(samplesDir), false);
  assert.equal((await sample(`s3-${jobId}`, samplePath)).to, 'processed');
  assert.deepEqual(await readFile(samplePath), await readFile(join(rendered, 'frame_0002.png')));
  assert.deepEqual((await farm.job(jobId)).outsourced?.samples, [{ frame: 2, path: samplePath }]);
  assert.match(rb(farm, 'job', jobId).stdout, new RegExp(`samples +frame 2: ${samplePath.replace(/[.]/g, '\\.')}`));
  const logFile = join(farm.dir, 'v1-logs', 'task-1.log');
  await mkdir(join(farm.dir, 'v1-logs'), { recursive: true });
  await writeFile(logFile, 'POV-Ray rendered frame 1 at v1\n');
  const clearOut = () => rm(outDir, { recursive: true, force: true }); // only what the bundles bring may be there
  const partial = await asVendor({ kind: 'partial-result', bundleId: `p1-${jobId}`, jobRef: { site: 'studio', job: jobId }, job: manifest.job!, outputs: [framePath(1)], logs: [logFile] }, [framePath(1), logFile], { before: clearOut });
  assert.equal(partial.to, 'processed', partial.error?.message);
  assert.deepEqual(await readFile(framePath(1)), await readFile(join(rendered, 'frame_0001.png')));
  assert.equal(await readFile(join(outDir, '.rb-logs', 'remote-v1', 'task-1.log'), 'utf8'), 'POV-Ray rendered frame 1 at v1\n');
  assert.equal(await exists(framePath(2)), false);
  job = await farm.job(jobId);
  assert.equal(job.state, 'outsourced');
  assert.equal(job.counts.done, 1);
  assert.equal(job.frames.find((f) => f.frame === 1)?.output, framePath(1));
  assert.match(rb(farm, 'jobs').stdout, /outsourced to v1: 1\/3 frames back/);
  assert.match(rb(farm, 'job', jobId).stdout, new RegExp(`outsourced to v1: progress there as v1-${jobId}, 1/3 frames back; bundle job-${jobId}`));
  assert.ok(frameEvents.some((e) => e.jobId === jobId && e.frame === 1 && e.output === framePath(1)));

  // the result: every frame; the job is done, the done event and the webhook go out
  for (const n of [1, 2, 3]) await copyFile(join(rendered, `frame_000${n}.png`), framePath(n));
  const resultFiles = [1, 2, 3].map(framePath);
  const staged = join(farm.dir, 'vendor-out', `r-${jobId}.rbb`);
  const result = await asVendor({ kind: 'result', bundleId: `r-${jobId}`, jobRef: { site: 'studio', job: jobId }, job: manifest.job!, outputs: resultFiles }, resultFiles, { before: clearOut });
  assert.equal(result.to, 'processed', result.error?.message);
  for (const n of [1, 2, 3]) assert.deepEqual(await readFile(framePath(n)), await readFile(join(rendered, `frame_000${n}.png`)), `frame ${n}`);
  job = await farm.waitJob(jobId, 'done', 10_000);
  assert.deepEqual(job.counts, { total: 3, queued: 0, running: 0, done: 3, failed: 0 });
  assert.ok(jobEvents.some((e) => e.jobId === jobId && e.event === 'done'));
  await waitUntil('the webhook to be told the job is done', () => hooks.posts.some((p) => p.jobId === jobId && p.event === 'done'), 20_000);
  assert.deepEqual(await readdir(outDir).then((l) => l.filter((n) => n.includes('.part'))), [], 'no .part left');

  // the bill: kept under fed/bills/v1 with its signature state, summarised with the job
  const lines = [1, 2, 3].map((frame) => ({ frame, host: 'v1-node-1', wallMs: 700, cpuMs: 650, bytes: 2_000 }));
  const bill = { currency: 'EUR', rate: { perCoreHourMinor: 120, perGbMinor: 0, minimumMinor: 0 }, frames: lines, totals: { frames: 3, wallMs: 2_100, cpuMs: 1_950, bytes: 6_000, amountMinor: 7 } };
  const eventsBeforeBill = jobEvents.filter((e) => e.jobId === jobId).length;
  assert.equal((await asVendor({ kind: 'bill', bundleId: `bill-${jobId}`, jobRef: { site: 'studio', job: jobId }, bill }, [])).to, 'processed');
  await farm.job(jobId);
  assert.equal(jobEvents.filter((e) => e.jobId === jobId).length, eventsBeforeBill, 'a bill after the end is no job event (no progress of a done job)');
  const kept = JSON.parse(await readFile(join(farm.dataDir, 'fed', 'bills', 'v1', `${jobId}.bill-${jobId}.json`), 'utf8')) as { signed: boolean; bill: unknown };
  assert.equal(kept.signed, false, 'dropped by hand: no manifest.sig');
  assert.deepEqual(kept.bill, bill);
  job = await farm.job(jobId);
  assert.equal(job.state, 'done');
  assert.deepEqual({ ...job.outsourced?.bill, file: undefined }, { currency: 'EUR', amountMinor: 7, frames: 3, wallMs: 2_100, cpuMs: 1_950, signed: false, file: undefined });
  assert.match(rb(farm, 'job', jobId).stdout, /bill +0\.07 EUR for 3 frames .*NOT signed/);

  // the same result again (dropped by hand a second time): a no-op
  const mtimes = await Promise.all(resultFiles.map((p) => stat(p).then((s) => s.mtimeMs)));
  const events = jobEvents.filter((e) => e.jobId === jobId).length;
  const frameDone = frameEvents.filter((e) => e.jobId === jobId).length;
  assert.equal((await drop(staged)).to, 'processed');
  await farm.job(jobId); // a round trip through the scheduler after the intake's update was answered
  assert.deepEqual(await Promise.all(resultFiles.map((p) => stat(p).then((s) => s.mtimeMs))), mtimes, 'nothing written again');
  assert.equal(jobEvents.filter((e) => e.jobId === jobId).length, events, 'no new job event');
  assert.equal(frameEvents.filter((e) => e.jobId === jobId).length, frameDone, 'no new frame event');
  assert.equal((await farm.job(jobId)).state, 'done');
});

/** A small command-renderer job sent to v1: its bundle is written, and its spec as v1 got it. */
async function outsourcedJob(name: string, frames = '1-2'): Promise<{ jobId: string; outDir: string; spec: JobSpec }> {
  const scene = await farm.writeScene(`${name}.pov`);
  const outDir = join(farm.dir, `out-${name}`);
  const jobId = await submit({ name, scene, renderer: 'command', command: 'sh -c "echo {frame} > {output}"', frames, output: { dir: outDir, pattern: 'f_####.txt' }, site: 'v1' });
  const { manifest } = await jobBundle(jobId);
  return { jobId, outDir, spec: manifest.job! };
}

test('fed-outsource - a result naming a path outside the job\'s output folder is refused: failed/ with the reason, nothing written', async () => {
  const { jobId, outDir, spec } = await outsourcedJob('escape');
  // the bundle claims another output folder, so it passes the bundle's own rules: only the scheduler's word counts
  const evil = join(farm.dir, 'evil');
  await mkdir(evil, { recursive: true });
  const target = join(evil, 'f_0001.txt');
  await writeFile(target, 'not a frame\n');
  const out = await asVendor({ kind: 'result', bundleId: `evil-${jobId}`, jobRef: { site: 'studio', job: jobId }, job: { ...spec, output: { dir: evil, pattern: 'f_####.txt' } }, outputs: [target] }, [target], {
    before: () => rm(evil, { recursive: true, force: true }),
  });
  assert.equal(out.to, 'failed');
  const reason = await readFile(`${out.path}.reason.txt`, 'utf8');
  assert.match(reason.split('\n')[0]!, new RegExp(`^RB_FORBIDDEN: bundle evil-${jobId}: outputs\\[0\\] ".*/evil/f_0001.txt" lies outside job ${jobId}'s output folder ${outDir}: nothing of it was written$`));
  assert.equal(await exists(evil), false, 'nothing written where the bundle said');
  assert.equal(await exists(outDir), false);
  const job = await farm.job(jobId);
  assert.equal(job.state, 'outsourced');
  assert.equal(job.counts.done, 0);

  // and a file inside the folder that is no frame of the job is refused the same way
  await mkdir(outDir, { recursive: true });
  const stray = join(outDir, 'notes.txt');
  await writeFile(stray, 'x\n');
  const out2 = await asVendor({ kind: 'result', bundleId: `stray-${jobId}`, jobRef: { site: 'studio', job: jobId }, job: spec, outputs: [stray] }, [stray], { before: () => rm(outDir, { recursive: true, force: true }) });
  assert.equal(out2.to, 'failed');
  assert.match(await readFile(`${out2.path}.reason.txt`, 'utf8'), /is not the file of any frame of job/);
  assert.equal(await exists(outDir), false);
});

test('fed-outsource - cancel at the studio drops a cancel bundle for v1 and the job is cancelled', async () => {
  const { jobId } = await outsourcedJob('cancel-me');
  const c = rb(farm, 'cancel', jobId);
  assert.equal(c.code, 0, c.stderr);
  const file = join(dirs().outgoing, `cancel-${jobId}.rbb`);
  await waitUntil('the cancel bundle in outgoing/v1', () => exists(file), 20_000);
  const read = await readBundle({ source: createReadStream(file), tempDir: join(farm.dir, 'read'), dataDir: join(farm.dir, 'vendor-data') });
  assert.equal(read.manifest.kind, 'status');
  assert.equal(read.manifest.status?.state, 'cancel');
  assert.deepEqual(read.manifest.jobRef, { site: 'studio', job: jobId });
  assert.equal((await farm.job(jobId)).state, 'cancelled');
});

test('fed-outsource - only the intake reports news of an outsourced job, and only for the peer it went to', async () => {
  const { jobId, outDir } = await outsourcedJob('spoof');
  const update: RemoteUpdate = { v: PROTOCOL_MAJOR, jobId, bundleId: `spoof-${jobId}`, state: 'failed', outputs: [{ frame: 1, path: join(outDir, 'f_0001.txt') }], at: Date.now() };
  // the intake, as if a bundle about it had come through v2's folder
  const intake = await farm.connectAs(Role.Intake, 'intake-2');
  await assert.rejects(
    call(intake, subjects.schedRemote(farm.site, 'v2'), codecs.remoteUpdate, update, codecs.remoteUpdateReply),
    (err: FarmError) => err.code === 'RB_FORBIDDEN' && err.message === `job ${jobId} was sent to v1, not to v2: v2 cannot report on it`,
  );
  // an operator (anyone but the intake) may not publish there at all
  await assert.rejects(
    call(farm.nc, subjects.schedRemote(farm.site, 'v1'), codecs.remoteUpdate, update, codecs.remoteUpdateReply, { timeoutMs: 2_000 }),
    (err: FarmError) => err.code === 'RB_FORBIDDEN' && /the NATS server refused rb\.studio\.sched\.remote\.v1/.test(err.message),
  );
  const job = await farm.job(jobId);
  assert.equal(job.state, 'outsourced');
  assert.equal(job.outsourced?.state, 'sent');
});

test('fed-outsource - a job whose bundle cannot be written fails at once, saying why; nothing is left in outgoing/', async (t) => {
  const scene = await farm.writeScene('unsendable.pov');
  // a support file under /tmp: the bundle rules refuse it (the vendor's sandbox has a /tmp of its own)
  const tmp = await mkdtemp(join(tmpdir(), 'rb-unsendable-'));
  t.after(() => rm(tmp, { recursive: true, force: true }));
  const inc = join(tmp, 'parts.inc');
  await writeFile(inc, '// nothing\n');
  const jobId = await submit({ name: 'unsendable', scene, renderer: 'command', command: 'true', frames: '1', supportFiles: [inc], output: { dir: join(farm.dir, 'out-unsendable') }, site: 'v1' });
  const job = await farm.waitJob(jobId, 'failed', 20_000);
  assert.equal(job.error, `RB_REMOTE_FAILED: outsourced to v1, failed: never sent: its bundle could not be written at studio (RB_BAD_BUNDLE: files[1] "${inc}" lies under the system directory /tmp)`);
  assert.deepEqual((await readdir(dirs().outgoing)).filter((n) => n.includes(jobId)), []);
});

test('fed-outsource - a held job naming a site goes out when released, not before', async () => {
  const scene = await farm.writeScene('held.pov');
  const jobId = await submit({ name: 'held', scene, renderer: 'command', command: 'true', frames: '1', output: { dir: join(farm.dir, 'out-held') }, site: 'v1', hold: true });
  assert.equal((await farm.job(jobId)).state, 'held');
  // proof that the packer has read past the held job's events: a later job's bundle is written
  await outsourcedJob('after-held');
  assert.equal(await exists(join(dirs().outgoing, `job-${jobId}.rbb`)), false, 'a held job is not sent');
  const r = rb(farm, 'release', jobId);
  assert.equal(r.code, 0, r.stderr);
  const { manifest } = await jobBundle(jobId);
  assert.equal(manifest.job?.hold, undefined, 'the vendor gets it without the hold');
  assert.equal((await farm.job(jobId)).state, 'outsourced');
});

test('fed-outsource - pause of an outsourced job is refused: only cancel reaches the vendor', async () => {
  const { jobId } = await outsourcedJob('no-pause');
  const p = rb(farm, 'pause', jobId);
  assert.notEqual(p.code, 0);
  assert.match(p.stderr + p.stdout, /it was sent to v1, which renders it: only cancel reaches it there/);
});

test('fed-outsource - a scheduler restarted while a job is outsourced still has it outsourced, and the result completes it', async () => {
  const { jobId, outDir, spec } = await outsourcedJob('restart', '1-2');
  await asVendor(status(jobId, `s1-${jobId}`, 'started'), []);
  await mkdir(outDir, { recursive: true });
  const f1 = join(outDir, 'f_0001.txt');
  await writeFile(f1, '1\n');
  assert.equal((await asVendor({ kind: 'partial-result', bundleId: `p1-${jobId}`, jobRef: { site: 'studio', job: jobId }, job: spec, outputs: [f1] }, [f1], { before: () => rm(f1) })).to, 'processed');

  // and one nothing was heard of yet: the restarted scheduler tells the packer again, which writes nothing twice
  const quiet = await outsourcedJob('quiet', '1');
  const quietBundle = join(dirs().outgoing, `job-${quiet.jobId}.rbb`);
  const quietWritten = await stat(quietBundle);
  const told = packed.filter((x) => x.jobId === quiet.jobId).length;

  await scheduler.kill('SIGKILL');
  scheduler = await farm.scheduler();
  await waitUntil('the packer to be told of the quiet job again', () => packed.filter((x) => x.jobId === quiet.jobId).length > told, 20_000);
  assert.deepEqual(packed.filter((x) => x.jobId === quiet.jobId).map((x) => x.did), ['wrote', 'had']);
  const quietNow = await stat(quietBundle);
  assert.equal(quietNow.ino, quietWritten.ino, 'the same bundle file');
  assert.equal(quietNow.mtimeMs, quietWritten.mtimeMs);
  assert.equal((await farm.job(quiet.jobId)).state, 'outsourced');
  let job = await farm.job(jobId);
  assert.equal(job.state, 'outsourced');
  assert.equal(job.outsourced?.site, 'v1');
  assert.equal(job.outsourced?.state, 'started');
  assert.equal(job.counts.done, 1);
  assert.deepEqual(await readdir(dirs().outgoing).then((l) => l.filter((n) => n === `job-${jobId}.rbb`)), [`job-${jobId}.rbb`], 'its bundle written once');

  const files = [1, 2].map((n) => join(outDir, `f_000${n}.txt`));
  await writeFile(files[1]!, '2\n');
  const r = await asVendor({ kind: 'result', bundleId: `r-${jobId}`, jobRef: { site: 'studio', job: jobId }, job: spec, outputs: files }, files, { before: () => rm(files[1]!) });
  assert.equal(r.to, 'processed', r.error?.message);
  job = await farm.waitJob(jobId, 'done', 10_000);
  assert.equal(await readFile(files[1]!, 'utf8'), '2\n');
});
