import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { call } from '../../actors/bus/index.ts';
import { startScheduler } from '../../actors/scheduler/index.ts';
import { silentLogger } from '../../sites/logger.ts';
import { codecs, PROTOCOL_MAJOR as v, Role, subjects, type TaskAssignment, type TaskResult } from '../../protocol/index.ts';
import { aJobSpec, anInventory } from '../helpers/builders.ts';
import { startNatsServer } from '../helpers/nats-server.ts';
import { waitUntil } from '../helpers/farm.ts';

/**
 * The real scheduler, stopped and started again on the same journal (`restart`), against a
 * registry and a one-slot host 'h' answered by hand: the test decides when the host is free.
 */
async function setup(t: { after: (fn: () => Promise<void>) => void }) {
  const nats = await startNatsServer();
  const site = `s${randomUUID().slice(0, 8)}`;
  const regNc = await nats.connectAs(site, Role.Registry);
  const hostNc = await nats.connectAs(site, Role.RenderServer, 'h');
  const opNc = await nats.connectAs(site, Role.Operator, 'op');
  const schedNc = await nats.connectAs(site, Role.Scheduler);
  const s = { free: true, assigned: [] as TaskAssignment[] };
  regNc.subscribe(subjects.regMatch(site), {
    callback: (_e, m) => {
      const hosts = s.free ? [{ host: 'h', serverId: 'srv1', inventory: anInventory(), slots: [{ index: 0, state: 'idle' as const }], free: 1 }] : [];
      m.respond(codecs.matchReply.encode({ v, ok: true, body: { hosts, closest: [], totalHosts: 1 } }));
    },
  });
  hostNc.subscribe(subjects.hostAssign(site, 'h'), {
    callback: (_e, m) => {
      const req = codecs.assignRequest.decode(m.data);
      s.assigned.push(...req.assignments);
      m.respond(codecs.assignReply.encode({ v, ok: true, body: { accepted: req.assignments.map((a) => a.taskId), rejected: [] } }));
    },
  });
  await Promise.all([regNc.flush(), hostNc.flush()]);
  let sched = await startScheduler({ nc: schedNc, site, log: silentLogger() });
  t.after(async () => {
    await sched.stop();
    for (const c of [schedNc, hostNc, regNc, opNc]) await c.close();
    await nats.stop();
  });
  return Object.assign(s, {
    opNc,
    site,
    async restart() {
      await sched.stop();
      sched = await startScheduler({ nc: schedNc, site, log: silentLogger() });
    },
    submit: async (over: Parameters<typeof aJobSpec>[0]) =>
      (await call(opNc, subjects.schedSubmit(site, 'op'), codecs.submitRequest, { v, spec: aJobSpec({ renderer: 'command', command: 'true', ...over }) }, codecs.submitReply)).jobId,
    failed: (a: TaskAssignment, error = { code: 'RB_RENDER_FAILED', message: 'boom' }): Promise<unknown> =>
      call(hostNc, subjects.schedResult(site, 'h'), codecs.taskResult, {
        v, host: 'h', slot: a.slot, taskId: a.taskId, jobId: a.jobId, taskIndex: a.taskIndex, attempt: a.attempt,
        status: 'failed', error, outputs: [], stats: { wallMs: 5, cpuMs: 1, peakRssKb: 100, bytesWritten: 0 }, wantNext: false,
      } satisfies TaskResult, codecs.taskResultReply),
    async job(jobId: string) {
      const q = await call(opNc, subjects.schedQuery(site), codecs.queryRequest, { v, what: 'job', jobId }, codecs.queryReply);
      assert.ok('job' in q);
      return q.job;
    },
  });
}

test('scheduler - after a restart that follows a failed frame, the retry goes out as attempt 2, the old attempt\'s result is not taken again, and maxAttempts goes on', async (t) => {
  const s = await setup(t);
  const jobId = await s.submit({ frames: '1', maxAttempts: 2 });
  await waitUntil('attempt 1', () => s.assigned.length === 1);
  s.free = false; // busy elsewhere: the retry waits in the queue
  await s.failed(s.assigned[0]!);
  await waitUntil('the failure applied and stored', async () => (await s.job(jobId)).frames[0]!.error === 'RB_RENDER_FAILED: boom');
  assert.equal((await s.job(jobId)).counts.queued, 1);

  await s.restart();
  s.free = true;
  await waitUntil('the retry dispatched after the restart', () => s.assigned.length === 2, 20_000);
  assert.equal(s.assigned[1]!.attempt, 2, 'attempt 1 failed before the restart');
  await s.failed(s.assigned[0]!); // attempt 1's result, sent again late
  assert.equal((await s.job(jobId)).state, 'rendering', 'the old attempt changed nothing');
  await s.failed(s.assigned[1]!);
  await waitUntil('the job failed: two attempts of two', async () => (await s.job(jobId)).state === 'failed');
});

test('scheduler - a job failed for its broken scene is still failed, with its reason, after a restart; a retry then renders it', async (t) => {
  const s = await setup(t);
  const jobId = await s.submit({ frames: '1-3' });
  await waitUntil('the first task', () => s.assigned.length === 1);
  await s.failed(s.assigned[0]!, { code: 'RB_SCENE_ERROR', message: 'Parse Error' });
  const reason = 'RB_JOB_FAILED: its scene is broken (h): RB_SCENE_ERROR: Parse Error';
  const before = await s.job(jobId);
  assert.deepEqual([before.state, before.error], ['failed', reason]);

  await s.restart();
  const after = await s.job(jobId);
  assert.deepEqual([after.state, after.error, after.counts], ['failed', reason, before.counts], 'rebuilt from the journal');
  const n = s.assigned.length;
  const { job: retried } = await call(s.opNc, subjects.opCtl(s.site), codecs.ctlRequest, { v, action: 'retry', jobId }, codecs.ctlReply);
  assert.equal(retried.state, 'rendering');
  await waitUntil('frames dispatched again', () => s.assigned.length > n, 20_000);
});
