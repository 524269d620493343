import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { call } from '../../actors/bus/index.ts';
import { codecs, PROTOCOL_MAJOR, subjects, type HostEvent } from '../../protocol/index.ts';
import type { QueueEntry } from '../../tools/cli/manager-format.ts';
import { CLI, TestFarm, waitUntil } from '../helpers/farm.ts';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The CLI against the farm (or against `nats`), without blocking the test: several run at once. */
async function rb(farm: TestFarm, args: string[], nats = farm.url): Promise<Run> {
  const env = { ...process.env };
  delete env.RENDERBUS_NATS;
  const proc = spawn(process.execPath, [CLI, ...args, '--nats', nats, '--site', farm.site, '--creds', farm.operatorCreds], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => proc.kill('SIGKILL'), 30_000);
  const [code] = (await once(proc, 'exit')) as [number | null];
  clearTimeout(timer);
  return { code, stdout, stderr };
}

function ok(r: Run, what: string): Run {
  assert.equal(r.code, 0, `${what}: exit ${r.code}\n${r.stderr}`);
  return r;
}

interface HostJson {
  host: string;
  state: 'up' | 'down';
  draining?: boolean;
  sick: boolean | null;
  slotsBusy?: number;
  slotsFree?: number;
  slots?: { index: number; state: string; jobId?: string; taskId?: string; since?: number }[];
  load?: number;
  reason?: string;
  inventory?: { packages: { name: string; version: string }[]; licenses: string[]; cpu: { count: number }; ramMb: number; swapMb: number };
}

test('manager commands - hosts (up, draining, down, sick unknown), host (inventory, slots, drain, undrain, stop), queue (order, why, shares), and the bad cases', { timeout: 180_000 }, async (t) => {
  const farm = await TestFarm.start();
  t.after(async () => {
    // the scheduler is killed below: render servers stopped gently would wait out their grace to report results
    await Promise.all(farm.procs.map((p) => p.kill('SIGKILL')));
    await farm.stop();
  });
  const [, scheduler] = await Promise.all([farm.registry(), farm.scheduler()]);
  const [, beta] = await Promise.all([
    farm.renderServer('alpha', 2, ['--packages', 'povray@3.7.0.10,blender@4.1', '--licenses', 'arnold']),
    farm.renderServer('beta', 1, ['--packages', 'povray@3.7.0.10']),
  ]);

  // a running job on every slot, a more urgent held one, and an ended one
  const runner = await farm.ledgerJob('runner', '1-80', 1, { project: 'feature' });
  const runnerId = await farm.submit(runner.spec);
  const held = await farm.ledgerJob('waiter', '1-4', 0.1, { project: 'ads', priority: 10, hold: true });
  const heldId = await farm.submit(held.spec);
  const gone = await farm.ledgerJob('gone', '1-2', 0.1);
  const goneId = await farm.submit({ ...gone.spec, hold: true });
  await call(farm.nc, subjects.opCtl(farm.site), codecs.ctlRequest, { v: PROTOCOL_MAJOR, action: 'cancel', jobId: goneId }, codecs.ctlReply);
  await call(farm.nc, subjects.opShares(farm.site), codecs.sharesRequest, { v: PROTOCOL_MAJOR, action: 'set', share: { project: 'feature', weight: 3 } }, codecs.sharesReply);
  // and a heartbeat with each host's load after that (slot events can come before it on a loaded machine)
  await waitUntil('every slot to render', async () => (await farm.hosts()).every((h) => h.load !== undefined && h.slots.every((s) => s.state === 'busy')), 20_000);

  // the schedule manager: the queue in order, why each waits, the shares above it
  const [queue, queueJson, hostsJson] = await Promise.all([rb(farm, ['queue']), rb(farm, ['queue', '--json']), rb(farm, ['hosts', '--json'])]);
  const q = JSON.parse(ok(queueJson, 'queue --json').stdout) as { shares: { enabled: boolean; projects: { project: string; weight: number }[] }; jobs: QueueEntry[] };
  assert.deepEqual(q.jobs.map((j) => [j.position, j.jobId, j.project, j.state]), [[1, heldId, 'ads', 'held'], [2, runnerId, 'feature', 'rendering']], 'active jobs only, most urgent first');
  assert.equal(q.jobs[0]!.why?.kind, 'held');
  assert.ok(q.jobs[1]!.counts.running >= 3, 'a frame on every slot (and some in hand)');
  assert.equal(q.shares.enabled, true);
  assert.ok(q.shares.projects.some((p) => p.project === 'feature' && p.weight === 3), JSON.stringify(q.shares));
  const queueText = ok(queue, 'queue').stdout;
  assert.match(queueText, /^fair share is on/);
  assert.match(queueText, /^feature +3 +\d+% +\d+ +\d+$/m);
  assert.ok(queueText.indexOf('fair share') < queueText.indexOf('WAITING'), 'shares above the list');
  assert.match(queueText, new RegExp(`^1 +${heldId} +waiter +ads +10 +held +4 +0 +0/4 +held`, 'm'));
  assert.match(queueText, new RegExp(`^2 +${runnerId} +runner +feature +50 +rendering +\\d+ +\\d+ +\\d+/80`, 'm'));
  assert.doesNotMatch(queueText, new RegExp(goneId), 'no ended job');
  assert.doesNotMatch(queueText, /\x1b\[/, 'no colour off a terminal');

  // the resource manager: every host up, slots busy/free, load
  const list = JSON.parse(ok(hostsJson, 'hosts --json').stdout) as HostJson[];
  assert.deepEqual(list.map((h) => [h.host, h.state, h.draining, h.sick, h.slots?.length, h.slotsBusy, h.slotsFree]), [['alpha', 'up', false, false, 2, 2, 0], ['beta', 'up', false, false, 1, 1, 0]]);
  assert.equal(typeof list[0]!.load, 'number');

  // the render manager: one host's inventory, packages, licenses and slots; the bad cases
  const [one, oneJson, unknown, badName, both, drainUndrain, unknownDrain] = await Promise.all([
    rb(farm, ['host', 'alpha']),
    rb(farm, ['host', 'alpha', '--json']),
    rb(farm, ['host', 'nosuch']),
    rb(farm, ['host', 'Bad!']),
    rb(farm, ['host', 'alpha', '--drain', '--stop']),
    rb(farm, ['host', 'alpha', '--drain', '--undrain']),
    rb(farm, ['host', 'nosuch', '--drain']),
  ]);
  const alpha = JSON.parse(ok(oneJson, 'host --json').stdout) as HostJson;
  // the packages given; the sandbox is the render server's own finding (render-server.test.ts)
  assert.deepEqual(alpha.inventory!.packages.filter((p) => p.name !== 'sandbox').map((p) => `${p.name}@${p.version}`), ['povray@3.7.0.10', 'blender@4.1']);
  assert.deepEqual(alpha.inventory!.licenses, ['arnold']);
  assert.deepEqual(alpha.slots!.map((s) => [s.index, s.state, s.jobId]), [[0, 'busy', runnerId], [1, 'busy', runnerId]]);
  const oneText = ok(one, 'host alpha').stdout;
  for (const re of [/^host +alpha$/m, /^state +up$/m, /^slots +2: 2 busy, 0 free$/m, /^machine +\S+\/\S+/m, /^os +\S+/m, /^cpu +\d+× /m, /^ram +\d/m, /^swap +\d/m, /^licenses +arnold$/m, /^blender +4\.1 /m, /^povray +3\.7\.0\.10 /m]) assert.match(oneText, re);
  assert.match(oneText, new RegExp(`^0 +busy +\\S+ +${runnerId} +\\d+ +\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d \\(`, 'm'), 'slot 0: task, job, frames, since when');
  assert.equal(unknown.code, 1, unknown.stderr);
  assert.match(unknown.stderr, /^renderbus host: no render host 'nosuch' on site \S+; known hosts: up: alpha, beta\n$/);
  assert.equal(badName.code, 2);
  assert.match(badName.stderr, /^renderbus host: host name: 'Bad!' must be lower-case/);
  assert.equal(both.code, 2);
  assert.match(both.stderr, /--drain and --stop go alone/);
  assert.equal(drainUndrain.code, 2);
  assert.match(drainUndrain.stderr, /--drain and --undrain go alone: .*--undrain gives it work again/);
  assert.equal(unknownDrain.code, 1);
  assert.match(unknownDrain.stderr, /no render server answers for host 'nosuch' .*hosts up: alpha, beta/);

  // drain beta from here: it reports draining, finishes its frame and takes no new one
  const drainEvents: HostEvent[] = [];
  const sub = farm.nc.subscribe(subjects.hostEvent(farm.site, 'beta', 'draining'), { callback: (_e, m) => void drainEvents.push(codecs.hostEvent.decode(m.data)) });
  t.after(() => sub.unsubscribe());
  await farm.nc.flush();
  const drained = ok(await rb(farm, ['host', 'beta', '--drain']), 'host beta --drain');
  const drainedAt = Date.now();
  assert.match(drained.stdout, /^beta is draining: it takes no new frames/);
  assert.equal(drainEvents.length, 1, 'the render server announced it drains');
  await waitUntil('beta to finish its frame', async () => {
    const b = (await farm.hosts()).find((h) => h.host === 'beta');
    return b?.draining === true && b.slots.every((s) => s.state === 'draining');
  }, 15_000);
  // alpha starting two more frames after that proves the scheduler handed out work twice while beta stood drained
  const betaDoneAt = Date.now();
  const job = await waitUntil('alpha to start two frames after beta finished', async () => {
    const j = await farm.job(runnerId);
    return j.frames.filter((f) => f.host === 'alpha' && f.startedAt !== undefined && f.startedAt > betaDoneAt).length >= 2 ? j : undefined;
  }, 20_000);
  const lateOnBeta = job.frames.filter((f) => f.host === 'beta' && f.startedAt !== undefined && f.startedAt > drainedAt);
  assert.deepEqual(lateOnBeta.map((f) => f.frame), [], 'no frame started on beta after the drain');
  assert.ok(job.frames.some((f) => f.host === 'alpha' && f.startedAt !== undefined && f.startedAt > drainedAt), 'alpha goes on rendering');
  const afterDrain = ok(await rb(farm, ['hosts']), 'hosts').stdout;
  assert.match(afterDrain, /^HOST +STATE +SLOTS +LOAD +CPU +RAM +OS +PACKAGES +LAST SEEN$/m);
  assert.match(afterDrain, /^alpha +up +2 busy \/ 0 free +\d+\.\d\d +\d+× /m);
  assert.match(afterDrain, /^beta +up, draining +0 busy \/ 0 free +\d+\.\d\d /m);

  // undrain beta from here: it takes frames of the running job again
  const undrainedAt = Date.now();
  assert.match(ok(await rb(farm, ['host', 'beta', '--undrain']), 'host beta --undrain').stdout, /^beta takes new frames again\n$/);
  await waitUntil('beta to render again', async () => (await farm.job(runnerId)).frames.some((f) => f.host === 'beta' && f.startedAt !== undefined && f.startedAt >= undrainedAt), 15_000);
  assert.equal((await farm.hosts()).find((h) => h.host === 'beta')?.draining, false, 'the registry no longer marks it draining');

  // stop beta from here: it leaves the registry and is listed down, with why
  assert.match(ok(await rb(farm, ['host', 'beta', '--stop']), 'host beta --stop').stdout, /^beta is stopping/);
  await waitUntil('beta to leave the registry', async () => !(await farm.hosts()).some((h) => h.host === 'beta'), 15_000);
  assert.match(beta.output, /render server stopped/);
  await waitUntil('beta\'s process to exit by itself', () => !beta.running, 10_000);
  assert.equal(beta.proc.exitCode, 0);
  const [downJson, downHost] = await Promise.all([rb(farm, ['hosts', '--json']), rb(farm, ['host', 'beta'])]);
  const betaDown = (JSON.parse(ok(downJson, 'hosts --json').stdout) as HostJson[]).find((h) => h.host === 'beta')!;
  assert.deepEqual([betaDown.state, betaDown.reason], ['down', 'stopped']);
  assert.equal(downHost.code, 1);
  assert.match(downHost.stderr, /render host beta is down since .* \(stopped\); known hosts: up: alpha; down: beta/);

  // no scheduler: the hosts up are still listed; sickness and the hosts that left (the scheduler reads
  // them from the event stream: nobody else touches JetStream) are said to be unknown; no farm: exit 1
  await scheduler.kill('SIGKILL');
  const [noSched, noSchedJson, noFarm] = await Promise.all([rb(farm, ['hosts']), rb(farm, ['hosts', '--json']), rb(farm, ['queue'], 'nats://127.0.0.1:1')]);
  assert.match(ok(noSched, 'hosts without a scheduler').stdout, /^alpha +up +/m);
  assert.doesNotMatch(noSched.stdout, /^beta/m);
  assert.match(noSched.stdout, /^sickness and hosts that left unknown: scheduler unavailable/m);
  assert.deepEqual((JSON.parse(ok(noSchedJson, 'hosts --json').stdout) as HostJson[]).map((h) => [h.host, h.state, h.sick]), [['alpha', 'up', null]]);
  assert.match(noSchedJson.stderr, /sickness and hosts that left unknown/);
  assert.equal(noFarm.code, 1, noFarm.stderr);
  assert.match(noFarm.stderr, /^renderbus queue: cannot reach the farm's NATS server at nats:\/\/127\.0\.0\.1:1/);
});
