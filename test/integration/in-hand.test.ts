import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FrameRecord, JobDetail } from '../../protocol/index.ts';
import { rb, TestFarm, waitUntil } from '../helpers/farm.ts';

/**
 * A job whose frames each note that they started, then wait for a gate file of their own: the
 * test decides when each frame ends, and can tell which frames ever started.
 */
async function gatedJob(farm: TestFarm, frames: string) {
  const started = join(farm.dir, 'started');
  const gate = (frame: number) => writeFile(join(farm.dir, `gate.${frame}`), '');
  const command = `sh -c 'echo {frame} >> ${started}; while [ ! -e ${farm.dir}/gate.{frame} ]; do sleep 0.05; done; echo frame {frame} > {output}'`;
  const spec = { name: 'gated', scene: await farm.writeScene(), renderer: 'command' as const, command, frames, output: { dir: join(farm.dir, 'out'), pattern: 'f_####.txt' } };
  const startedFrames = async () => (await readFile(started, 'utf8').catch(() => '')).split('\n').filter((l) => l !== '').map(Number);
  return { spec, gate, startedFrames };
}

const frameOf = (job: JobDetail, n: number): FrameRecord => job.frames.find((f) => f.frame === n)!;

test('in hand - a slot\'s task in hand is counted apart from running and timed from its real start; pausing hands it back unstarted, resuming renders it', async (t) => {
  const farm = await TestFarm.start();
  t.after(() => farm.stop());
  await farm.registry();
  await farm.scheduler();
  await farm.renderServer('solo', 1);
  const { spec, gate, startedFrames } = await gatedJob(farm, '1-5');
  const jobId = await farm.submit(spec);

  // frame 1 ends: the slot starts frame 2 at once and is handed frame 3 to hold
  await waitUntil('frame 1 to start', async () => (await startedFrames()).includes(1));
  await gate(1);
  let job = await waitUntil('frame 2 running and frame 3 in hand', async () => {
    const j = await farm.job(jobId);
    return frameOf(j, 2).startedAt !== undefined && frameOf(j, 3).inHand === true ? j : undefined;
  });
  assert.deepEqual(job.counts, { total: 5, queued: 2, running: 1, done: 1, failed: 0, inHand: 1 });
  assert.equal(frameOf(job, 3).state, 'running');
  assert.equal(frameOf(job, 3).startedAt, undefined, 'a task in hand has not started');
  assert.ok(frameOf(job, 3).handedAt !== undefined);
  const shown = rb(farm, 'job', jobId);
  assert.equal(shown.code, 0, shown.stderr);
  assert.match(shown.stdout, /1 running, 1 in hand/);
  assert.match(shown.stdout, /\n\s*3\s+in hand/);

  // frame 3 is timed from when the slot started it (after frame 2 ended), not from its hand-out
  const frame2Released = Date.now();
  await gate(2);
  job = await waitUntil('frame 3 to start, frame 4 in hand', async () => {
    const j = await farm.job(jobId);
    return frameOf(j, 3).startedAt !== undefined && frameOf(j, 4).inHand === true ? j : undefined;
  });
  const f3 = frameOf(job, 3);
  assert.ok(f3.handedAt! < frame2Released, 'frame 3 was handed out before frame 2 was let go');
  assert.ok(f3.startedAt! >= frame2Released - 20, `frame 3 started at ${f3.startedAt}, before frame 2 was let go at ${frame2Released}`);

  // paused: frame 4, in hand, goes back to the queue unstarted; frame 3 renders on
  const paused = rb(farm, 'pause', jobId);
  assert.equal(paused.code, 0, paused.stderr);
  job = await waitUntil('frame 4 handed back', async () => {
    const j = await farm.job(jobId);
    return frameOf(j, 4).state === 'queued' ? j : undefined;
  });
  assert.deepEqual(job.counts, { total: 5, queued: 2, running: 1, done: 2, failed: 0 });
  await gate(3);
  await gate(4); // were frame 4 or 5 to start, nothing would hold them
  await gate(5);
  await waitUntil('frame 3 done and the slot idle', async () => {
    const j = await farm.job(jobId);
    const slot = (await farm.hosts()).find((h) => h.host === 'solo')?.slots[0];
    return frameOf(j, 3).state === 'done' && slot?.state === 'idle';
  });
  job = await farm.job(jobId);
  assert.equal(job.state, 'paused');
  assert.equal(frameOf(job, 4).state, 'queued');
  assert.deepEqual(await startedFrames(), [1, 2, 3], 'frame 4 never started while the job was paused, nor did 5');

  const resumed = rb(farm, 'resume', jobId);
  assert.equal(resumed.code, 0, resumed.stderr);
  job = await farm.waitJob(jobId, 'done', 30_000);
  assert.deepEqual((await startedFrames()).sort(), [1, 2, 3, 4, 5]);
  assert.equal(frameOf(job, 4).attempt, 2, 'handed out again after the hand-back');
  assert.equal(frameOf(job, 4).attempts, undefined, 'a hand-back is no failed attempt');
});
