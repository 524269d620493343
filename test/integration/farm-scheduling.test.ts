import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { TestFarm, waitUntil } from '../helpers/farm.ts';

const sleepJob = (farm: TestFarm, scene: string, name: string, over: Record<string, unknown> = {}) => ({
  name,
  scene,
  renderer: 'command' as const,
  command: 'sleep 0.3',
  frames: '1-2',
  output: { dir: join(farm.dir, name) },
  ...over,
});

test('farm - three jobs at different priorities on 2 slots start in priority order', async (t) => {
  const farm = await TestFarm.start();
  t.after(() => farm.stop());
  await farm.registry();
  await farm.scheduler();
  await farm.renderServer('node-a', 2);
  const scene = await farm.writeScene();
  // a blocker holds both slots while the three jobs are queued
  const blocker = await farm.submit(sleepJob(farm, scene, 'blocker', { command: 'sleep 1.5' }));
  await waitUntil('the blocker to run', async () => (await farm.job(blocker)).counts.running === 2);
  const low = await farm.submit(sleepJob(farm, scene, 'low', { priority: 90 }));
  const mid = await farm.submit(sleepJob(farm, scene, 'mid', { priority: 50 }));
  const high = await farm.submit(sleepJob(farm, scene, 'high', { priority: 10 }));
  const jobs = await Promise.all([high, mid, low].map((id) => farm.waitJob(id)));
  const started = jobs.map((j) => j.startedAt!);
  assert.ok(started[0]! < started[1]! && started[1]! < started[2]!, `started high ${started[0]}, mid ${started[1]}, low ${started[2]}`);
  // the high job took both slots at once: its frames ran side by side
  const highSlots = new Set(jobs[0]!.frames.map((f) => f.slot));
  assert.equal(highSlots.size, 2);
});

test('farm - a job needing a package no host has waits, with the reason, then runs when a host offering it joins', async (t) => {
  const farm = await TestFarm.start();
  t.after(() => farm.stop());
  await farm.registry();
  await farm.scheduler();
  await farm.renderServer('plain', 1);
  const scene = await farm.writeScene();
  const jobId = await farm.submit(sleepJob(farm, scene, 'needs-blender', { command: 'true', requirements: { packages: ['blender@4.*'] } }));
  const waiting = await waitUntil('the job to say why it waits', async () => (await farm.job(jobId)).waiting);
  assert.match(waiting, /no host matches.*blender@4\.\*/);
  assert.equal((await farm.job(jobId)).state, 'queued');
  await farm.renderServer('blendy', 1, ['--packages', 'blender@4.1.0,povray@3.7.0.10']);
  const job = await farm.waitJob(jobId);
  assert.ok(job.frames.every((f) => f.host === 'blendy'));
  assert.equal(job.waiting, undefined);
});

test('farm - two render servers share one job', async (t) => {
  const farm = await TestFarm.start();
  t.after(() => farm.stop());
  await farm.registry();
  await farm.scheduler();
  await Promise.all([farm.renderServer('left', 1), farm.renderServer('right', 1)]);
  const scene = await farm.writeScene();
  const jobId = await farm.submit(sleepJob(farm, scene, 'shared', { frames: '1-6', command: 'sleep 0.4' }));
  const job = await farm.waitJob(jobId);
  const perHost = new Map<string, number>();
  for (const f of job.frames) perHost.set(f.host!, (perHost.get(f.host!) ?? 0) + 1);
  assert.deepEqual([...perHost.keys()].sort(), ['left', 'right']);
  assert.ok(Math.min(...perHost.values()) >= 2, `frames per host: ${JSON.stringify([...perHost])}`);
});

test('farm - the registry is killed and restarted mid-job, rebuilds from the render servers, and the job completes', async (t) => {
  const farm = await TestFarm.start();
  t.after(() => farm.stop());
  const registry = await farm.registry();
  await farm.scheduler();
  await Promise.all([farm.renderServer('r1', 1), farm.renderServer('r2', 1)]);
  const scene = await farm.writeScene();
  const jobId = await farm.submit(sleepJob(farm, scene, 'through-restart', { frames: '1-12', command: 'sleep 0.3' }));
  await waitUntil('some frames to finish', async () => (await farm.job(jobId)).counts.done >= 2);
  await registry.kill('SIGKILL');
  await farm.registry();
  const rebuilt = await waitUntil('both hosts to re-register', async () => {
    const hosts = await farm.hosts();
    return hosts.length === 2 ? hosts : undefined;
  }, 20_000);
  assert.deepEqual(rebuilt.map((h) => h.host).sort(), ['r1', 'r2']);
  const job = await farm.waitJob(jobId, 'done', 60_000);
  assert.equal(job.counts.done, 12);
});
