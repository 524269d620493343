import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { call } from '../../actors/bus/index.ts';
import { startRegistry } from '../../actors/registry/index.ts';
import { startSimulatedFarm } from '../../actors/render-server/index.ts';
import { startScheduler } from '../../actors/scheduler/index.ts';
import { ANY_HOST, codecs, decodeAny, PROTOCOL_MAJOR as v, Role, subjects, type FrameEvent } from '../../protocol/index.ts';
import { silentLogger } from '../../sites/logger.ts';
import { runScale, scaleSection } from '../../tools/bench/scheduler-scale.ts';
import { TEST_OPERATOR, waitUntil } from '../helpers/farm.ts';
import { startNatsServer, type TestNats } from '../helpers/nats-server.ts';

/** The test's own connection (an operator), the registry's, the scheduler's and the simulated farm's (a render server for any host). */
async function farmConnections(nats: TestNats, site: string) {
  return Promise.all([
    nats.connectAs(site, Role.Operator, TEST_OPERATOR),
    nats.connectAs(site, Role.Registry),
    nats.connectAs(site, Role.Scheduler),
    nats.connectAs(site, Role.RenderServer, ANY_HOST),
  ]);
}

const HOSTS = 50;
const SLOTS = 4;
const FRAMES = 2_000;
const FRAME_MS = 20;

test('sim-farm - 50 simulated hosts × 4 slots render a 2,000-frame job against the real registry and scheduler: every frame done exactly once', async (t) => {
  const nats = await startNatsServer();
  const site = `t${randomUUID().slice(0, 8)}`;
  const conns = await farmConnections(nats, site);
  const [nc, regNc, schedNc, farmNc] = conns;
  const log = silentLogger();
  const registry = await startRegistry({ nc: regNc, site, log, announceMs: 500 });
  const scheduler = await startScheduler({ nc: schedNc, site, log });
  const farm = startSimulatedFarm({ nc: farmNc, site, log, hosts: HOSTS, slots: SLOTS, frameMs: FRAME_MS, jitter: 0.5, heartbeatMs: 1_000, spreadMs: 0, hostPrefix: 'sim-' });
  t.after(async () => {
    await scheduler.stop();
    await farm.stop({ abandon: true });
    await registry.stop();
    for (const c of conns) await c.close().catch(() => {});
    await nats.stop();
  });
  await farm.ready;
  await waitUntil('every simulated host to register', async () => {
    const b = await call(nc, subjects.regList(site), codecs.listRequest, { v }, codecs.listReply, { timeoutMs: 1_000 });
    return b.hosts.length === HOSTS && b.hosts.every((h) => h.slots.length === SLOTS && h.inventory.machine.type === 'simulated');
  }, 20_000);

  const ended = new Map<number, FrameEvent[]>();
  const dispatched: FrameEvent[] = [];
  nc.subscribe(`rb.${site}.evt.frame.>`, {
    callback: (_e, m) => {
      const evt = decodeAny(m.data) as FrameEvent;
      if (evt.event === 'dispatched') dispatched.push(evt);
      if (evt.event === 'done' || evt.event === 'failed') ended.set(evt.frame, [...(ended.get(evt.frame) ?? []), evt]);
    },
  });
  await nc.flush();
  const { jobId } = await call(nc, subjects.schedSubmit(site, TEST_OPERATOR), codecs.submitRequest, {
    v, spec: { name: 'sim', scene: '/scenes/sim.pov', renderer: 'command', command: 'true', frames: `1-${FRAMES}`, output: { dir: '/renders/sim', pattern: 'sim_####.exr' } },
  }, codecs.submitReply);
  const job = await waitUntil('the job to be done', async () => {
    const b = await call(nc, subjects.schedQuery(site), codecs.queryRequest, { v, what: 'job', jobId }, codecs.queryReply, { timeoutMs: 2_000 });
    return 'job' in b && ['done', 'failed', 'cancelled'].includes(b.job.state) ? b.job : undefined;
  }, 60_000, 100);
  await waitUntil('the last frame events', () => ended.size === FRAMES, 5_000, 20).catch(() => {});

  assert.equal(job.state, 'done');
  assert.deepEqual(job.counts, { total: FRAMES, queued: 0, running: 0, done: FRAMES, failed: 0 });
  // every frame ended done exactly once, its result taken from a simulated slot (a frame whose
  // lease was lost, on a machine too busy for the 1 s lease reports, may render twice: the late
  // result is stale and ends nothing)
  assert.equal(ended.size, FRAMES, 'frames with an end event');
  for (const [frame, evts] of ended) {
    assert.equal(evts.length, 1, `frame ${frame} ended ${evts.length} times`);
    assert.equal(evts[0]!.event, 'done');
  }
  assert.ok(farm.stats.framesDone >= FRAMES, `the simulated slots rendered ${farm.stats.framesDone} frames`);
  assert.equal(farm.stats.failed + farm.stats.returned + farm.stats.resultsDropped, 0);
  assert.equal(new Set(dispatched.map((e) => e.frame)).size, FRAMES, 'every frame dispatched');
  for (const f of job.frames) {
    assert.equal(f.state, 'done');
    assert.match(f.host ?? '', /^sim-\d+$/);
    assert.equal(f.output, `/renders/sim/sim_${String(f.frame).padStart(4, '0')}.exr`);
    assert.ok(f.stats && f.stats.wallMs >= FRAME_MS * 0.5 - 5 && f.stats.cpuMs <= f.stats.wallMs, `frame ${f.frame} stats ${JSON.stringify(f.stats)}`);
  }
  // the work spread over the farm, and slots went from one task to the next without a dispatch round
  assert.ok(new Set(job.frames.map((f) => f.host)).size > HOSTS / 2, 'frames spread over the hosts');
  assert.ok(farm.stats.startedFrom.hand + farm.stats.startedFrom.reply > FRAMES / 2, `tasks came with results: ${JSON.stringify(farm.stats.startedFrom)}`);
  // a slot goes idle when the reply to its last result arrives, which may come just after the job's end is told
  await waitUntil('every slot idle at the end', () => farm.stats.busy === 0, 5_000, 20).catch(() => {});
  assert.equal(farm.stats.busy, 0, 'every slot idle at the end');
});

// 949 bytes each with 16 idle slots: 1,200 of them do not fit a 1 MiB message
const HOSTS_WIDE = 1_200;

test('sim-farm - with more idle hosts than one message holds (1,200 × 16 slots), reg.match answers the most free that fit, and the scheduler dispatches', async (t) => {
  const nats = await startNatsServer();
  const site = `t${randomUUID().slice(0, 8)}`;
  const conns = await farmConnections(nats, site);
  const [nc, regNc, schedNc, farmNc] = conns;
  const log = silentLogger();
  const registry = await startRegistry({ nc: regNc, site, log });
  const farm = startSimulatedFarm({ nc: farmNc, site, log, hosts: HOSTS_WIDE, slots: 16, frameMs: 60_000, heartbeatMs: 5_000, spreadMs: 0 });
  let scheduler: Awaited<ReturnType<typeof startScheduler>> | undefined;
  t.after(async () => {
    await scheduler?.stop(); // first: the hosts' running tasks need not go back through it
    await farm.stop({ abandon: true });
    await registry.stop();
    for (const c of conns) await c.close().catch(() => {});
    await nats.stop();
  });
  const up = new Set<string>();
  nc.subscribe(`rb.${site}.evt.host.*.up`, { callback: (_e, m) => void up.add(m.subject.split('.')[4]!) });
  await farm.ready;
  await waitUntil('every simulated host to register', () => up.size === HOSTS_WIDE, 30_000);

  const m = await nc.request(subjects.regMatch(site), codecs.matchRequest.encode({ v, requirements: {}, freeOnly: true }), { timeout: 5_000 });
  assert.ok(m.data.length <= 1024 * 1024, `reply of ${m.data.length} bytes`);
  const env = codecs.matchReply.decode(m.data);
  assert.ok(env.ok);
  assert.equal(env.body.totalHosts, HOSTS_WIDE);
  assert.ok(env.body.hosts.length > 900 && env.body.hosts.length < HOSTS_WIDE, `${env.body.hosts.length} hosts in the reply`);
  assert.ok(env.body.hosts.every((h) => h.free === 16));

  // before, the registry could not send such a reply, and the scheduler dispatched nothing at all
  scheduler = await startScheduler({ nc: schedNc, site, log });
  const dispatched = new Set<string>();
  nc.subscribe(subjects.allFrameEvents(site, 'dispatched'), { callback: (_e, m) => void dispatched.add(m.subject.split('.')[5]!) });
  await call(nc, subjects.schedSubmit(site, TEST_OPERATOR), codecs.submitRequest, {
    v, spec: { name: 'wide', scene: '/scenes/wide.pov', renderer: 'command', command: 'true', frames: '1-2000', output: { dir: '/renders/wide' } },
  }, codecs.submitReply);
  await waitUntil('every frame to be dispatched and started', () => dispatched.size === 2_000 && farm.stats.busy >= 2_000, 30_000, 100);
});

test('sim-farm - the scale benchmark in its small mode: registry, scheduler and sim-farm processes, every figure measured', async () => {
  const lines: string[] = [];
  const r = await runScale({ hosts: 20, slots: 4, frames: 4_000, jobs: 20, frameMs: 100, seconds: 3, heartbeatS: 1, simNice: 0, say: (l) => lines.push(l) });
  const why = lines.join('\n');
  assert.equal(r.submit.concurrency, 1);
  assert.ok(r.submit.jobsPerS > 0 && r.submit.framesPerS > r.submit.jobsPerS, why);
  assert.ok(r.memory.queuedKb > 0 && Number.isFinite(r.memory.bytesPerFrame), why);
  assert.equal(r.jobsQuery.idle.length, 10);
  assert.ok(r.jobsQuery.loaded.length > 0, why);
  assert.notEqual(r.fill.seconds, null, why);
  assert.ok(r.sustained.perS > 0 && r.sustained.framesDone > 0, why);
  assert.ok(r.sustained.wait.n > 0 && r.sustained.resultRtt.n > 0, why);
  assert.ok(r.cpu.scheduler! > 0 && r.cpu['sim-farm']! > 0, why);
  const section = scaleSection(r, 'test machine');
  assert.match(section, /^## Scheduler at scale \(issue 4\): test machine/);
  assert.match(section, /sustained dispatch rate/);
});
