import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { NatsConnection } from '@nats-io/transport-node';
import { call } from '../../actors/bus/index.ts';
import { startScheduler } from '../../actors/scheduler/index.ts';
import { silentLogger } from '../../sites/logger.ts';
import { codecs, PROTOCOL_MAJOR as v, Role, subjects, type HostCtl, type HostEvent, type JobEvent, type TaskAssignment, type TaskResult } from '../../protocol/index.ts';
import { aJobSpec, anInventory } from '../helpers/builders.ts';
import { startNatsServer } from '../helpers/nats-server.ts';
import { waitUntil } from '../helpers/farm.ts';

/** The real scheduler against a registry and two one-slot hosts, a and b, answered by hand. */
async function setup(t: { after: (fn: () => Promise<void>) => void }, now?: () => number) {
  const nats = await startNatsServer();
  const site = `s${randomUUID().slice(0, 8)}`;
  const regNc = await nats.connectAs(site, Role.Registry);
  const opNc = await nats.connectAs(site, Role.Operator, 'op');
  const schedNc = await nats.connectAs(site, Role.Scheduler);
  const names = ['a', 'b'] as const;
  regNc.subscribe(subjects.regMatch(site), {
    callback: (_e, m) => {
      const hosts = names.map((host) => ({ host, serverId: `srv-${host}`, inventory: anInventory(), slots: [{ index: 0, state: 'idle' as const }], free: 1 }));
      m.respond(codecs.matchReply.encode({ v, ok: true, body: { hosts, closest: [], totalHosts: 2 } }));
    },
  });
  const hosts = new Map<string, { nc: NatsConnection; assigned: TaskAssignment[]; ctl: HostCtl[] }>();
  for (const host of names) {
    const nc = await nats.connectAs(site, Role.RenderServer, host);
    const h = { nc, assigned: [] as TaskAssignment[], ctl: [] as HostCtl[] };
    nc.subscribe(subjects.hostAssign(site, host), {
      callback: (_e, m) => {
        const req = codecs.assignRequest.decode(m.data);
        h.assigned.push(...req.assignments);
        m.respond(codecs.assignReply.encode({ v, ok: true, body: { accepted: req.assignments.map((a) => a.taskId), rejected: [] } }));
      },
    });
    nc.subscribe(subjects.hostCtl(site, host), {
      callback: (_e, m) => {
        const ctl = codecs.hostCtl.decode(m.data);
        h.ctl.push(ctl);
        m.respond(codecs.hostCtlReply.encode({ v, ok: true, body: { host, action: ctl.action } }));
      },
    });
    await nc.flush();
    hosts.set(host, h);
  }
  const events: { subject: string; data: Uint8Array }[] = [];
  opNc.subscribe(`rb.${site}.evt.>`, { callback: (_e, m) => void events.push({ subject: m.subject, data: m.data }) });
  await Promise.all([regNc.flush(), opNc.flush()]);
  const sched = await startScheduler({ nc: schedNc, site, log: silentLogger(), ...(now ? { now } : {}) });
  t.after(async () => {
    await sched.stop();
    for (const c of [schedNc, regNc, opNc, ...[...hosts.values()].map((h) => h.nc)]) await c.close();
    await nats.stop();
  });
  const result = (host: string, a: TaskAssignment, over: Partial<TaskResult> = {}) =>
    call(hosts.get(host)!.nc, subjects.schedResult(site, host), codecs.taskResult, {
      v, host, slot: a.slot, taskId: a.taskId, jobId: a.jobId, taskIndex: a.taskIndex, attempt: a.attempt,
      status: 'done', outputs: [], stats: { wallMs: 5, cpuMs: 1, peakRssKb: 100, bytesWritten: 0 }, wantNext: false, ...over,
    }, codecs.taskResultReply);
  const submit = async (over: Parameters<typeof aJobSpec>[0]) =>
    (await call(opNc, subjects.schedSubmit(site, 'op'), codecs.submitRequest, { v, spec: aJobSpec({ renderer: 'command', command: 'true', ...over }) }, codecs.submitReply)).jobId;
  return { site, opNc, hosts, events, result, submit };
}

test('scheduler - a job failed for its broken scene: its failed event carries RB_JOB_FAILED, and the task running on the other host is killed', async (t) => {
  const s = await setup(t);
  const jobId = await s.submit({ frames: '1-4' });
  const a = s.hosts.get('a')!;
  const b = s.hosts.get('b')!;
  await waitUntil('a task on each host', () => a.assigned.length === 1 && b.assigned.length === 1);
  await s.result('a', a.assigned[0]!, { status: 'failed', error: { code: 'RB_SCENE_ERROR', message: "File 'shot.pov' line 3: Parse Error: Expected 'object'" } });
  const failed = await waitUntil('the failed event', () => {
    const e = s.events.find((x) => x.subject === subjects.jobEvent(s.site, jobId, 'failed'));
    return e ? codecs.jobEvent.decode(e.data) : undefined;
  });
  assert.equal(failed.job.state, 'failed');
  assert.equal(failed.job.error, "RB_JOB_FAILED: its scene is broken (a): RB_SCENE_ERROR: File 'shot.pov' line 3: Parse Error: Expected 'object'");
  assert.deepEqual(failed.failures, [{ frame: a.assigned[0]!.frames[0]!, error: "RB_SCENE_ERROR: File 'shot.pov' line 3: Parse Error: Expected 'object'" }]);
  const kill = await waitUntil('the kill on b', () => b.ctl.find((c) => c.action === 'kill-task'));
  assert.deepEqual([kill.taskId, kill.attempt], [b.assigned[0]!.taskId, b.assigned[0]!.attempt]);
  assert.equal(a.ctl.length, 0);
  const late = await s.result('b', b.assigned[0]!, { status: 'failed', error: { code: 'RB_RENDER_FAILED', message: 'task killed: its job failed' } });
  assert.equal(late.next, null, 'a failed job hands out nothing');
  assert.equal(a.assigned.length + b.assigned.length, 2, 'nothing more was dispatched');
});

test('scheduler - a host that cannot see the files of a job the other host renders goes sick, saying so; the frame uses no attempt and renders elsewhere', async (t) => {
  const s = await setup(t);
  const jobId = await s.submit({ frames: '1-2', maxAttempts: 1 });
  const a = s.hosts.get('a')!;
  const b = s.hosts.get('b')!;
  await waitUntil('a task on each host', () => a.assigned.length === 1 && b.assigned.length === 1);
  await s.result('b', b.assigned[0]!); // b sees the files
  await s.result('a', a.assigned[0]!, { status: 'failed', error: { code: 'RB_INPUT_NOT_FOUND', message: 'scene /scenes/shot.pov not found' } });
  const sick = await waitUntil('the sick event', () => {
    const e = s.events.find((x) => x.subject === subjects.hostEvent(s.site, 'a', 'sick'));
    return e ? (codecs.hostEvent.decode(e.data) as HostEvent) : undefined;
  });
  assert.match(sick.reason ?? '', new RegExp(`^cannot see the files of job ${jobId}, which other hosts render \\(RB_INPUT_NOT_FOUND: scene /scenes/shot.pov not found\\)$`));
  const listed = await call(s.opNc, subjects.opHosts(s.site), codecs.hostsRequest, { v, action: 'sick' }, codecs.hostsReply);
  assert.deepEqual(listed.sick.map((h) => h.host), ['a']);
  // the frame a could not render goes to b, with its one attempt still to use
  const again = await waitUntil('the frame on b', () => b.assigned.find((x) => x.taskIndex === a.assigned[0]!.taskIndex));
  assert.equal(again.attempt, 2);
  await s.result('b', again);
  await waitUntil('the job done', () => s.events.some((x) => x.subject === subjects.jobEvent(s.site, jobId, 'done')));
  const done = codecs.jobEvent.decode(s.events.find((x) => x.subject === subjects.jobEvent(s.site, jobId, 'done'))!.data) as JobEvent;
  assert.equal(done.job.counts.done, 2);
});

test('scheduler - a job after another starts after its end, even when the slot that takes it reported its result before the one that ended the first', async (t) => {
  // a clock that moves on at every reading, so two results are never read in the same millisecond
  let last = 0;
  const s = await setup(t, () => (last = Math.max(Date.now(), last + 1)));
  const first = await s.submit({ frames: '1-2' });
  const a = s.hosts.get('a')!;
  const b = s.hosts.get('b')!;
  await waitUntil('a task on each host', () => a.assigned.length === 1 && b.assigned.length === 1);
  const second = await s.submit({ frames: '9', after: [first] });
  // both slots report together and ask for their next task: the first result is written while the
  // second ends the job; the job after it goes to one of them
  const replies = await Promise.all([s.result('a', a.assigned[0]!, { want: 1 }), s.result('b', b.assigned[0]!, { want: 1 })]);
  const event = (jobId: string, kind: string) => waitUntil(`${jobId} ${kind}`, () => {
    const e = s.events.find((x) => x.subject === subjects.jobEvent(s.site, jobId, kind));
    return e ? codecs.jobEvent.decode(e.data).job : undefined;
  });
  const done = await event(first, 'done');
  const started = await event(second, 'started');
  assert.deepEqual(replies.flatMap((r) => (r.next ? [r.next.jobId] : [])), [second]); // handed in a result's reply
  assert.ok(started.startedAt! >= done.finishedAt!, `${second} started at ${started.startedAt}, before ${first} ended at ${done.finishedAt}`);
});
