import { detectSandbox } from '../../actors/render-slot/index.ts';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import type { Msg, NatsConnection } from '@nats-io/transport-node';
import { call } from '../../actors/bus/index.ts';
import { listAllHosts, startRegistry } from '../../actors/registry/index.ts';
import { startRenderServer } from '../../actors/render-server/index.ts';
import { startScheduler } from '../../actors/scheduler/index.ts';
import { waitUntil } from '../../tools/lib/wait-until.ts';
import {
  ANY_HOST, Role, codecs, encodeAny, eventFrames, PROTOCOL_MAJOR, subjects,
  type FrameEvent, type HostEvent, type HostHeartbeat, type HostRegister, type TaskAssignment, type TaskResult,
} from '../../protocol/index.ts';
import { silentLogger } from '../../sites/logger.ts';
import { startNatsServer } from '../helpers/nats-server.ts';
import { aTaskAssignment } from '../helpers/builders.ts';

const v = PROTOCOL_MAJOR;

async function until<T>(what: string, probe: () => T | undefined | null | false, timeoutMs = 8_000): Promise<T> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    const x = probe();
    if (x) return x;
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A real nats-server, a client for the test, a unique site and a scratch dir. */
async function farm(t: TestContext) {
  const nats = await startNatsServer();
  const site = `t${randomUUID().slice(0, 8)}`;
  // the test plays the scheduler (nc), the registry (regNc) and an operator watching (opNc); the
  // render server under test holds a credential for any host, as each test names its own.
  // Each new credential reloads the server: all are issued before the first connection, so no
  // reload happens under a live one (a render-server test once got an Authorization Violation)
  await Promise.all([nats.creds(site, Role.Scheduler), nats.creds(site, Role.Registry), nats.creds(site, Role.Operator, 'op'), nats.creds(site, Role.RenderServer, ANY_HOST)]);
  const nc = await nats.connectAs(site, Role.Scheduler);
  const regNc = await nats.connectAs(site, Role.Registry);
  const opNc = await nats.connectAs(site, Role.Operator, 'op');
  const serverNc = await nats.connectAs(site, Role.RenderServer, ANY_HOST, { name: 'render-server-under-test' });
  const dir = await mkdtemp(join(tmpdir(), 'rb-rs-'));
  t.after(async () => {
    await serverNc.drain().catch(() => {});
    for (const c of [nc, regNc, opNc]) await c.drain().catch(() => {});
    await nats.stop();
    await rm(dir, { recursive: true, force: true });
  });
  await mkdir(join(dir, 'scenes'));
  const scene = join(dir, 'scenes', 'shot.scene');
  await writeFile(scene, 'scene');
  return { nc, regNc, opNc, serverNc, site, dir, scene, out: join(dir, 'out'), url: nats.url, nats };
}

/** The registry side, answered by hand: records what the render server says. */
function fakeRegistry(nc: NatsConnection, site: string, o: { registryId: () => string; known?: (hb: HostHeartbeat) => boolean }) {
  const rec = { registers: [] as HostRegister[], heartbeats: [] as HostHeartbeat[], byes: 0 };
  nc.subscribe(subjects.allRegRegister(site), {
    callback: (_e, m) => {
      rec.registers.push(codecs.hostRegister.decode(m.data));
      m.respond(codecs.hostRegisterReply.encode({ v, ok: true, body: { registryId: o.registryId() } }));
    },
  });
  nc.subscribe(subjects.allRegHeartbeat(site), {
    callback: (_e, m) => {
      const hb = codecs.hostHeartbeat.decode(m.data);
      rec.heartbeats.push(hb);
      m.respond(codecs.hostHeartbeatReply.encode({ v, ok: true, body: { known: o.known ? o.known(hb) : true, registryId: o.registryId() } }));
    },
  });
  nc.subscribe(subjects.allRegBye(site), {
    callback: (_e, m) => {
      codecs.hostBye.decode(m.data);
      rec.byes++;
      m.respond(codecs.hostByeReply.encode({ v, ok: true, body: {} }));
    },
  });
  return rec;
}

/** The scheduler side: takes results and answers each with what `next` returns. */
function fakeScheduler(
  nc: NatsConnection,
  site: string,
  next: (r: TaskResult) => TaskAssignment | null | { next: TaskAssignment | null; following: TaskAssignment | null } = () => null,
) {
  const results: TaskResult[] = [];
  const sub = nc.subscribe(subjects.allSchedResults(site), {
    callback: (_e, m: Msg) => {
      const r = codecs.taskResult.decode(m.data);
      results.push(r);
      const n = next(r);
      const body = n && 'following' in n ? n : { next: n };
      m.respond(codecs.taskResultReply.encode({ v, ok: true, body }));
    },
  });
  return { results, sub };
}

function events(nc: NatsConnection, site: string) {
  const frames: FrameEvent[] = [];
  const slots: HostEvent[] = [];
  nc.subscribe(subjects.jobFrameEvents(site, 'j1'), { callback: (_e, m) => void frames.push(codecs.frameEvent.decode(m.data)) });
  nc.subscribe(subjects.allHostSlotEvents(site), { callback: (_e, m) => void slots.push(codecs.hostEvent.decode(m.data)) });
  return { frames, slots };
}

async function assign(nc: NatsConnection, site: string, host: string, assignments: TaskAssignment[]) {
  const m = await nc.request(subjects.hostAssign(site, host), codecs.assignRequest.encode({ v, host, assignments }), { timeout: 3_000 });
  return codecs.assignReply.decode(m.data);
}

const aTask = (o: Partial<TaskAssignment> & Pick<TaskAssignment, 'scene' | 'outputDir'>): TaskAssignment => aTaskAssignment(o);

test('render-server - registers, heartbeats, and registers again for a new registry or when forgotten', async (t) => {
  const f = await farm(t);
  let registryId = 'r1';
  let forget = false;
  // the render server starts before any registry exists
  const rs = await startRenderServer({
    nc: f.serverNc, site: f.site, host: 'node-1', slots: 2, log: silentLogger(), heartbeatMs: 150,
    packages: [{ name: 'povray', version: '3.7.0.10' }], licenses: ['maya'],
  });
  t.after(() => rs.stop());
  assert.equal(rs.host, 'node-1');
  // the packages given, and the sandbox when this host can run one (probed, not given)
  const box = await detectSandbox();
  assert.deepEqual(rs.inventory.packages, [{ name: 'povray', version: '3.7.0.10' }, ...(box ? [{ name: 'sandbox', version: box.version }] : [])]);
  assert.deepEqual(rs.inventory.licenses, ['maya']);
  assert.equal(rs.inventory.os.type, 'linux');
  assert.ok(rs.inventory.cpu.count >= 1 && rs.inventory.ramMb > 0);
  await new Promise((r) => setTimeout(r, 300));
  // forgets the server for exactly one heartbeat once `forget` is set
  const reg = fakeRegistry(f.regNc, f.site, {
    registryId: () => registryId,
    known: () => {
      if (!forget) return true;
      forget = false;
      return false;
    },
  });
  const first = await until('registration', () => reg.registers[0]);
  assert.equal(first.host, 'node-1');
  assert.equal(first.heartbeatMs, 150);
  assert.deepEqual(first.inventory, rs.inventory);
  assert.deepEqual(first.slots.map((s) => [s.index, s.state]), [[0, 'idle'], [1, 'idle']]);
  await until('two heartbeats', () => reg.heartbeats.length >= 2);
  const hb = reg.heartbeats[0]!;
  assert.equal(hb.serverId, first.serverId);
  assert.equal(hb.slots.length, 2);
  assert.equal(typeof hb.load, 'number');
  assert.equal(reg.registers.length, 1);

  // the registry restarted: its hello carries a new id
  registryId = 'r2';
  f.regNc.publish(subjects.regHello(f.site), codecs.regHello.encode({ v, registryId: 'r2', at: Date.now(), announceMs: 1000 }));
  await until('registration with the new registry', () => reg.registers.length === 2);
  // the same id again changes nothing
  f.regNc.publish(subjects.regHello(f.site), codecs.regHello.encode({ v, registryId: 'r2', at: Date.now(), announceMs: 1000 }));
  const beats = reg.heartbeats.length;
  await until('more heartbeats', () => reg.heartbeats.length >= beats + 2);
  assert.equal(reg.registers.length, 2);

  // a heartbeat answered known: false
  forget = true;
  await until('registration after being forgotten', () => reg.registers.length >= 3);
  assert.equal(reg.registers[2]!.serverId, first.serverId);

  await rs.stop();
  assert.equal(reg.byes, 1);
});

test('render-server - runs an assignment, sends its result and starts the next task the reply carries', async (t) => {
  const f = await farm(t);
  fakeRegistry(f.regNc, f.site, { registryId: () => 'r1' });
  const evts = events(f.opNc, f.site);
  const taskA = aTask({ scene: f.scene, outputDir: f.out, frames: [1, 2] });
  const taskB = aTask({ scene: f.scene, outputDir: f.out, frames: [3] });
  const sched = fakeScheduler(f.nc, f.site, (r) => (r.taskId === taskA.taskId ? taskB : null));
  const rs = await startRenderServer({ nc: f.serverNc, site: f.site, host: 'node-2', slots: 2, log: silentLogger(), heartbeatMs: 500 });
  t.after(() => rs.stop());
  await f.nc.flush();
  const reply = await assign(f.nc, f.site, 'node-2', [taskA]);
  assert.deepEqual(reply, { v, ok: true, body: { accepted: [taskA.taskId], rejected: [] } });

  await until('both results', () => sched.results.length === 2);
  const [ra, rb] = sched.results;
  assert.equal(ra!.taskId, taskA.taskId);
  assert.equal(ra!.status, 'done');
  assert.equal(ra!.host, 'node-2');
  assert.equal(ra!.slot, 0);
  assert.equal(ra!.wantNext, true);
  assert.deepEqual(ra!.outputs, [{ frame: 1, path: join(f.out, 'f_0001.txt') }, { frame: 2, path: join(f.out, 'f_0002.txt') }]);
  assert.equal(ra!.stats.bytesWritten, 2);
  assert.ok(ra!.stats.wallMs > 0);
  assert.equal(rb!.taskId, taskB.taskId);
  assert.equal(rb!.status, 'done');
  assert.equal(await readFile(join(f.out, 'f_0003.txt'), 'utf8'), '3');

  const slot0 = () => evts.slots.filter((e) => e.slot?.index === 0).map((e) => `${e.slot!.state}:${e.slot!.taskId ?? ''}`);
  await until('slot 0 idle after task B', () => slot0().includes('idle:'));
  // slot events go out on changes of state only: busy with A, B taken over without an idle in
  // between (its frame's started event says so), then idle
  assert.deepEqual(slot0().slice(-2), [`busy:${taskA.taskId}`, 'idle:']);
  // one started event per task, naming the task's frames
  const started = evts.frames.filter((e) => e.event === 'started');
  assert.deepEqual(started.map((e) => eventFrames(e).map((f) => f.frame)), [[1, 2], [3]]);
  for (const e of started) {
    assert.equal(e.host, 'node-2');
    assert.equal(e.slot, 0);
    assert.equal(typeof e.waitMs, 'number');
  }
  // B reached the slot in the reply to A's result: its wait is that round trip, not the slot's life
  assert.ok(started[1]!.waitMs! < started[0]!.waitMs! + 1_000, `waits ${started.map((e) => e.waitMs).join(', ')}`);
  assert.ok(started[1]!.waitMs! < 1_000);
});

test('render-server - rejects busy and unknown slots, answers malformed requests with an error, hands its task back on stop', async (t) => {
  const f = await farm(t);
  const reg = fakeRegistry(f.regNc, f.site, { registryId: () => 'r1' });
  const sched = fakeScheduler(f.nc, f.site);
  const rs = await startRenderServer({ nc: f.serverNc, site: f.site, host: 'node-3', slots: 2, log: silentLogger(), heartbeatMs: 500 });
  await until('registration', () => reg.registers.length === 1);
  const long = aTask({ scene: f.scene, outputDir: f.out, command: 'sleep 30' });
  const other = aTask({ scene: f.scene, outputDir: f.out });
  const nowhere = aTask({ scene: f.scene, outputDir: f.out, slot: 9 });
  assert.deepEqual((await assign(f.nc, f.site, 'node-3', [long])).ok, true);
  const r = await assign(f.nc, f.site, 'node-3', [long, other, nowhere]);
  assert.ok(r.ok);
  assert.deepEqual(r.body.accepted, [long.taskId]); // the same assignment again is not an error
  assert.deepEqual(r.body.rejected.map((x) => [x.taskId, x.code]), [[other.taskId, 'RB_SLOT_BUSY'], [nowhere.taskId, 'RB_NO_SUCH_SLOT']]);
  assert.match(r.body.rejected[0]!.message, new RegExp(`slot 0 of node-3 is busy with task ${long.taskId.replace('.', '\\.')}`));
  assert.match(r.body.rejected[1]!.message, /slots 0 to 1, not 9/);

  const garbage = codecs.assignReply.decode((await f.nc.request(subjects.hostAssign(f.site, 'node-3'), new Uint8Array([0xc1, 0x00]), { timeout: 3_000 })).data);
  assert.ok(!garbage.ok);
  assert.equal(garbage.error.code, 'RB_DECODE_FAILED');
  const wrong = codecs.assignReply.decode((await f.nc.request(subjects.hostAssign(f.site, 'node-3'), encodeAny({ v, host: 'node-3', assignments: [{ taskId: 'x' }] }), { timeout: 3_000 })).data);
  assert.ok(!wrong.ok);
  assert.equal(wrong.error.code, 'RB_SCHEMA_MISMATCH');
  assert.match(wrong.error.message, /assignments/);
  const elsewhere = await f.nc.request(subjects.hostAssign(f.site, 'node-3'), codecs.assignRequest.encode({ v, host: 'node-4', assignments: [other] }), { timeout: 3_000 });
  const e3 = codecs.assignReply.decode(elsewhere.data);
  assert.ok(!e3.ok && e3.error.code === 'RB_UNKNOWN_HOST');

  // stop: the running task is stopped and handed back, then the server says bye
  const t0 = performance.now();
  await rs.stop();
  assert.ok(performance.now() - t0 < 8_000);
  assert.equal(sched.results.length, 1);
  assert.equal(sched.results[0]!.taskId, long.taskId);
  assert.equal(sched.results[0]!.status, 'returned', 'handed back: another slot renders it, no attempt used');
  assert.deepEqual(sched.results[0]!.error, { code: 'RB_DRAINING', message: 'task killed: the render server is stopping' });
  assert.equal(reg.byes, 1);
  // and it no longer answers
  await assert.rejects(assign(f.nc, f.site, 'node-3', [other]));
});

test('render-server - holds a result until the scheduler is back', async (t) => {
  const f = await farm(t);
  fakeRegistry(f.regNc, f.site, { registryId: () => 'r1' });
  const rs = await startRenderServer({ nc: f.serverNc, site: f.site, host: 'node-5', slots: 1, log: silentLogger(), heartbeatMs: 500 });
  t.after(() => rs.stop());
  const task = aTask({ scene: f.scene, outputDir: f.out });
  assert.ok((await assign(f.nc, f.site, 'node-5', [task])).ok);
  // the task ends (its frame is stored) while nobody takes sched.result: the result must not be lost
  await until('the task to end with no scheduler', () => existsSync(join(f.out, 'f_0001.txt')));
  const sched = fakeScheduler(f.nc, f.site);
  await until('the held result', () => sched.results.length === 1, 6_000);
  assert.equal(sched.results[0]!.taskId, task.taskId);
  assert.equal(sched.results[0]!.status, 'done');
});

test('render-server - drains: refuses new work and asks for no next task', async (t) => {
  const f = await farm(t);
  const reg = fakeRegistry(f.regNc, f.site, { registryId: () => 'r1' });
  const sched = fakeScheduler(f.nc, f.site);
  const rs = await startRenderServer({ nc: f.serverNc, site: f.site, host: 'node-6', slots: 2, log: silentLogger(), heartbeatMs: 100 });
  t.after(() => rs.stop());
  await until('registration', () => reg.registers.length === 1);
  const slow = aTask({ scene: f.scene, outputDir: f.out, command: `sh -c 'sleep 0.5; printf x > {output}'` });
  assert.ok((await assign(f.nc, f.site, 'node-6', [slow])).ok);
  const ctl = await f.opNc.request(subjects.hostCtl(f.site, 'node-6'), codecs.hostCtl.encode({ v, action: 'drain' }), { timeout: 3_000 });
  assert.deepEqual(codecs.hostCtlReply.decode(ctl.data), { v, ok: true, body: { host: 'node-6', action: 'drain' } });
  const r = await assign(f.nc, f.site, 'node-6', [aTask({ scene: f.scene, outputDir: f.out, slot: 1 })]);
  assert.ok(r.ok);
  assert.equal(r.body.rejected[0]!.code, 'RB_DRAINING');
  await until('the result', () => sched.results.length === 1);
  assert.equal(sched.results[0]!.status, 'done');
  assert.equal(sched.results[0]!.wantNext, false);
  await until('a draining heartbeat', () => reg.heartbeats.some((h) => h.draining === true));
});

test('render-server - undrain: takes work again, says so in heartbeats and slot events; refused while it stops', async (t) => {
  const f = await farm(t);
  const reg = fakeRegistry(f.regNc, f.site, { registryId: () => 'r1' });
  const sched = fakeScheduler(f.nc, f.site);
  const evts = events(f.opNc, f.site);
  const hostEvents: HostEvent[] = [];
  f.opNc.subscribe(subjects.allHostEvents(f.site), { callback: (_e, m) => void hostEvents.push(codecs.hostEvent.decode(m.data)) });
  const rs = await startRenderServer({ nc: f.serverNc, site: f.site, host: 'node-6u', slots: 2, log: silentLogger(), heartbeatMs: 100 });
  t.after(() => rs.stop());
  await until('registration', () => reg.registers.length === 1);
  const ctl = async (action: 'drain' | 'undrain') => codecs.hostCtlReply.decode((await f.opNc.request(subjects.hostCtl(f.site, 'node-6u'), codecs.hostCtl.encode({ v, action }), { timeout: 3_000 })).data);

  assert.deepEqual(await ctl('undrain'), { v, ok: true, body: { host: 'node-6u', action: 'undrain' } }, 'a server that is not draining: nothing to do');
  assert.deepEqual(await ctl('drain'), { v, ok: true, body: { host: 'node-6u', action: 'drain' } });
  await until('draining slot events', () => evts.slots.filter((e) => e.slot?.state === 'draining').length === 2);
  const refused = await assign(f.nc, f.site, 'node-6u', [aTask({ scene: f.scene, outputDir: f.out })]);
  assert.ok(refused.ok);
  assert.equal(refused.body.rejected[0]!.code, 'RB_DRAINING', 'no work is taken while draining');
  await until('a draining heartbeat', () => reg.heartbeats.at(-1)?.draining === true && reg.heartbeats.at(-1)!.slots.every((x) => x.state === 'draining'));

  const beatsBefore = reg.heartbeats.length;
  const t0 = performance.now();
  assert.deepEqual(await ctl('undrain'), { v, ok: true, body: { host: 'node-6u', action: 'undrain' } });
  await until('idle slot events', () => evts.slots.filter((e) => e.slot?.state === 'idle').length === 2);
  const beat = await until('a heartbeat that is not draining', () => reg.heartbeats.slice(beatsBefore).find((h) => h.draining === false));
  assert.ok(beat.slots.every((x) => x.state === 'idle'), JSON.stringify(beat.slots));
  assert.ok(performance.now() - t0 < 1_000);
  assert.deepEqual(hostEvents.filter((e) => e.event !== 'slot').map((e) => e.event), ['draining', 'undrained']);

  // it takes work again, and asks for more after it
  const task = aTask({ scene: f.scene, outputDir: f.out });
  const taken = await assign(f.nc, f.site, 'node-6u', [task]);
  assert.ok(taken.ok);
  assert.deepEqual(taken.body.accepted, [task.taskId]);
  await until('the result', () => sched.results.length === 1);
  assert.equal(sched.results[0]!.status, 'done', sched.results[0]!.error?.message);
  assert.equal(sched.results[0]!.wantNext, true);
  assert.equal(await readFile(join(f.out, 'f_0001.txt'), 'utf8'), '1');

  // stopping (a grace period for the running task): undrain is refused
  const slow = aTask({ scene: f.scene, outputDir: f.out, command: `sh -c 'sleep 1; printf x > {output}'`, frames: [2] });
  assert.ok((await assign(f.nc, f.site, 'node-6u', [slow])).ok);
  const stopping = rs.stop({ graceMs: 10_000 });
  const no = await ctl('undrain');
  assert.ok(!no.ok);
  assert.equal(no.error.code, 'RB_DRAINING');
  assert.match(no.error.message, /render server node-6u is stopping: a server that is stopping cannot be undrained/);
  await stopping;
  assert.equal(sched.results.find((r) => r.taskId === slow.taskId)?.status, 'done', 'the running task had its grace period');
});

test('render-server - drained, a job waits; undrained, the job renders on it (real registry and scheduler)', async (t) => {
  const f = await farm(t);
  const conns = await Promise.all([Role.Registry, Role.Scheduler].map((role) => f.nats.connectAs(f.site, role)));
  const log = silentLogger();
  const registry = await startRegistry({ nc: conns[0]!, site: f.site, log, announceMs: 200 });
  const scheduler = await startScheduler({ nc: conns[1]!, site: f.site, log });
  const rs = await startRenderServer({ nc: f.serverNc, site: f.site, host: 'node-6j', slots: 2, log, heartbeatMs: 200 });
  // stopped here, while nats-server still runs (the farm's own clean-up stops it first)
  try {
    await drainedThenUndrained(f, rs.host);
  } finally {
    await rs.stop();
    await scheduler.stop();
    await registry.stop();
    for (const c of conns) await c.drain().catch(() => {});
  }
});

async function drainedThenUndrained(f: Awaited<ReturnType<typeof farm>>, host: string): Promise<void> {
  const record = async () => (await listAllHosts(f.opNc, f.site, { timeoutMs: 1_000 })).hosts.find((h) => h.host === host);
  await waitUntil('the render server to register', record, 10_000);
  const ctl = async (action: 'drain' | 'undrain') => call(f.opNc, subjects.hostCtl(f.site, host), codecs.hostCtl, { v, action }, codecs.hostCtlReply);

  await ctl('drain');
  await waitUntil('the registry to mark it draining', async () => (await record())?.draining === true, 5_000);
  const { jobId } = await call(f.opNc, subjects.schedSubmit(f.site, 'op'), codecs.submitRequest, {
    v, spec: { name: 'undrain', scene: f.scene, renderer: 'command', command: `sh -c 'printf {frame} > {output}'`, frames: '1-4', output: { dir: f.out, pattern: 'u_####.txt' } },
  }, codecs.submitReply);
  const job = async () => {
    const b = await call(f.opNc, subjects.schedQuery(f.site), codecs.queryRequest, { v, what: 'job', jobId }, codecs.queryReply, { timeoutMs: 2_000 });
    assert.ok('job' in b);
    return b.job;
  };
  // a reason why it waits is set by a dispatch round that gave it no slot (none run in the adoption window)
  const waiting = await waitUntil('a dispatch round to pass the job over', async () => {
    const j = await job();
    return j.waiting !== undefined || j.frames.some((fr) => fr.host !== undefined) ? j : undefined;
  }, 15_000, 100);
  assert.equal(waiting.state, 'queued');
  assert.deepEqual(waiting.frames.filter((fr) => fr.startedAt !== undefined || fr.host !== undefined).map((fr) => fr.frame), [], 'no frame went to the drained host');

  const undrainedAt = Date.now();
  await ctl('undrain');
  await waitUntil('the registry to mark it working', async () => (await record())?.draining === false, 5_000);
  const done = await waitUntil('the job to render', async () => {
    const j = await job();
    return ['done', 'failed', 'cancelled'].includes(j.state) ? j : undefined;
  }, 15_000, 100);
  assert.equal(done.state, 'done');
  assert.deepEqual(done.frames.map((fr) => [fr.frame, fr.host]), [1, 2, 3, 4].map((n) => [n, host]));
  assert.ok(done.frames.every((fr) => fr.startedAt! >= undrainedAt - 50));
  assert.equal(await readFile(join(f.out, 'u_0003.txt'), 'utf8'), '3');
}

test('render-server - runs a real POV-Ray task and publishes progress', async (t) => {
  const f = await farm(t);
  fakeRegistry(f.regNc, f.site, { registryId: () => 'r1' });
  const sched = fakeScheduler(f.nc, f.site);
  const evts = events(f.opNc, f.site);
  const scene = join(f.dir, 'scenes', 'ball.pov');
  await writeFile(scene, '#version 3.7;\ncamera { location <0,1,-4> look_at 0 }\nlight_source { <3,5,-3> color rgb 1 }\nsphere { 0, 1 pigment { color rgb <clock/5, 0.5, 1> } }\n');
  const rs = await startRenderServer({ nc: f.serverNc, site: f.site, host: 'node-7', slots: 1, log: silentLogger() });
  t.after(() => rs.stop());
  const task = aTask({ scene, outputDir: f.out, renderer: 'povray', command: undefined, frames: [1, 2], outputPattern: 'ball_##.png', resolution: { width: 48, height: 32 } });
  assert.ok((await assign(f.nc, f.site, 'node-7', [task])).ok);
  await until('the result', () => sched.results.length === 1, 20_000);
  const res = sched.results[0]!;
  assert.equal(res.status, 'done', res.error?.message);
  assert.deepEqual(res.outputs.map((o) => o.path), [join(f.out, 'ball_01.png'), join(f.out, 'ball_02.png')]);
  assert.ok(res.stats.cpuMs > 0 && res.stats.peakRssKb > 0 && res.stats.bytesWritten > 0);
  const progress = evts.frames.filter((e) => e.event === 'progress');
  assert.ok(progress.length >= 1);
  assert.ok(progress.every((e) => e.jobId === 'j1' && typeof e.percent === 'number'));
});

test('render-server - kill-task on the control subject kills that task and reports it', async (t) => {
  const f = await farm(t);
  fakeRegistry(f.regNc, f.site, { registryId: () => 'r1' });
  const sched = fakeScheduler(f.nc, f.site);
  const rs = await startRenderServer({ nc: f.serverNc, site: f.site, host: 'node-8', slots: 1, log: silentLogger(), heartbeatMs: 500 });
  t.after(() => rs.stop());
  const long = aTask({ scene: f.scene, outputDir: f.out, command: 'sleep 30' });
  assert.ok((await assign(f.nc, f.site, 'node-8', [long])).ok);
  const ctl = async (taskId: string) => codecs.hostCtlReply.decode((await f.opNc.request(subjects.hostCtl(f.site, 'node-8'), codecs.hostCtl.encode({ v, action: 'kill-task', taskId }), { timeout: 3_000 })).data);
  const unknown = await ctl('j9.9');
  assert.ok(!unknown.ok);
  assert.equal(unknown.error.code, 'RB_NO_SUCH_SLOT');
  assert.match(unknown.error.message, /no slot of node-8 is running task 'j9\.9'/);
  const t0 = performance.now();
  assert.deepEqual(await ctl(long.taskId), { v, ok: true, body: { host: 'node-8', action: 'kill-task' } });
  await until('the killed result', () => sched.results.length === 1);
  assert.ok(performance.now() - t0 < 3_000);
  assert.deepEqual(sched.results[0]!.error, { code: 'RB_RENDER_FAILED', message: 'task killed: killed on request' });
  assert.equal(sched.results[0]!.wantNext, true);
});

test('render-server - bad options are refused with a clear error', async (t) => {
  const f = await farm(t);
  const base = { nc: f.serverNc, site: f.site, host: 'node-9', slots: 1, log: silentLogger() };
  const refused = (code: string, text: RegExp) => (e: unknown) => (e as { code?: string }).code === code && text.test((e as Error).message);
  await assert.rejects(startRenderServer({ ...base, host: 'Node 9' }), refused('RB_BAD_SUBJECT_TOKEN', /host 'Node 9' is not a subject token/));
  await assert.rejects(startRenderServer({ ...base, slots: 0 }), refused('RB_BAD_ARGUMENT', /slots must be a whole number from 1/));
  await assert.rejects(
    startRenderServer({ ...base, packages: [{ name: 'povray', version: '' }] }),
    refused('RB_BAD_ARGUMENT', /could not describe its host.*\/packages\/0\/version/),
  );
  // nothing was left serving
  await assert.rejects(assign(f.nc, f.site, 'node-9', [aTask({ scene: f.scene, outputDir: f.out })]));
});

test('render-server - a task held in hand starts the moment the previous one ends; that result goes out meanwhile', async (t) => {
  const f = await farm(t);
  fakeRegistry(f.regNc, f.site, { registryId: () => 'r1' });
  const evts = events(f.opNc, f.site);
  const taskA = aTask({ scene: f.scene, outputDir: f.out, frames: [1] });
  const taskB = aTask({ scene: f.scene, outputDir: f.out, frames: [2] });
  const taskC = aTask({ scene: f.scene, outputDir: f.out, frames: [3] });
  const taskD = aTask({ scene: f.scene, outputDir: f.out, frames: [4] });
  const sched = fakeScheduler(f.nc, f.site, (r) => {
    if (r.taskId === taskA.taskId) return { next: taskB, following: taskC }; // B now, C in hand
    if (r.taskId === taskB.taskId) return taskD; // B's result went out while C ran: D goes in hand
    return null;
  });
  const rs = await startRenderServer({ nc: f.serverNc, site: f.site, host: 'node-3', slots: 1, log: silentLogger(), heartbeatMs: 500 });
  t.after(() => rs.stop());
  await Promise.all([f.nc.flush(), f.opNc.flush()]);
  await assign(f.nc, f.site, 'node-3', [taskA]);
  await until('four results', () => sched.results.length === 4);
  assert.deepEqual(sched.results.map((r) => r.taskId), [taskA, taskB, taskC, taskD].map((x) => x.taskId));
  // A had nothing in hand: it asked for two; B and C ended with a task in hand: one each
  assert.deepEqual(sched.results.map((r) => r.want), [2, 1, 1, 2]);
  for (const [i, frame] of [1, 2, 3, 4].entries()) assert.equal(await readFile(join(f.out, `f_000${frame}.txt`), 'utf8'), String(frame), `task ${i}`);
  const started = evts.frames.filter((e) => e.event === 'started');
  assert.deepEqual(started.map((e) => e.frame), [1, 2, 3, 4]);
  assert.deepEqual(started.slice(2).map((e) => e.waitMs), [0, 0], 'held tasks start without waiting');
});
