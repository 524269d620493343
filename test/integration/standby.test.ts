import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { call } from '../../actors/bus/index.ts';
import { startRegistry } from '../../actors/registry/index.ts';
import { startSimulatedFarm } from '../../actors/render-server/index.ts';
import { ANY_HOST, codecs, decodeAny, PROTOCOL_MAJOR as v, Role, subjects, type FrameEvent } from '../../protocol/index.ts';
import { silentLogger } from '../../sites/logger.ts';
import { TEST_OPERATOR, waitUntil } from '../helpers/farm.ts';
import { startNatsServer, type TestNats } from '../helpers/nats-server.ts';

const CLI = resolve(import.meta.dirname, '../../tools/bin/renderbus.js');
const FRAMES = 60;
const FRAME_MS = 250;

/** `renderbus ARGS` on a site as `role`, without blocking this process (whose registry and hosts must go on meanwhile). */
async function runCli(nats: TestNats, site: string, role: Role, ...args: string[]) {
  const p = spawn(process.execPath, [CLI, ...args, '--nats', nats.url, '--site', site, '--creds', await nats.credsFile(site, role, role === Role.Operator ? TEST_OPERATOR : role)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  p.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  p.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const [code] = (await once(p, 'close')) as [number | null];
  return { code, stdout, stderr };
}

/** A site on one nats-server: a registry, 3 simulated hosts of 2 slots, and `renderbus scheduler` processes started by name. */
async function standbySite(t: { after: (fn: () => Promise<void>) => void }) {
  const nats = await startNatsServer();
  const site = `t${randomUUID().slice(0, 8)}`;
  const [nc, regNc, farmNc] = await Promise.all([
    nats.connectAs(site, Role.Operator, TEST_OPERATOR),
    nats.connectAs(site, Role.Registry),
    nats.connectAs(site, Role.RenderServer, ANY_HOST),
  ]);
  const credsFile = await nats.credsFile(site, Role.Scheduler);
  const log = silentLogger();
  const registry = await startRegistry({ nc: regNc, site, log, announceMs: 500 });
  const farm = startSimulatedFarm({ nc: farmNc, site, log, hosts: 3, slots: 2, frameMs: FRAME_MS, jitter: 0.2, heartbeatMs: 1_000, spreadMs: 0, hostPrefix: 'sim-' });
  const schedulers: ChildProcess[] = [];
  const startScheduler = async (name: string) => {
    const out = createWriteStream(join(nats.dir, `${name}.log`), { flags: 'a' });
    const p = spawn(process.execPath, [CLI, 'scheduler', '--nats', nats.url, '--creds', credsFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let said = '';
    p.stdout!.on('data', (d: Buffer) => {
      said += d.toString();
      out.write(d);
    });
    p.stderr!.pipe(out);
    schedulers.push(p);
    return { p, said: () => said };
  };
  t.after(async () => {
    for (const p of schedulers) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    await farm.stop({ abandon: true });
    await registry.stop();
    for (const c of [nc, regNc, farmNc]) await c.close().catch(() => {});
    await nats.stop();
  });
  await farm.ready;
  const ended = new Map<number, FrameEvent[]>();
  const dispatchedAt: number[] = [];
  nc.subscribe(`rb.${site}.evt.frame.>`, {
    callback: (_e, m) => {
      const evt = decodeAny(m.data) as FrameEvent;
      if (evt.event === 'dispatched') dispatchedAt.push(Date.now());
      if (evt.event === 'done' || evt.event === 'failed') ended.set(evt.frame, [...(ended.get(evt.frame) ?? []), evt]);
    },
  });
  await nc.flush();
  const submit = async () => (await call(nc, subjects.schedSubmit(site, TEST_OPERATOR), codecs.submitRequest, {
    v, spec: { name: 'standby', scene: '/scenes/s.pov', renderer: 'command', command: 'true', frames: `1-${FRAMES}`, output: { dir: '/renders/standby', pattern: 's_####.exr' } },
  }, codecs.submitReply)).jobId;
  const jobEnded = (jobId: string) => waitUntil('the job to be done', async () => {
    const r = await call(nc, subjects.schedQuery(site), codecs.queryRequest, { v, what: 'job', jobId }, codecs.queryReply, { timeoutMs: 2_000 }).catch(() => undefined);
    return r && 'job' in r && ['done', 'failed', 'cancelled'].includes(r.job.state) ? r.job : undefined;
  }, 60_000, 100);
  const cli = (role: Role, ...args: string[]) => runCli(nats, site, role, ...args);
  return { nats, site, nc, farm, startScheduler, ended, dispatchedAt, submit, jobEnded, cli };
}

/**
 * Issue 18, item 2: two `renderbus scheduler` processes; one leads, the other stands by. The
 * leader is killed with SIGKILL mid-job: the standby takes over when the lease lapses, and the
 * job completes with every frame rendered once (no render host died, so none is rendered twice).
 * Then the new leader is stopped with SIGTERM while the restarted first process stands by: it
 * gives the lease up and the standby takes over at its next read.
 */
test('standby - a standby scheduler takes over when the leader is killed, and at once when it stops; every frame rendered once', async (t) => {
  const { site, nc, farm, startScheduler, ended, dispatchedAt, submit, jobEnded, cli } = await standbySite(t);
  const a = await startScheduler('a');
  await waitUntil('scheduler a to lead', () => /journal replayed; serving/.test(a.said()), 30_000);
  const b = await startScheduler('b');
  await waitUntil('scheduler b to stand by', () => /standing by/.test(b.said()), 30_000);

  // an operator sees who leads: a's process, and the registry of this test's process
  const leaders = await cli(Role.Operator, 'leaders', '--json');
  assert.equal(leaders.code, 0, leaders.stderr);
  const shown = JSON.parse(leaders.stdout) as { leases: { role: string; lease: { pid: number; host: string } | null }[] };
  assert.deepEqual(shown.leases.map((l) => [l.role, l.lease?.pid]), [['scheduler', a.p.pid], ['registry', process.pid]]);
  const text = await cli(Role.Operator, 'leaders');
  assert.match(text.stdout, new RegExp(`^scheduler +\\S+ +${a.p.pid} +\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d +\\d+ms ago`, 'm'));
  const artist = await cli(Role.Artist, 'leaders');
  assert.equal(artist.code === 0, false, 'an artist is refused');
  assert.match(artist.stderr, /leaders is for operators/);

  const jobId = await submit();

  await waitUntil('a sixth of the frames done', () => ended.size >= FRAMES / 6, 30_000, 20);
  const killedAt = Date.now();
  a.p.kill('SIGKILL');
  await once(a.p, 'exit');
  await waitUntil('b to take over', () => /leading as scheduler/.test(b.said()), 15_000, 20);
  const next = await waitUntil('a dispatch by the new leader', () => dispatchedAt.find((at) => at > killedAt), 15_000, 20);
  const failoverMs = next - killedAt;
  t.diagnostic(`failover after kill -9 of the leader: ${failoverMs} ms to the next dispatch`);
  // the lease lapses after 3 s unchanged; the new term adopts until every live server reported (docs/cluster.md)
  assert.ok(failoverMs < 10_000, `failover took ${failoverMs} ms`);

  // the first process again: it finds b's live lease and stands by
  const a2 = await startScheduler('a2');
  await waitUntil('a again to stand by', () => /standing by/.test(a2.said()), 30_000);
  const job = await jobEnded(jobId);
  await waitUntil('the last frame events', () => ended.size === FRAMES, 5_000, 20).catch(() => {});
  assert.equal(job.state, 'done');
  assert.deepEqual(job.counts, { total: FRAMES, queued: 0, running: 0, done: FRAMES, failed: 0 });
  for (const [frame, evts] of ended) assert.equal(evts.length, 1, `frame ${frame} ended ${evts.length} times`);
  assert.equal(farm.stats.framesDone, FRAMES, 'no frame rendered twice: the new leader adopted the running ones');

  // a planned stop: b gives its lease up and a2 takes over at its next read, not after the lapse
  const stoppedAt = Date.now();
  b.p.kill('SIGTERM');
  await waitUntil('a2 to take over', () => /leading as scheduler/.test(a2.said()), 10_000, 20);
  const handoverMs = Date.now() - stoppedAt;
  t.diagnostic(`handover after SIGTERM of the leader: ${handoverMs} ms`);
  assert.ok(handoverMs < 2_500, `a released lease is taken before it could lapse (${handoverMs} ms)`);
  const r = await waitUntil('the new leader to answer', () => call(nc, subjects.schedQuery(site), codecs.queryRequest, { v, what: 'job', jobId }, codecs.queryReply, { timeoutMs: 1_000 }).catch(() => undefined), 15_000);
  assert.ok('job' in r && r.job.state === 'done', 'the journal carried the job over');
});

/**
 * A leader whose lease renewals are held up (here the whole server stops for 4 s, as JetStream
 * stalls while a cluster elects a new leader for the leaders bucket) holds still past the fence
 * instead of ending its term: when its renewal is stored it goes on with its book as it was, with
 * no second replay or adoption, and every frame is rendered once.
 */
test('standby - a leader whose renewals are held up past the fence holds still, then goes on without replaying; every frame rendered once', async (t) => {
  const { nats, farm, startScheduler, ended, submit, jobEnded } = await standbySite(t);
  const a = await startScheduler('a');
  await waitUntil('scheduler a to lead', () => /journal replayed; serving/.test(a.said()), 30_000);
  const jobId = await submit();
  await waitUntil('a sixth of the frames done', () => ended.size >= FRAMES / 6, 30_000, 20);
  process.kill(nats.pid, 'SIGSTOP');
  await new Promise((r) => setTimeout(r, 4_000)); // past the 3 s fence
  process.kill(nats.pid, 'SIGCONT');
  const job = await jobEnded(jobId);
  await waitUntil('the last frame events', () => ended.size === FRAMES, 5_000, 20).catch(() => {});
  assert.match(a.said(), /holds still/, 'the fence passed: it held');
  assert.match(a.said(), /goes on/, 'and went on once a renewal was stored');
  assert.doesNotMatch(a.said(), /stepping down/);
  assert.equal(a.said().match(/journal replayed; serving/g)?.length, 1, 'the journal was replayed once, at the start');
  assert.equal(job.state, 'done');
  assert.deepEqual(job.counts, { total: FRAMES, queued: 0, running: 0, done: FRAMES, failed: 0 });
  for (const [frame, evts] of ended) assert.equal(evts.length, 1, `frame ${frame} ended ${evts.length} times`);
  assert.equal(farm.stats.framesDone, FRAMES, 'no frame rendered twice');
});

/**
 * A leader that froze (SIGSTOP) long enough for the standby to take its lease finds it taken when
 * it wakes, and steps down to stand by; when the new leader then dies, the first process leads
 * again in a second term of its own (a replay in the same process), and the job completes.
 */
test('standby - a frozen leader finds its lease taken and stands by; it leads again in a second term when the new leader dies', async (t) => {
  const { farm, startScheduler, ended, submit, jobEnded } = await standbySite(t);
  const a = await startScheduler('a');
  await waitUntil('scheduler a to lead', () => /journal replayed; serving/.test(a.said()), 30_000);
  const b = await startScheduler('b');
  await waitUntil('scheduler b to stand by', () => /standing by/.test(b.said()), 30_000);
  const jobId = await submit();
  await waitUntil('a sixth of the frames done', () => ended.size >= FRAMES / 6, 30_000, 20);
  a.p.kill('SIGSTOP');
  await waitUntil('b to take over from the frozen leader', () => /leading as scheduler/.test(b.said()), 15_000, 20);
  a.p.kill('SIGCONT');
  await waitUntil('a to step down', () => /stepping down as scheduler/.test(a.said()), 15_000, 20);
  await waitUntil('more frames done by b', () => ended.size >= FRAMES / 3, 30_000, 20);
  b.p.kill('SIGKILL');
  await waitUntil('a to lead again', () => a.said().match(/journal replayed; serving/g)?.length === 2, 20_000, 20);
  const job = await jobEnded(jobId);
  await waitUntil('the last frame events', () => ended.size === FRAMES, 5_000, 20).catch(() => {});
  assert.equal(job.state, 'done');
  assert.deepEqual(job.counts, { total: FRAMES, queued: 0, running: 0, done: FRAMES, failed: 0 });
  for (const [frame, evts] of ended) assert.equal(evts.length, 1, `frame ${frame} ended ${evts.length} times`);
  assert.equal(farm.stats.framesDone, FRAMES, 'no frame rendered twice');
});

test('standby - renderbus leaders on a site where no scheduler or registry has run yet says so', async (t) => {
  const nats = await startNatsServer();
  t.after(() => nats.stop());
  const site = `t${randomUUID().slice(0, 8)}`;
  const r = await runCli(nats, site, Role.Operator, 'leaders');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, `no scheduler or registry has run on site ${site} yet (it has no leaders bucket)\n`);
});
