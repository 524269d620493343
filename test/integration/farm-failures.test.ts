import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { rb, TestFarm, TINY_SCENE, waitUntil } from '../helpers/farm.ts';

/** A scene POV-Ray cannot parse: every host fails it the same way. */
const BROKEN_SCENE = `${TINY_SCENE}\nsphere { <0, 1, 0>, 0.5 pigment { color rgb <1, 1, 1> }\n`;

/** A farm of two render hosts, 'a' and 'b', one slot each: a fault of the job shows on both. */
async function twoHostFarm(t: TestContext): Promise<TestFarm> {
  const farm = await TestFarm.start();
  t.after(() => farm.stop());
  await farm.registry();
  await farm.scheduler();
  await farm.renderServer('a', 1);
  await farm.renderServer('b', 1);
  return farm;
}

test('failures - a broken scene on a 2-host farm fails the job with POV-Ray\'s own error; submit --wait exits 1 printing it; retry after the fix renders it', async (t) => {
  const farm = await twoHostFarm(t);
  const scene = await farm.writeScene('broken.pov', BROKEN_SCENE);
  const out = join(farm.dir, 'out');
  const sub = rb(farm, 'submit', scene, '--frames', '1-6', '--resolution', '32x24', '--output', out, '--wait');
  assert.equal(sub.code, 1, `${sub.stdout}\n${sub.stderr}`);
  const jobId = sub.stdout.trim();
  assert.match(sub.stderr, /failed: job \S+, 0 of 6 frames done/);
  assert.match(sub.stderr, /RB_JOB_FAILED: .*Parse Error/, 'the renderer\'s own error line');
  assert.match(sub.stderr, new RegExp(`renderbus retry ${jobId}`));
  const job = await farm.job(jobId);
  assert.equal(job.state, 'failed');
  assert.ok(job.counts.failed <= 2, `it stopped after the first failures, not after every frame failed 3 times (${JSON.stringify(job.counts)})`);
  assert.match(job.error ?? '', /^RB_JOB_FAILED: /);

  const why = rb(farm, 'why', jobId);
  assert.equal(why.code, 0, why.stderr);
  assert.match(why.stdout, /it failed: RB_JOB_FAILED: .*Parse Error/);

  await farm.writeScene('broken.pov', TINY_SCENE); // fixed
  const retried = rb(farm, 'retry', jobId);
  assert.equal(retried.code, 0, retried.stderr);
  assert.match(retried.stdout, /\d+ frames? queued again; now rendering/);
  const done = await farm.waitJob(jobId, 'done', 60_000);
  assert.equal(done.counts.done, 6);
  assert.equal(done.error, undefined);
  const again = rb(farm, 'retry', jobId);
  assert.equal(again.code, 1, 'nothing left to retry');
  assert.match(again.stderr, /no frame failed and no host is kept away from it/);
});

test('failures - a command job whose program no host has waits naming the program and the hosts, uses no attempt; retry says it forgave them', async (t) => {
  const farm = await twoHostFarm(t);
  const scene = await farm.writeScene('in.txt', 'x');
  const jobId = await farm.submit({ name: 'nox', scene, renderer: 'command', command: '/nonexistent/x {frame}', frames: '1-3', maxAttempts: 1, output: { dir: join(farm.dir, 'nox') } });
  const text = await waitUntil('the reason', async () => {
    const r = rb(farm, 'why', jobId);
    return r.code === 0 && /program \/nonexistent\/x is missing on a, b/.test(r.stdout) ? r.stdout : undefined;
  }, 30_000, 500);
  assert.match(text, /why: its program \/nonexistent\/x is missing on a, b \(RB_RENDERER_MISSING: .*\): install it there/);
  assert.match(text, /^ {2}a lacks program \/nonexistent\/x$/m);
  const job = await farm.job(jobId);
  assert.equal(job.state, 'rendering');
  assert.deepEqual([job.counts.queued, job.counts.failed], [3, 0], 'no frame failed for it: it waits');
  assert.equal(job.retryable, true);

  const retried = rb(farm, 'retry', jobId);
  assert.equal(retried.code, 0, retried.stderr);
  assert.match(retried.stdout, /no frame queued again, 2 hosts forgiven \(a, b\); now rendering/);
  assert.equal(rb(farm, 'cancel', jobId).code, 0);
});
