import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { rb, rbAsync, TestFarm, type ActorProcess } from '../helpers/farm.ts';

/**
 * `renderbus submit` of the shipped Open Job Description sample (tools/templates/openjd/
 * povray-chunks.yaml) on a real farm: a POV-Ray frame range in chunks, then a step that runs
 * after it; and templates the farm refuses, which queue nothing.
 */

const SAMPLE = join(import.meta.dirname, '../../tools/templates/openjd/povray-chunks.yaml');
const PNG = Buffer.from([0x89, 0x50, 0x4e, 0x47]);

let farm: TestFarm;
let scheduler: ActorProcess;
before(async () => {
  farm = await TestFarm.start();
  [, scheduler] = await Promise.all([farm.registry(), farm.scheduler(), farm.renderServer('box', 2)]);
});
after(() => farm.stop());

test('openjd submit - the sample renders every frame in chunks inside its scratch environment, and its second step runs after them', async () => {
  const out = join(farm.dir, 'orbit');
  const jobsDir = join(farm.dir, 'jobs');
  const r = await rbAsync(farm, 'submit', SAMPLE, '--param', `OutputDir=${out}`, '--param', 'Frames=1-4', '--param', 'ChunkSize=2',
    '--param', 'Width=32', '--param', 'Height=24', '--output', jobsDir, '--wait');
  assert.equal(r.code, 0, r.stderr);
  const ids = r.stdout.trim().split('\n');
  assert.equal(ids.length, 2, r.stdout);
  assert.match(r.stderr, new RegExp(`submitted template 'Orbit 1-4' to site ${farm.site} as 2 jobs:\\n  ${ids[0]} Render: 4 frames in 2 tasks\\n  ${ids[1]} Listing: 1 frame in 1 task, after ${ids[0]}\\n`));

  const render = await farm.job(ids[0]!);
  const listing = await farm.job(ids[1]!);
  assert.equal(render.state, 'done');
  assert.equal(listing.state, 'done');
  assert.equal(render.name, 'Orbit 1-4 / Render');
  assert.equal(render.spec.chunk, 2);
  assert.equal(render.spec.hold, true); // queued held, then released with the other
  assert.deepEqual(listing.spec.after, [ids[0]]);
  assert.ok(listing.startedAt! >= render.finishedAt!, `listing started at ${listing.startedAt}, render finished at ${render.finishedAt}`);
  // chunks of two consecutive frames, 1-2 and 3-4, side by side on the two slots (each task one loop over its range)
  assert.deepEqual(render.frames.map((f) => f.frame), [1, 2, 3, 4]);
  const frames = (await readdir(out)).filter((f) => f.endsWith('.png')).sort();
  assert.deepEqual(frames, [1, 2, 3, 4].map((f) => `orbit_000${f}.png`));
  for (const f of frames) assert.deepEqual((await readFile(join(out, f))).subarray(0, 4), PNG, f);
  // the listing ran once every frame was there: it lists all four
  assert.deepEqual((await readFile(join(out, 'frames.txt'), 'utf8')).trim().split('\n'), frames);
  // the embedded script was written where the render host read it: beside the jobs' output
  assert.equal(existsSync(join(jobsDir, `openjd-${ids[0]}`, 'step-1', 'render.sh')), true);
});

test('openjd submit - a template the farm cannot run is refused by field, and nothing is queued or written', async () => {
  const dir = join(farm.dir, 'bad');
  await mkdir(dir, { recursive: true });
  const before = (await farm.jobs()).length;
  const file = join(dir, 'two-layers.yaml');
  await writeFile(file, `specificationVersion: jobtemplate-2023-09
name: Layers
steps:
- name: A
  script:
    embeddedFiles: [{ name: Run, type: TEXT, data: 'echo hi' }]
    actions: { onRun: { command: sh, args: ['{{Task.File.Run}}'] } }
- name: B
  dependencies: [{ dependsOn: A }]
  parameterSpace:
    taskParameterDefinitions:
    - { name: Frame, type: INT, range: '1-3' }
    - { name: Layer, type: STRING, range: [beauty, shadow] }
  script:
    actions: { onRun: { command: comp, args: ['{{Task.Param.Layer}}', '{{Task.Param.Frame}}'] } }
`);
  const r = rb(farm, 'submit', file, '--output', join(dir, 'jobs'));
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /renderbus submit: template .*two-layers\.yaml: steps\[1\]\.parameterSpace\.taskParameterDefinitions\[1\]\.range: renderbus maps one task parameter to frames \(here 'Frame'\); 'Layer' takes 2 values too/);
  assert.equal(existsSync(join(dir, 'jobs')), false); // no embedded file written

  // flags the template says itself
  const flags = rb(farm, 'submit', SAMPLE, '--frames', '1-3', '--chunk', '2');
  assert.equal(flags.code, 2);
  assert.match(flags.stderr, /--frames: not for a template: the frames are the steps' task parameters .*\n {2}--chunk: not for a template: chunks are a CHUNK\[INT\] task parameter's chunks\.defaultTaskCount/);
  assert.equal((await farm.jobs()).length, before);
});

test('openjd submit - all or none: a step the scheduler refuses cancels the held jobs queued before it', async () => {
  // a scheduler that holds at most 7 of a user's frames: the 7-frame render fits, its listing step does not
  await scheduler.kill('SIGTERM');
  scheduler = await farm.scheduler(['--max-user-frames', '7']);
  const out = join(farm.dir, 'refused');
  const jobsDir = join(farm.dir, 'refused-jobs');
  const r = rb(farm, 'submit', SAMPLE, '--param', `OutputDir=${out}`, '--param', 'Frames=11-17', '--output', jobsDir);
  assert.equal(r.code, 1, r.stderr);
  assert.equal(r.stdout, '');
  const id = /^renderbus submit: step 'Listing': the scheduler refused the job: .*; the 1 job queued before it \((j[a-z0-9]+)\) was cancelled while held: nothing ran$/m.exec(r.stderr)?.[1];
  assert.ok(id, r.stderr);
  assert.match(r.stderr, /user op has 7 frames queued or running; 1 more would pass the limit of 7 frames per user/); // the scheduler's own reason
  const render = await farm.job(id);
  assert.equal(render.state, 'cancelled');
  assert.equal(render.name, 'Orbit 11-17 / Render');
  assert.equal(render.startedAt, undefined); // held from the start: no frame ran
  assert.equal(existsSync(out), false);
  assert.equal(existsSync(join(jobsDir, `openjd-${id}`)), false); // its embedded files removed
});
