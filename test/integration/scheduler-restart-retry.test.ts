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
 * The real scheduler, stopped and started again on the same journal, against a registry and a
 * one-slot host answered by hand: the test decides when the host is free.
 */
test('scheduler - after a restart that follows a failed frame, the retry goes out as attempt 2, the old attempt\'s result is not taken again, and maxAttempts goes on', async (t) => {
  const nats = await startNatsServer();
  const site = `s${randomUUID().slice(0, 8)}`;
  const regNc = await nats.connectAs(site, Role.Registry);
  const hostNc = await nats.connectAs(site, Role.RenderServer, 'h');
  const opNc = await nats.connectAs(site, Role.Operator, 'op');
  const schedNc = await nats.connectAs(site, Role.Scheduler);
  let free = true; // whether the registry says the host's slot is idle
  regNc.subscribe(subjects.regMatch(site), {
    callback: (_e, m) => {
      const hosts = free ? [{ host: 'h', serverId: 'srv1', inventory: anInventory(), slots: [{ index: 0, state: 'idle' as const }], free: 1 }] : [];
      m.respond(codecs.matchReply.encode({ v, ok: true, body: { hosts, closest: [], totalHosts: 1 } }));
    },
  });
  const assigned: TaskAssignment[] = [];
  hostNc.subscribe(subjects.hostAssign(site, 'h'), {
    callback: (_e, m) => {
      const req = codecs.assignRequest.decode(m.data);
      assigned.push(...req.assignments);
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
  const failed = (a: TaskAssignment): Promise<unknown> =>
    call(hostNc, subjects.schedResult(site, 'h'), codecs.taskResult, {
      v, host: 'h', slot: a.slot, taskId: a.taskId, jobId: a.jobId, taskIndex: a.taskIndex, attempt: a.attempt,
      status: 'failed', error: { code: 'RB_RENDER_FAILED', message: 'boom' }, outputs: [], stats: { wallMs: 5, cpuMs: 1, peakRssKb: 100, bytesWritten: 0 }, wantNext: false,
    } satisfies TaskResult, codecs.taskResultReply);
  const job = async (jobId: string) => {
    const q = await call(opNc, subjects.schedQuery(site), codecs.queryRequest, { v, what: 'job', jobId }, codecs.queryReply);
    assert.ok('job' in q);
    return q.job;
  };

  const { jobId } = await call(opNc, subjects.schedSubmit(site, 'op'), codecs.submitRequest, { v, spec: aJobSpec({ renderer: 'command', command: 'true', frames: '1', maxAttempts: 2 }) }, codecs.submitReply);
  await waitUntil('attempt 1', () => assigned.length === 1);
  free = false; // busy elsewhere: the retry waits in the queue
  await failed(assigned[0]!);
  await waitUntil('the failure applied and stored', async () => (await job(jobId)).frames[0]!.error === 'RB_RENDER_FAILED: boom');
  assert.equal((await job(jobId)).counts.queued, 1);

  await sched.stop();
  sched = await startScheduler({ nc: schedNc, site, log: silentLogger() });
  free = true;
  await waitUntil('the retry dispatched after the restart', () => assigned.length === 2, 20_000);
  assert.equal(assigned[1]!.attempt, 2, 'attempt 1 failed before the restart');
  await failed(assigned[0]!); // attempt 1's result, sent again late
  assert.equal((await job(jobId)).state, 'rendering', 'the old attempt changed nothing');
  await failed(assigned[1]!);
  await waitUntil('the job failed: two attempts of two', async () => (await job(jobId)).state === 'failed');
});

test('scheduler - a job failed for its broken scene is still failed, with its reason, after a restart; a retry then renders it', async (t) => {
  const nats = await startNatsServer();
  const site = `s${randomUUID().slice(0, 8)}`;
  const regNc = await nats.connectAs(site, Role.Registry);
  const hostNc = await nats.connectAs(site, Role.RenderServer, 'h');
  const opNc = await nats.connectAs(site, Role.Operator, 'op');
  const schedNc = await nats.connectAs(site, Role.Scheduler);
  regNc.subscribe(subjects.regMatch(site), {
    callback: (_e, m) => void m.respond(codecs.matchReply.encode({ v, ok: true, body: { hosts: [{ host: 'h', serverId: 'srv1', inventory: anInventory(), slots: [{ index: 0, state: 'idle' as const }], free: 1 }], closest: [], totalHosts: 1 } })),
  });
  const assigned: TaskAssignment[] = [];
  hostNc.subscribe(subjects.hostAssign(site, 'h'), {
    callback: (_e, m) => {
      const req = codecs.assignRequest.decode(m.data);
      assigned.push(...req.assignments);
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
  const job = async (jobId: string) => {
    const q = await call(opNc, subjects.schedQuery(site), codecs.queryRequest, { v, what: 'job', jobId }, codecs.queryReply);
    assert.ok('job' in q);
    return q.job;
  };
  const { jobId } = await call(opNc, subjects.schedSubmit(site, 'op'), codecs.submitRequest, { v, spec: aJobSpec({ renderer: 'command', command: 'true', frames: '1-3' }) }, codecs.submitReply);
  await waitUntil('the first task', () => assigned.length === 1);
  const a = assigned[0]!;
  await call(hostNc, subjects.schedResult(site, 'h'), codecs.taskResult, {
    v, host: 'h', slot: a.slot, taskId: a.taskId, jobId, taskIndex: a.taskIndex, attempt: a.attempt,
    status: 'failed', error: { code: 'RB_SCENE_ERROR', message: 'Parse Error' }, outputs: [], stats: { wallMs: 5, cpuMs: 1, peakRssKb: 100, bytesWritten: 0 }, wantNext: false,
  } satisfies TaskResult, codecs.taskResultReply);
  const reason = 'RB_JOB_FAILED: its scene is broken (h): RB_SCENE_ERROR: Parse Error';
  const before = await job(jobId);
  assert.deepEqual([before.state, before.error], ['failed', reason]);

  await sched.stop();
  sched = await startScheduler({ nc: schedNc, site, log: silentLogger() });
  const after = await job(jobId);
  assert.deepEqual([after.state, after.error, after.counts], ['failed', reason, before.counts], 'rebuilt from the journal');
  const n = assigned.length;
  const { job: retried } = await call(opNc, subjects.opCtl(site), codecs.ctlRequest, { v, action: 'retry', jobId }, codecs.ctlReply);
  assert.equal(retried.state, 'rendering');
  await waitUntil('frames dispatched again', () => assigned.length > n, 20_000);
});
