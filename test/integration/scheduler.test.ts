import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';
import type { NatsConnection } from '@nats-io/transport-node';
import { call } from '../../actors/bus/index.ts';
import { startScheduler } from '../../actors/scheduler/index.ts';
import pino from 'pino';
import { codecs, decodeAny, eventFrames, FarmError, PROTOCOL_MAJOR as v, Role, subjects, type FrameEvent, type TaskAssignment, type TaskResult } from '../../protocol/index.ts';
import { aJobSpec, anInventory } from '../helpers/builders.ts';
import { startNatsServer } from '../helpers/nats-server.ts';
import { waitUntil } from '../helpers/farm.ts';

/** The real scheduler against a registry and a render server answered by hand. */
async function setup(t: { after: (fn: () => Promise<void>) => void }, slots = 2, o: { answerAssign?: boolean } = {}) {
  const nats = await startNatsServer();
  const site = `s${randomUUID().slice(0, 8)}`;
  // the test plays the registry (regNc), host h (nc) and its user (opNc)
  const regNc = await nats.connectAs(site, Role.Registry);
  const nc = await nats.connectAs(site, Role.RenderServer, 'h');
  const opNc = await nats.connectAs(site, Role.Operator, 'op');
  const schedNc = await nats.connectAs(site, Role.Scheduler);
  const idle = Array.from({ length: slots }, (_, index) => ({ index, state: 'idle' as const }));
  regNc.subscribe(subjects.regMatch(site), {
    callback: (_e, m) => void m.respond(codecs.matchReply.encode({ v, ok: true, body: { hosts: [{ host: 'h', serverId: 'srv1', inventory: anInventory(), slots: idle, free: slots }], closest: [], totalHosts: 1 } })),
  });
  const assigned: TaskAssignment[] = [];
  nc.subscribe(subjects.hostAssign(site, 'h'), {
    callback: (_e, m) => {
      const req = codecs.assignRequest.decode(m.data);
      assigned.push(...req.assignments);
      if (o.answerAssign === false) return; // a host too loaded to answer in time
      m.respond(codecs.assignReply.encode({ v, ok: true, body: { accepted: req.assignments.map((a) => a.taskId), rejected: [] } }));
    },
  });
  // its log lines, each a JSON object: some say what it decided when no event does
  const logs: { msg: string }[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line) as { msg: string }) });
  const sched = await startScheduler({ nc: schedNc, site, log });
  t.after(async () => {
    await sched.stop();
    for (const c of [schedNc, nc, regNc, opNc]) await c.close();
    await nats.stop();
  });
  const submit = (over: Parameters<typeof aJobSpec>[0]) =>
    call(opNc, subjects.schedSubmit(site, 'op'), codecs.submitRequest, { v, spec: aJobSpec({ renderer: 'command', command: 'true', ...over }) }, codecs.submitReply);
  const result = (a: TaskAssignment, over: Partial<TaskResult> = {}) =>
    call(nc, subjects.schedResult(site, 'h'), codecs.taskResult, {
      v, host: 'h', slot: a.slot, taskId: a.taskId, jobId: a.jobId, taskIndex: a.taskIndex, attempt: a.attempt,
      status: 'done', outputs: [], stats: { wallMs: 5, cpuMs: 1, peakRssKb: 100, bytesWritten: 0 }, wantNext: true, want: 2, ...over,
    }, codecs.taskResultReply);
  await Promise.all([regNc.flush(), nc.flush()]);
  return { nc: opNc, site, assigned, submit, result, logs };
}

test('scheduler - two last results in the same instant end the job once: one done event', async (t) => {
  const s = await setup(t);
  const done: string[] = [];
  s.nc.subscribe(`rb.${s.site}.evt.job.*.done`, { callback: (_e, m) => void done.push((decodeAny(m.data) as { jobId: string }).jobId) });
  const { jobId } = await s.submit({ frames: '1-2' });
  await waitUntil('both tasks assigned', () => s.assigned.length === 2);
  // both results leave in one tick, so the scheduler handles them back to back
  await Promise.all(s.assigned.map((a) => s.result(a)));
  await waitUntil('the done event', () => done.length > 0);
  // a later job's done event on the same stream: a second one of the first would have come before it
  const later = await s.submit({ frames: '1' });
  await waitUntil('the later job\'s task', () => s.assigned.length === 3);
  await s.result(s.assigned[2]!);
  await waitUntil('the later job\'s done event', () => done.includes(later.jobId));
  assert.deepEqual(done, [jobId, later.jobId]);
});

test('scheduler - a result whose frame files lie outside the job\'s output folder is refused; the task still ends with a true one', async (t) => {
  const s = await setup(t, 1);
  await s.submit({ frames: '1' });
  await waitUntil('the task', () => s.assigned.length === 1);
  const a = s.assigned[0]!;
  for (const path of ['/etc/shadow', `${a.outputDir}/../elsewhere/f.png`]) {
    await assert.rejects(s.result(a, { outputs: [{ frame: 1, path }] }), (e: FarmError) => e.code === 'RB_FORBIDDEN' && /not in its job's output folder/.test(e.message), path);
  }
  await s.result(a, { outputs: [{ frame: 1, path: `${a.outputDir}/f_0001.png` }] });
});

test('scheduler - a result is answered with the next task and, for a long job, one to hold in hand', async (t) => {
  const s = await setup(t, 1);
  await s.submit({ frames: '1-10' });
  await waitUntil('the first task', () => s.assigned.length === 1);
  const reply = await s.result(s.assigned[0]!);
  assert.deepEqual([reply.next?.frames, reply.following?.frames], [[2], [3]]);
  // the slot started what it held and reports the next result wanting one more
  const again = await s.result(reply.next!, { want: 1 });
  assert.deepEqual([again.next?.frames, again.following], [[4], null]);
});

test('scheduler - the last tasks of a job are not held in hand, so they spread over free slots', async (t) => {
  const s = await setup(t, 2);
  await s.submit({ frames: '1-3' });
  await waitUntil('two tasks', () => s.assigned.length === 2);
  const reply = await s.result(s.assigned[0]!);
  assert.deepEqual(reply.next?.frames, [3]);
  assert.equal(reply.following, null, 'one queued, one running: nothing to hold');
});

test('scheduler - a result of an older attempt is acknowledged and ignored', async (t) => {
  const s = await setup(t, 1);
  const { jobId } = await s.submit({ frames: '1' });
  await waitUntil('the task', () => s.assigned.length === 1);
  const a = s.assigned[0]!;
  const stale = await s.result({ ...a, attempt: a.attempt + 5 }, { status: 'failed', error: { code: 'RB_RENDER_FAILED', message: 'old' } });
  assert.equal(stale.next, null);
  const q = await call(s.nc, subjects.schedQuery(s.site), codecs.queryRequest, { v, what: 'job', jobId }, codecs.queryReply);
  assert.ok('job' in q);
  assert.equal(q.job.state, 'rendering', 'the stale failure changed nothing');
  await s.result(a);
  await waitUntil('the job done', async () => {
    const j = await call(s.nc, subjects.schedQuery(s.site), codecs.queryRequest, { v, what: 'job', jobId }, codecs.queryReply);
    return 'job' in j && j.job.state === 'done';
  });
});

test('scheduler - a result sent again (its reply never reached the slot) is answered with the same next tasks, not new ones', async (t) => {
  const s = await setup(t, 1);
  const dispatched: string[] = [];
  s.nc.subscribe(`rb.${s.site}.evt.frame.*.*.dispatched`, { callback: (_e, m) => void dispatched.push(m.subject.split('.')[5]!) });
  await s.submit({ frames: '1-10' });
  await waitUntil('the first task', () => s.assigned.length === 1);
  const first = await s.result(s.assigned[0]!); // as if this reply were lost on its way
  const again = await s.result(s.assigned[0]!);
  assert.deepEqual([again.next?.taskId, again.next?.attempt, again.following?.taskId], [first.next?.taskId, first.next?.attempt, first.following?.taskId]);
  // and the slot goes on from there as usual
  const next = await s.result(again.next!, { want: 1 });
  assert.deepEqual(next.next?.frames, [4]);
  // frame 4's dispatched event comes after any the repeated result could have caused
  await waitUntil('frame 4 dispatched', () => dispatched.includes('4'));
  assert.deepEqual(dispatched.sort(), ['1', '2', '3', '4'], 'frames 2 and 3 dispatched once, nothing more leased');
});

test('scheduler - an assignment not answered in time stays leased (the host may have taken it) until the host\'s lease reports say otherwise', async (t) => {
  const s = await setup(t, 1, { answerAssign: false });
  const { jobId } = await s.submit({ frames: '1' });
  await waitUntil('the task', () => s.assigned.length === 1);
  // the scheduler's 3 s wait for the answer ended: it says so, and leaves the lease to the lease reports
  await waitUntil('the scheduler to give up on the answer', () => s.logs.some((l) => l.msg.startsWith('assignment not answered in time')), 10_000);
  const job = async () => {
    const q = await call(s.nc, subjects.schedQuery(s.site), codecs.queryRequest, { v, what: 'job', jobId }, codecs.queryReply);
    assert.ok('job' in q);
    return q.job;
  };
  assert.deepEqual((await job()).frames.map((f) => [f.state, f.host]), [['running', 'h']], 'not requeued on the timeout alone');
  assert.equal(s.assigned.length, 1);
  // no lease report ever comes from h: after three report periods its lease expires and the task goes out again
  await waitUntil('the task assigned again', () => s.assigned.length === 2, 15_000);
  assert.equal(s.assigned[1]!.taskId, s.assigned[0]!.taskId);
});

test('scheduler - a task of several frames is one dispatched and one done event naming them all, with their outputs', async (t) => {
  const s = await setup(t, 1);
  const events: FrameEvent[] = [];
  s.nc.subscribe(`rb.${s.site}.evt.frame.>`, { callback: (_e, m) => void events.push({ ...codecs.frameEvent.decode(m.data), subject: m.subject } as FrameEvent) });
  const { jobId } = await s.submit({ frames: '1-5', chunk: 3 });
  await waitUntil('the first task', () => s.assigned.length === 1);
  const first = s.assigned[0]!;
  assert.deepEqual(first.frames, [1, 2, 3]);
  await s.result(first, { outputs: [1, 2, 3].map((f) => ({ frame: f, path: `/out/shot/f${f}.exr` })), want: 0, wantNext: false });
  await waitUntil('the done event', () => events.some((e) => e.event === 'done'));
  const seen = events.map((e) => [(e as { subject?: string }).subject, e.event, e.frame, e.frames]);
  assert.deepEqual(seen.filter(([, ev]) => ev === 'dispatched')[0], [`rb.${s.site}.evt.frame.${jobId}.1.dispatched`, 'dispatched', 1, [1, 2, 3]]);
  const done = events.filter((e) => e.event === 'done');
  assert.equal(done.length, 1, 'one done event for the task');
  assert.deepEqual(eventFrames(done[0]!), [1, 2, 3].map((f) => ({ frame: f, output: `/out/shot/f${f}.exr` })));
});
