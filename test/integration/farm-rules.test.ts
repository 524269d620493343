import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { codecs, type ShareUse } from '../../protocol/index.ts';
import { rb, readLedger, TestFarm, waitUntil } from '../helpers/farm.ts';

// Fair share, memory retries and task-duration chunks with real actors over a real nats-server.

test('fair share - renderbus share splits the slots by weight, is journaled, and why says when a project is over its share', async (t) => {
  const farm = await TestFarm.start();
  t.after(() => farm.stop());
  await farm.registry();
  let scheduler = await farm.scheduler();
  const set = rb(farm, 'share', 'feature', '3');
  assert.equal(set.code, 0, set.stderr);
  assert.match(set.stdout, /fair share is on/);
  // the weight is durable: a restarted scheduler still has it
  await scheduler.kill('SIGKILL');
  scheduler = await farm.scheduler();
  const a = await farm.ledgerJob('feature-shot', '1-40', 1.5, { project: 'feature', priority: 90 });
  const b = await farm.ledgerJob('spot', '1-40', 1.5, { project: 'spot', priority: 10 });
  const featureId = await farm.submit(a.spec);
  const spotId = await farm.submit(b.spec);
  // the slots come once both jobs are queued: a render server already there could fill all four
  // with the first job before the second is submitted (fair share does not preempt), seen on a loaded run
  await farm.renderServer('box', 4);
  const held = async () => {
    const r = rb(farm, 'share', '--json');
    assert.equal(r.code, 0, r.stderr);
    return Object.fromEntries((JSON.parse(r.stdout) as { projects: ShareUse[] }).projects.map((p) => [p.project, p]));
  };
  // 4 slots, weights 3 and 1: the urgent spot job does not take them all
  const uses = await waitUntil('both projects to hold slots', async () => {
    const u = await held();
    return (u.feature?.running ?? 0) + (u.spot?.running ?? 0) >= 4 ? u : undefined;
  }, 20_000);
  // slots held count the task a slot holds in hand too: 4 slots hold up to 8 leases
  assert.ok(uses.feature!.running >= 3 && uses.spot!.running >= 1 && uses.spot!.running <= 2, JSON.stringify(uses));
  assert.equal(uses.feature!.share, 0.75);
  // a second feature job waits: its project holds its share
  const more = await farm.ledgerJob('feature-2', '1-2', 0.1, { project: 'feature', priority: 95 });
  const moreId = await farm.submit(more.spec);
  let last = '';
  const why = await waitUntil('the second job to say why it waits', async () => {
    const r = rb(farm, 'why', moreId, '--json');
    const w = (JSON.parse(r.stdout) as { why: { kind: string; text: string } | null }).why;
    last = JSON.stringify(w);
    return w?.kind === 'share' ? w : undefined;
  }, 15_000).catch((err: Error) => assert.fail(`${err.message}: last ${last}`));
  assert.match(why.text, /project feature holds \d+ slots, at or over its share/);
  const removed = rb(farm, 'share', 'feature', '--remove');
  assert.equal(removed.code, 0, removed.stderr);
  assert.match(removed.stdout, /fair share is off/);
  assert.equal(rb(farm, 'share', 'nobody', '--remove').code, 1, 'removing a share never set is refused');
  const bad = rb(farm, 'share', 'feature', 'lots');
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /weight/);
  for (const id of [featureId, spotId, moreId]) rb(farm, 'cancel', id);
});

test('memory - a frame over its memory is stopped (RB_OUT_OF_MEMORY) and retried with 1.5 times as much, which it fits', async (t) => {
  const farm = await TestFarm.start();
  t.after(() => farm.stop());
  await farm.registry();
  await farm.scheduler();
  await farm.renderServer('box', 1);
  const scene = await farm.writeScene();
  const retries: string[] = [];
  const sub = farm.nc.subscribe(`rb.${farm.site}.evt.frame.>`, {
    callback: (_err, m) => {
      const e = codecs.frameEvent.decode(m.data);
      if (e.event === 'retrying') retries.push(String(e.error));
    },
  });
  t.after(() => sub.unsubscribe());
  // holds 120 MB for two seconds: over 100 MB, under 150
  const jobId = await farm.submit({
    name: 'hungry', scene, renderer: 'command', frames: '1', memoryMb: 100,
    command: `perl -e "my \$x; vec(\$x, 120 * 1024 * 1024 - 1, 8) = 1; sleep 2; open(my \$f, q(>), q({output})) or die; print \$f q(ok);"`,
    output: { dir: join(farm.dir, 'out'), pattern: 'f_#.txt' },
  });
  const job = await farm.waitJob(jobId, 'done', 60_000);
  const frame = job.frames[0]!;
  assert.equal(frame.attempt, 2, 'the first attempt was stopped, the second fitted');
  assert.equal(retries.length, 1);
  assert.match(retries[0]!, /^RB_OUT_OF_MEMORY: task killed: it used 1\d\d MB, over the 100 MB it was given/);
  assert.ok(frame.stats!.peakRssKb > 110 * 1024, `the second attempt used its 120 MB (peak ${frame.stats!.peakRssKb} KiB)`);
});

test('task duration - the scheduler grows the chunk from measured frame times; every frame renders once, and a restarted scheduler keeps the split', async (t) => {
  const farm = await TestFarm.start();
  t.after(() => farm.stop());
  await farm.registry();
  let scheduler = await farm.scheduler();
  await farm.renderServer('box', 2);
  const { spec, ledger } = await farm.ledgerJob('quick', '1-60', 0.2, { taskDuration: 1 });
  const jobId = await farm.submit(spec);
  const grown = await waitUntil('a bigger task done', async () => {
    const j = await farm.job(jobId);
    return j.frames.some((f) => f.taskIndex >= 60 && f.state === 'done') ? j : undefined;
  }, 30_000);
  // frames already done in tasks made by a split: a replay that did not split the same way
  // would not know their tasks, and would render them again under other ones (frames not handed
  // out yet may legitimately move again: the chunk follows the measured times)
  const tasksBefore = new Map(grown.frames.filter((f) => f.state === 'done' && f.taskIndex >= 60).map((f) => [f.frame, f.taskIndex]));
  await scheduler.kill('SIGKILL');
  scheduler = await farm.scheduler();
  const done = await farm.waitJob(jobId, 'done', 60_000);
  const chunks = new Map<number, number>();
  for (const f of done.frames) chunks.set(f.taskIndex, (chunks.get(f.taskIndex) ?? 0) + 1);
  assert.ok([...chunks.values()].some((n) => n >= 3), `some task rendered several frames: ${JSON.stringify([...chunks])}`);
  for (const [frame, task] of tasksBefore) assert.equal(done.frames.find((f) => f.frame === frame)!.taskIndex, task, `frame ${frame} kept its task after the restart`);
  const runs = await readLedger(ledger);
  assert.equal(runs.size, 60);
  assert.deepEqual([...runs].filter(([, n]) => n !== 1), [], 'every frame rendered once');
});
