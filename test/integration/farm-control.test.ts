import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { rb, TestFarm, waitUntil } from '../helpers/farm.ts';
import { WRITE_PNG } from '../helpers/tiny-image.ts';

test('control - hold and release, pause and resume, priority: each answered, journaled (it survives a scheduler restart) and obeyed', async (t) => {
  const farm = await TestFarm.start();
  t.after(() => farm.stop());
  await farm.registry();
  let scheduler = await farm.scheduler();
  await farm.renderServer('box', 1);
  // long enough that a CLI starting slowly on a loaded machine still finds it rendering
  const { spec } = await farm.ledgerJob('steered', '1-20', 0.6);
  const jobId = await farm.submit({ ...spec, hold: true });
  // a job submitted after it got the only slot: the scheduler looked at the held one and passed it over
  await farm.dispatchRound();
  let job = await farm.job(jobId);
  assert.equal(job.state, 'held');
  assert.equal(job.counts.running + job.counts.done, 0, 'a held job starts nothing');

  const released = rb(farm, 'release', jobId);
  assert.equal(released.code, 0, released.stderr);
  assert.match(released.stdout, /released/);
  await waitUntil('a frame done', async () => (await farm.job(jobId)).counts.done >= 1);

  const paused = rb(farm, 'pause', jobId, '--json');
  assert.equal(paused.code, 0, paused.stderr);
  assert.equal((JSON.parse(paused.stdout) as { state: string }).state, 'paused');
  const prio = rb(farm, 'priority', jobId, '7');
  assert.equal(prio.code, 0, prio.stderr);

  // the pause and the new priority are durable: a restarted scheduler still has them
  await scheduler.kill('SIGKILL');
  scheduler = await farm.scheduler();
  await waitUntil('running frames to finish', async () => (await farm.job(jobId)).counts.running === 0, 20_000);
  const doneWhilePaused = (await farm.job(jobId)).counts.done;
  // a less urgent job gets the slot: the paused one (priority 7) was considered first and passed over
  await farm.dispatchRound({ priority: 50 });
  job = await farm.job(jobId);
  assert.equal(job.state, 'paused');
  assert.equal(job.priority, 7);
  assert.equal(job.counts.done, doneWhilePaused, 'no new frame started while paused');
  assert.ok(job.counts.done < 20, 'paused before its end');

  const resumed = rb(farm, 'resume', jobId);
  assert.equal(resumed.code, 0, resumed.stderr);
  job = await farm.waitJob(jobId, 'done', 60_000);
  assert.equal(job.counts.done, 20);
  assert.match(scheduler.output, /job control|journal replayed/);
});

test('control - retry renders failed frames again, or chosen ones; bad requests are refused with the reason', async (t) => {
  const farm = await TestFarm.start();
  t.after(() => farm.stop());
  await farm.registry();
  await farm.scheduler();
  await farm.renderServer('box', 2);
  const marker = join(farm.dir, 'fixed');
  const scene = await farm.writeScene();
  // frame 3 fails until the marker exists: a broken asset, fixed by hand
  const jobId = await farm.submit({
    name: 'flaky', scene, renderer: 'command', frames: '1-4', maxAttempts: 1,
    command: `sh -c 'if [ {frame} -eq 3 ] && [ ! -e ${marker} ]; then exit 1; fi; echo {frame} > {output}'`,
    output: { dir: join(farm.dir, 'out'), pattern: 'f_#.txt' },
  });
  let job = await farm.waitJob(jobId, 'failed', 60_000);
  assert.deepEqual(job.frames.filter((f) => f.state === 'failed').map((f) => f.frame), [3]);

  await writeFile(marker, '');
  const retried = rb(farm, 'retry', jobId);
  assert.equal(retried.code, 0, retried.stderr);
  job = await farm.waitJob(jobId, 'done', 60_000);
  assert.equal(job.frames.find((f) => f.frame === 3)!.attempt, 2);

  const chosen = rb(farm, 'retry', jobId, '--frames', '1,4');
  assert.equal(chosen.code, 0, chosen.stderr);
  job = await farm.waitJob(jobId, 'done', 60_000);
  assert.deepEqual(job.frames.map((f) => f.attempt), [2, 1, 2, 2], 'frames 1 and 4 rendered again');

  const noFrame = rb(farm, 'retry', jobId, '--frames', '9');
  assert.equal(noFrame.code, 1);
  assert.match(noFrame.stderr, /has no frame 9/);
  const notHeld = rb(farm, 'release', jobId);
  assert.equal(notHeld.code, 1);
  assert.match(notHeld.stderr, /not held/);
  const badPriority = rb(farm, 'priority', jobId, 'high');
  assert.equal(badPriority.code, 2);
  assert.match(badPriority.stderr, /priority: 'high' is not a whole number/);
});

test('control - a comp submitted --after its render starts once the render is done; an unknown job is refused', async (t) => {
  const farm = await TestFarm.start();
  t.after(() => farm.stop());
  await farm.registry();
  await farm.scheduler();
  await farm.renderServer('box', 2);
  const render = await farm.ledgerJob('render', '1-3', 0.8);
  // held until the comp is queued: on a loaded machine the render could end before the CLI submits
  const renderId = await farm.submit({ ...render.spec, hold: true });
  const scene = await farm.writeScene('comp.txt', 'x');
  const out = join(farm.dir, 'comp');
  const sub = rb(farm, 'submit', scene, '--frames', '1-2', '--command', 'sh -c "echo {frame} > {output}"', '--pattern', 'c_#.txt', '--output', out, '--after', renderId, '--json');
  assert.equal(sub.code, 0, sub.stderr);
  const compId = (JSON.parse(sub.stdout) as { jobId: string }).jobId;
  const early = await farm.job(compId);
  assert.equal(early.counts.done + early.counts.running, 0);
  assert.match(early.waiting ?? '', new RegExp(`waiting for job ${renderId} \\(render\\)`));
  assert.equal(rb(farm, 'release', renderId).code, 0);
  const renderDone = await farm.waitJob(renderId, 'done', 60_000);
  const comp = await farm.waitJob(compId, 'done', 60_000);
  const firstComp = Math.min(...comp.frames.map((f) => f.startedAt!));
  const lastRender = Math.max(...renderDone.frames.map((f) => f.finishedAt!));
  assert.ok(firstComp >= lastRender, 'no comp frame started before the render was done');

  const unknown = rb(farm, 'submit', scene, '--frames', '1', '--command', 'true', '--output', out, '--after', 'jnosuchjob');
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /after: no job 'jnosuchjob' on this farm/);
});

test('retries - a frame past the time limit is killed and retried; a host that keeps failing a job gets no more of it', async (t) => {
  const farm = await TestFarm.start();
  t.after(() => farm.stop());
  await farm.registry();
  await farm.scheduler();
  await farm.renderServer('bad', 1);
  await farm.renderServer('good', 1);
  const scene = await farm.writeScene();
  // the first run of frame 1 hangs; the time limit kills it and the retry finds the flag
  const flag = join(farm.dir, 'hung-once');
  const t0 = Date.now();
  const slowId = await farm.submit({
    name: 'hangs', scene, renderer: 'command', frames: '1', timeLimit: 1,
    command: `sh -c 'if [ ! -e ${flag} ]; then touch ${flag}; sleep 60; fi; ${WRITE_PNG}'`,
    output: { dir: join(farm.dir, 'slow') },
  });
  const slow = await farm.waitJob(slowId, 'done', 30_000);
  assert.equal(slow.frames[0]!.attempt, 2);
  assert.ok(Date.now() - t0 < 20_000, 'killed at its time limit, not after the 60 s sleep');

  // every run on host 'bad' fails (its work dir names the host); after one failure it is kept away
  const jobId = await farm.submit({
    name: 'picky', scene, renderer: 'command', frames: '1-6', maxHostFailures: 1, maxAttempts: 3,
    command: `sh -c 'case {outdir} in *-bad.*) exit 1;; esac; sleep 0.3; ${WRITE_PNG}'`,
    output: { dir: join(farm.dir, 'picky') },
  });
  const job = await farm.waitJob(jobId, 'done', 60_000);
  assert.deepEqual([...new Set(job.frames.map((f) => f.host))], ['good'], 'every frame ended on the good host');
  assert.ok(job.frames.filter((f) => f.attempt > 1).length <= 1, 'the bad host failed one task, then got no more');
});

test('why - says why a job waits: held, and no host matching with the nearest hosts and what they lack', async (t) => {
  const farm = await TestFarm.start();
  t.after(() => farm.stop());
  await farm.registry();
  await farm.scheduler();
  await farm.renderServer('box', 1);
  const scene = await farm.writeScene();
  const heldId = await farm.submit({ name: 'held', scene, renderer: 'command', command: 'true', frames: '1', hold: true, output: { dir: join(farm.dir, 'h') } });
  const held = rb(farm, 'why', heldId, '--json');
  assert.equal(held.code, 0, held.stderr);
  assert.equal((JSON.parse(held.stdout) as { why: { kind: string } }).why.kind, 'held');

  const needsId = await farm.submit({ name: 'needs', scene, renderer: 'command', command: 'true', frames: '1', requirements: { packages: ['blender@4.*'] }, output: { dir: join(farm.dir, 'n') } });
  const text = await waitUntil('a reason', async () => {
    const r = rb(farm, 'why', needsId);
    return r.code === 0 && /no host matches/.test(r.stdout) ? r.stdout : undefined;
  }, 20_000, 500);
  assert.match(text, /why: no host matches the requirements/);
  assert.match(text, /^ {2}box lacks .*blender/m);

  const unknown = rb(farm, 'why', 'jnosuchjob');
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /no job 'jnosuchjob'/);
});

test('limits - a licence limit of 1 keeps a job to one running task on a 3-slot farm, survives a scheduler restart, and is listed with its use', async (t) => {
  const farm = await TestFarm.start();
  t.after(() => farm.stop());
  await farm.registry();
  let scheduler = await farm.scheduler();
  await farm.renderServer('box', 3);
  const set = rb(farm, 'limit', 'maya', '1');
  assert.equal(set.code, 0, set.stderr);
  await scheduler.kill('SIGKILL');
  scheduler = await farm.scheduler();
  const listed = rb(farm, 'limit', '--json');
  assert.equal(listed.code, 0, listed.stderr);
  assert.deepEqual(JSON.parse(listed.stdout), [{ name: 'maya', max: 1, per: 'task', inUse: 0 }], 'the limit came back from the journal');

  // its first task holds the licence at a gate until `why` (a CLI start of seconds on a loaded machine) saw the rest wait
  const gate = join(farm.dir, 'licence-gate');
  const { spec } = await farm.ledgerJob('licensed', '1-10', 0.5, { command: `sh -c 'while [ ! -e ${gate} ]; do sleep 0.05; done; sleep 0.3; echo frame {frame} > {output}'` });
  const jobId = await farm.submit({ ...spec, limits: ['maya'] });
  const why = await waitUntil('the job to wait on its licence', async () => {
    const r = rb(farm, 'why', jobId, '--json');
    const w = (JSON.parse(r.stdout) as { why: { kind: string; text: string } | null }).why;
    return w?.kind === 'limit' ? w.text : undefined;
  }, 60_000, 300);
  assert.equal(why, 'limit maya at 1/1');
  await writeFile(gate, '');
  const job = await farm.waitJob(jobId, 'done', 60_000);
  const spans = job.frames.map((f) => [f.startedAt!, f.finishedAt!] as const).sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < spans.length; i++) assert.ok(spans[i]![0] >= spans[i - 1]![1], `frames ran one at a time: ${JSON.stringify(spans)}`);
  const bad = rb(farm, 'limit', 'maya');
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /give its maximum too/);
});

test('retries - a frame that prints nothing for its stall limit is killed and retried; one that keeps printing runs on', async (t) => {
  const farm = await TestFarm.start();
  t.after(() => farm.stop());
  await farm.registry();
  await farm.scheduler();
  await farm.renderServer('box', 2);
  const scene = await farm.writeScene();
  const flag = join(farm.dir, 'stalled-once');
  const stuckId = await farm.submit({
    name: 'stuck', scene, renderer: 'command', frames: '1', stallLimit: 1,
    command: `sh -c 'if [ ! -e ${flag} ]; then touch ${flag}; sleep 60; fi; ${WRITE_PNG}'`,
    output: { dir: join(farm.dir, 'stuck') },
  });
  const chattyId = await farm.submit({
    name: 'chatty', scene, renderer: 'command', frames: '1', stallLimit: 1.5,
    command: `sh -c 'for i in 1 2 3 4 5; do echo tick $i; sleep 0.5; done; ${WRITE_PNG}'`,
    output: { dir: join(farm.dir, 'chatty') },
  });
  const stuck = await farm.waitJob(stuckId, 'done', 30_000);
  assert.equal(stuck.frames[0]!.attempt, 2, 'the silent first run was killed');
  const chatty = await farm.waitJob(chattyId, 'done', 30_000);
  assert.equal(chatty.frames[0]!.attempt, 1, 'a renderer that keeps printing is not stalled, however long it runs');
  assert.ok(chatty.frames[0]!.stats!.wallMs > 2_000);
});

test('sick hosts - a host that fails frames of three jobs gets no more work; renderbus sick lists it and --clear gives it work again', async (t) => {
  const farm = await TestFarm.start();
  t.after(() => farm.stop());
  await farm.registry();
  await farm.scheduler();
  await farm.renderServer('flaky', 1);
  await farm.renderServer('good', 1);
  const scene = await farm.writeScene();
  const ids: string[] = [];
  for (const name of ['a', 'b', 'c', 'd']) {
    ids.push(await farm.submit({
      name, scene, renderer: 'command', frames: '1-3', maxAttempts: 5, maxHostFailures: 2,
      command: `sh -c 'case {outdir} in *-flaky.*) exit 1;; esac; sleep 0.2; ${WRITE_PNG}'`,
      output: { dir: join(farm.dir, name) },
    }));
  }
  for (const id of ids) await farm.waitJob(id, 'done', 60_000);
  const listed = rb(farm, 'sick', '--json');
  assert.equal(listed.code, 0, listed.stderr);
  const sick = JSON.parse(listed.stdout) as { host: string; jobs: string[] }[];
  assert.deepEqual(sick.map((s) => s.host), ['flaky']);
  assert.equal(sick[0]!.jobs.length, 3);
  const cleared = rb(farm, 'sick', 'flaky', '--clear');
  assert.equal(cleared.code, 0, cleared.stderr);
  assert.match(cleared.stdout, /flaky cleared: it gets work again\nno sick hosts/);
  const again = rb(farm, 'sick', 'flaky', '--clear');
  assert.equal(again.code, 1);
  assert.match(again.stderr, /host 'flaky' is not sick/);
});

test('control - a comp submitted --after-frames its render runs frame by frame behind it', async (t) => {
  const farm = await TestFarm.start();
  t.after(() => farm.stop());
  await farm.registry();
  await farm.scheduler();
  // three slots: while the render's last frame still runs (0.8 s), a slot is free for the comp's
  // first frames (with two, the comp could only start as the render's last two frames ended
  // together, and whether it started first came down to milliseconds)
  await farm.renderServer('box', 3);
  const render = await farm.ledgerJob('render', '1-4', 0.8);
  // held until the comp is in: a CLI that starts slowly on a loaded machine must not find it done
  const renderId = await farm.submit({ ...render.spec, hold: true });
  const scene = await farm.writeScene('comp.txt', 'x');
  const sub = rb(farm, 'submit', scene, '--frames', '1-4', '--command', 'sh -c "echo {frame} > {output}"', '--pattern', 'c_#.txt', '--output', join(farm.dir, 'comp'), '--after-frames', renderId, '--json');
  assert.equal(sub.code, 0, sub.stderr);
  const compId = (JSON.parse(sub.stdout) as { jobId: string }).jobId;
  assert.equal(rb(farm, 'release', renderId).code, 0);
  const comp = await farm.waitJob(compId, 'done', 60_000);
  const rendered = await farm.waitJob(renderId, 'done', 60_000);
  for (const f of comp.frames) {
    const r = rendered.frames.find((x) => x.frame === f.frame)!;
    assert.ok(f.startedAt! >= r.finishedAt!, `comp frame ${f.frame} started after render frame ${f.frame} was done`);
  }
  assert.ok(Math.min(...comp.frames.map((f) => f.startedAt!)) < Math.max(...rendered.frames.map((f) => f.finishedAt!)), 'and before the whole render was done');
});
