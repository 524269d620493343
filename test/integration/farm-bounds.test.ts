import { test } from 'node:test';
import assert from 'node:assert/strict';
import { call } from '../../actors/bus/index.ts';
import { pageWholeJob } from '../../actors/scheduler/index.ts';
import { codecs, FarmError, MAX_PAYLOAD, PROTOCOL_MAJOR, Role, subjects, type JobSpec } from '../../protocol/index.ts';
import { rb, rbAs, TestFarm, waitUntil, type ActorProcess } from '../helpers/farm.ts';

/** A scheduler with these flags (TestFarm.scheduler() takes none), once it answers. */
async function schedulerWith(farm: TestFarm, flags: string[]): Promise<ActorProcess> {
  const p = await farm.spawnActor('scheduler', ['scheduler', ...flags]);
  await waitUntil('the scheduler to serve', () => farm.jobs().then(() => true), 20_000);
  return p;
}

const held = (farm: TestFarm, user: string, frames: string, over: Partial<JobSpec> = {}): JobSpec => ({
  name: `${user}-${frames}`, scene: `${farm.dir}/scene.pov`, frames, output: { dir: `${farm.dir}/out-${user}` }, user, group: 'fx', hold: true, ...over,
});

const refusal = async (p: Promise<unknown>): Promise<FarmError> => {
  try {
    await p;
  } catch (err) {
    if (err instanceof FarmError) return err;
    throw err;
  }
  throw new Error('the submit was taken');
};

test('bounds - a flood of million-frame submits is refused past the queue limits, and the farm stays up; a big job\'s view and thousands of jobs come whole through pages', async (t) => {
  const farm = await TestFarm.start();
  t.after(() => farm.stop());
  await farm.writeScene();
  const scheduler = await schedulerWith(farm, ['--max-site-frames', '2500000']);

  // each a million frames, a task per frame: the incident's submits
  const alice = await farm.submit(held(farm, 'alice', '1-1000000'));
  const again = await refusal(farm.submit(held(farm, 'alice', '1-1000000')));
  assert.equal(again.code, 'RB_QUEUE_FULL');
  assert.match(again.message, /user alice has 1,000,000 frames queued or running; 1,000,000 more would pass the limit of 1,000,000 frames per user/);
  await farm.submit(held(farm, 'bob', '1-1000000'));
  const site = await refusal(farm.submit(held(farm, 'carol', '1-1000000')));
  assert.equal(site.code, 'RB_QUEUE_FULL');
  assert.match(site.message, /the site has 2,000,000 frames queued or running; 1,000,000 more would pass its limit of 2,500,000 frames/);
  const tooBig = await refusal(farm.submit(held(farm, 'dave', '1-1000001')));
  assert.match(tooBig.message, /more than 1000000 frames/);
  // the refused ones cost nothing: still answering, nothing of them queued
  assert.ok(scheduler.running, `the scheduler is up\n${farm.logs()}`);
  const cli = rbAs(farm, await farm.credsFile(Role.Artist, 'alice'), 'submit', `${farm.dir}/scene.pov`, '--frames', '1-1000000', '--hold', '--user', 'alice');
  assert.notEqual(cli.code, 0, 'the CLI says it was refused');
  assert.match(cli.stderr, /RB_QUEUE_FULL|frames per user/);

  // a 60,000-frame job's view: pages that each fit one message, whole once joined
  const big = await farm.submit(held(farm, 'erin', '1-60000', { output: { dir: `${farm.dir}/${'long-output-dir-'.repeat(4)}` } }));
  const sizes: number[] = [];
  const whole = await pageWholeJob(async (req) => {
    const m = await farm.nc.request(subjects.schedQuery(farm.site), codecs.queryRequest.encode(req), { timeout: 5_000 });
    sizes.push(m.data.length);
    const r = codecs.jobReply.decode(m.data);
    if (!r.ok) throw FarmError.fromWire(r.error);
    return r.body;
  }, big);
  assert.ok(sizes.length > 1 && sizes.every((s) => s <= MAX_PAYLOAD), `pages of ${sizes.join(', ')} bytes`);
  assert.equal(whole.job.frames.length, 60_000);
  assert.deepEqual([whole.job.frames[0]!.frame, whole.job.frames.at(-1)!.frame], [1, 60_000]);

  // 5,000 jobs: `renderbus jobs` lists them all, page after page
  const ids = [alice, big];
  for (let u = 0; u < 50; u++) await farm.artist(`u${u}`); // their credentials first: submits are timed
  for (let i = 0; i < 4_998; i += 100) {
    ids.push(...(await Promise.all(Array.from({ length: Math.min(100, 4_998 - i) }, (_, k) => farm.submit(held(farm, `u${(i + k) % 50}`, '1', { name: `shot-${i + k}-${'x'.repeat(60)}` }))))));
  }
  // (the table, not --json: rb() reads at most 1 MB of output)
  const listed = rb(farm, 'jobs');
  assert.equal(listed.code, 0, listed.stderr);
  const rows = listed.stdout.trim().split('\n').slice(1).map((line) => line.split(/\s+/)[0]!);
  assert.equal(rows.length, 5_001, 'every job once (the 5,000 and bob\'s)');
  const listedIds = new Set(rows);
  for (const id of ids) assert.ok(listedIds.has(id), `job ${id} listed`);
  const firstPage = await call(farm.nc, subjects.schedQuery(farm.site), codecs.queryRequest, { v: PROTOCOL_MAJOR, what: 'jobs' }, codecs.jobsReply, { timeoutMs: 5_000 });
  assert.equal(firstPage.more, true, 'more than one page');

  // the incident's second half: the replay of all that after a restart
  await scheduler.kill('SIGKILL');
  const again2 = await schedulerWith(farm, ['--max-site-frames', '2500000']);
  const aliceJob = await call(farm.nc, subjects.schedQuery(farm.site), codecs.queryRequest, { v: PROTOCOL_MAJOR, what: 'job', jobId: alice, limit: 1 }, codecs.jobReply, { timeoutMs: 5_000 });
  assert.deepEqual(aliceJob.job.counts, { total: 1_000_000, queued: 1_000_000, running: 0, done: 0, failed: 0 });
  const stillFull = await refusal(farm.submit(held(farm, 'alice', '1-10')));
  assert.equal(stillFull.code, 'RB_QUEUE_FULL', 'the replayed queue counts');
  assert.ok(again2.running);
});

test('bounds - finished jobs leave the scheduler\'s memory by the retention rule and are read back from the journal, also after a restart', async (t) => {
  const farm = await TestFarm.start();
  t.after(() => farm.stop());
  await farm.registry();
  const flags = ['--keep-jobs', '0'];
  let scheduler = await schedulerWith(farm, flags);
  await farm.renderServer('a', 2);
  const { spec } = await farm.ledgerJob('kept', '1-4', 0);
  const jobId = await farm.submit(spec);
  await farm.waitJob(jobId, 'done', 30_000);
  // done, it leaves memory: `jobs` no longer lists it, `job` reads it back
  await waitUntil('the job to leave memory', async () => !(await farm.jobs()).some((j) => j.jobId === jobId), 10_000);
  const shown = rb(farm, 'job', jobId);
  assert.equal(shown.code, 0, shown.stderr);
  assert.match(shown.stderr, /read back from the journal/);
  assert.match(shown.stdout, /done: 4\/4 done/);
  assert.equal(shown.stdout.match(/^\s*[1-4]\s+done/gm)?.length, 4, shown.stdout);
  const json = JSON.parse(rb(farm, 'job', jobId, '--json').stdout) as { frames: { output?: string }[] };
  assert.ok(json.frames.every((f) => f.output?.endsWith('.txt')), 'with their outputs');
  const cancel = rb(farm, 'retry', jobId);
  assert.notEqual(cancel.code, 0);
  assert.match(cancel.stderr, /left the scheduler's memory/);

  // restarted, it replays the journal, and the job leaves memory again, still readable
  await scheduler.kill('SIGKILL');
  scheduler = await schedulerWith(farm, flags);
  assert.equal((await farm.jobs()).some((j) => j.jobId === jobId), false);
  const after = rb(farm, 'job', jobId);
  assert.equal(after.code, 0, after.stderr);
  assert.match(after.stdout, /done: 4\/4 done/);
  assert.match(scheduler.output, /finished jobs left memory/);
});
