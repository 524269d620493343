import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { FrameRecord } from '../../protocol/index.ts';
import { rb, TestFarm } from '../helpers/farm.ts';

test('frame attempts - a frame\'s failed attempt stays in its record (host, slot, error, times): in `renderbus frame`, after a scheduler restart, and in the monitor', async (t) => {
  const farm = await TestFarm.start();
  t.after(() => farm.stop());
  await farm.registry();
  let scheduler = await farm.scheduler();
  await farm.renderServer('box', 1);
  const mark = join(farm.dir, 'tried');
  // the first attempt fails (and leaves a mark); the second renders
  const command = `sh -c 'if [ -e ${mark} ]; then echo ok > {output}; else touch ${mark}; echo "no luck this time" >&2; exit 3; fi'`;
  const jobId = await farm.submit({ name: 'flaky', scene: await farm.writeScene(), renderer: 'command', command, frames: '1', output: { dir: join(farm.dir, 'out'), pattern: 'f_####.txt' } });
  let job = await farm.waitJob(jobId, 'done', 30_000);
  const check = (f: FrameRecord, when: string) => {
    assert.equal(f.attempt, 2, when);
    assert.equal(f.attempts?.length, 1, `${when}: ${JSON.stringify(f)}`);
    const a = f.attempts![0]!;
    assert.deepEqual([a.attempt, a.host, a.slot], [1, 'box', 0], when);
    assert.match(a.error, /^RB_RENDER_FAILED: /, when);
    assert.ok(a.startedAt !== undefined && a.startedAt <= a.finishedAt && a.finishedAt <= f.startedAt!, `${when}: times in order: ${JSON.stringify(f)}`);
  };
  check(job.frames[0]!, 'live');

  const shown = rb(farm, 'frame', `${jobId}:1`);
  assert.equal(shown.code, 0, shown.stderr);
  assert.match(shown.stdout, /attempt 1\s+failed on box\/0 \(.*took .*\): RB_RENDER_FAILED: /);

  // rebuilt from the journal by a restarted scheduler
  await scheduler.kill('SIGKILL');
  scheduler = await farm.scheduler();
  job = await farm.job(jobId);
  check(job.frames[0]!, 'after a scheduler restart');

  const { base } = await farm.monitor();
  const r = await fetch(`${base}/api/jobs/${jobId}/frames/1`);
  assert.equal(r.status, 200);
  const body = (await r.json()) as { frame: FrameRecord };
  check(body.frame, 'in the monitor');
});
