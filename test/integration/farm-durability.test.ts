import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect } from '@nats-io/transport-node';
import { call } from '../../actors/bus/index.ts';
import { codecs, PROTOCOL_MAJOR, subjects, type JobDetail } from '../../protocol/index.ts';
import { pidAlive } from '../../sites/farm-file.ts';
import { readCredentials } from '../../sites/auth/index.ts';
import { loginOptions } from '../helpers/nats-server.ts';
import { CLI, readLedger, TestFarm, waitUntil } from '../helpers/farm.ts';

const frameRange = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
const count = (j: JobDetail, state: string, host?: string) => j.frames.filter((f) => f.state === state && (host === undefined || f.host === host)).length;

/** Every frame done, its file in place with the right content, and how often each frame ran. */
async function checkOutputs(job: JobDetail, ledger: string): Promise<Map<number, number>> {
  assert.equal(job.state, 'done');
  for (const f of job.frames) {
    assert.equal(f.state, 'done', `frame ${f.frame}`);
    assert.equal((await readFile(f.output!, 'utf8')).trim(), `frame ${f.frame}`, `frame ${f.frame}'s file`);
  }
  const leftovers = await readdir(join(job.outputDir, '.rb-partial')).catch(() => []);
  assert.deepEqual(leftovers, [], 'no half-written work dirs left behind');
  return readLedger(ledger);
}

test('durability - the scheduler killed outright mid-job: control fails at once while it is away; restarted, it re-adopts the running frames and takes the results that ended meanwhile, rendering no frame twice', async (t) => {
  const farm = await TestFarm.start();
  t.after(() => farm.stop());
  await farm.registry();
  let scheduler = await farm.scheduler();
  await farm.renderServer('a', 2);
  await farm.renderServer('b', 2);
  const { spec, ledger } = await farm.ledgerJob('readopt', '1-16', 1.2);
  const jobId = await farm.submit(spec);
  await waitUntil('some frames done and others running', async () => {
    const j = await farm.job(jobId);
    return count(j, 'done') >= 4 && count(j, 'running') >= 3;
  });
  await scheduler.kill('SIGKILL');
  const ranBefore = [...(await readLedger(ledger)).values()].reduce((a, b) => a + b, 0);

  // job control with the scheduler gone: a clear error at once, not a hang
  const t0 = Date.now();
  const cancel = spawnSync(process.execPath, [CLI, 'cancel', jobId, '--nats', farm.url, '--site', farm.site, '--creds', farm.operatorCreds], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(cancel.status, 1, cancel.stderr);
  assert.match(cancel.stderr, /scheduler/i);
  assert.ok(Date.now() - t0 < 10_000, `cancel answered in ${Date.now() - t0} ms`);

  // frames end while the scheduler is away: their results wait on the render servers
  await waitUntil('a frame to end while the scheduler is away', async () => [...(await readLedger(ledger)).values()].reduce((a, b) => a + b, 0) > ranBefore, 20_000);
  scheduler = await farm.scheduler();
  const job = await farm.waitJob(jobId, 'done', 60_000);
  const runs = await checkOutputs(job, ledger);
  assert.deepEqual([...runs.keys()].sort((x, y) => x - y), frameRange(1, 16));
  assert.deepEqual([...runs].filter(([, n]) => n > 1), [], `no frame rendered twice\n${farm.logs()}`);
  assert.match(scheduler.output, /running tasks re-adopted/);
});

test('durability - a render server killed outright mid-frame: its lease expires and the frame is rendered by another host', async (t) => {
  const farm = await TestFarm.start();
  t.after(() => farm.stop());
  await farm.registry();
  await farm.scheduler();
  const doomed = await farm.renderServer('doomed', 1);
  await farm.renderServer('spare', 1);
  const { spec, ledger } = await farm.ledgerJob('expire', '1-4', 3);
  const jobId = await farm.submit(spec);
  const running = await waitUntil('a frame running on the doomed host', async () => (await farm.job(jobId)).frames.find((f) => f.state === 'running' && f.host === 'doomed'));
  await doomed.kill('SIGKILL'); // well within the frame's 3 s
  const job = await farm.waitJob(jobId, 'done', 60_000);
  const runs = await checkOutputs(job, ledger);
  const frame = job.frames.find((f) => f.frame === running.frame)!;
  assert.equal(frame.host, 'spare', `frame ${frame.frame} was rendered again elsewhere\n${farm.logs()}`);
  assert.ok(frame.attempt > running.attempt, 'with a new attempt');
  const twice = [...runs].filter(([, n]) => n > 1);
  assert.deepEqual(twice, [], `the killed render had not reached its end: every frame ran to the end once (killed frame ${running.frame})\n${JSON.stringify(job.frames)}\n${farm.logs()}`);
});

// 25 s: longer than a NATS client reconnects by default (~20 s). RB_OUTAGE_S=60 tries the minute.
const OUTAGE_S = Number(process.env.RB_OUTAGE_S ?? 25);
test(`durability - nats-server killed outright mid-job and restarted on its store after ${OUTAGE_S} s: the job completes, nothing lost, nothing rendered twice`, async (t) => {
  const farm = await TestFarm.start();
  t.after(() => farm.stop());
  await farm.registry();
  await farm.scheduler();
  await farm.renderServer('a', 2);
  const { spec, ledger } = await farm.ledgerJob('outage', '1-10', 1);
  const jobId = await farm.submit(spec);
  await waitUntil('some frames done', async () => count(await farm.job(jobId), 'done') >= 2);
  await farm.killNats();
  await sleep(OUTAGE_S * 1000);
  await farm.startNats();
  const job = await farm.waitJob(jobId, 'done', 90_000);
  const runs = await checkOutputs(job, ledger);
  assert.deepEqual([...runs.keys()].sort((x, y) => x - y), frameRange(1, 10));
  assert.deepEqual([...runs].filter(([, n]) => n > 1), [], `no frame rendered twice\n${farm.logs()}`);
  for (const p of farm.procs) assert.ok(p.running, `${p.name} is still running`);
});

test('durability - SIGTERM drains a render server: its running frame finishes, the task in hand goes to another host, it says bye and exits', async (t) => {
  const farm = await TestFarm.start();
  t.after(() => farm.stop());
  await farm.registry();
  await farm.scheduler();
  const leaving = await farm.renderServer('leaving', 1);
  const { spec, ledger } = await farm.ledgerJob('drain', '1-4', 2);
  const jobId = await farm.submit(spec);
  // after its first frame the slot renders the next one and holds one more in hand: two leases,
  // given together; catch them early in the frame, so it is still running when SIGTERM lands
  const leased = await waitUntil('a frame done on the leaving host and two more just leased to it', async () => {
    const j = await farm.job(jobId);
    const mine = j.frames.filter((f) => f.state === 'running' && f.host === 'leaving').sort((x, y) => x.frame - y.frame);
    return count(j, 'done', 'leaving') === 1 && mine.length === 2 && Date.now() - mine[0]!.startedAt! < 1_000 ? mine : undefined;
  }, 30_000, 50);
  const t0 = Date.now();
  leaving.proc.kill('SIGTERM');
  await farm.renderServer('staying', 1);
  const [code] = (await leaving.exited) as [number | null];
  assert.equal(code, 0, leaving.output);
  assert.ok(Date.now() - t0 < 10_000, 'it left once its frame was done, without waiting out the grace period');
  assert.ok(!(await farm.hosts()).some((h) => h.host === 'leaving'), 'the registry was told');
  const job = await farm.waitJob(jobId, 'done', 60_000);
  const runs = await checkOutputs(job, ledger);
  const endedOn = leased.map((l) => job.frames.find((f) => f.frame === l.frame)!.host);
  assert.deepEqual(endedOn, ['leaving', 'staying'], `the running frame finished where it ran; the one in hand went to the other host\n${farm.logs()}`);
  assert.ok([...runs.values()].every((n) => n === 1), 'nothing rendered twice');
  assert.match(leaving.output, /draining/);
});

test('durability - the whole site killed at once (renderbus up, SIGKILL) and started again on its data directory: the job resumes and completes, nothing left behind', async (t) => {
  const data = await mkdtemp(join(tmpdir(), 'rb-powercut-'));
  t.after(() => rm(data, { recursive: true, force: true }));
  const up = () => {
    const p = spawn(process.execPath, [CLI, 'up', '--data', data, '--port', '-1', '--slots', '2', '--host', 'site', '--grace', '5'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    return { p, exited: once(p, 'exit'), out: () => out };
  };
  const farmUrl = async () => (JSON.parse(await readFile(join(data, 'farm.json'), 'utf8')) as { url: string; pid: number; credsFile: string });
  // the CLI's way in: the operator credential `up` wrote for whoever ran it
  const login = async (f: { credsFile: string }) => loginOptions(await readCredentials(f.credsFile));
  const first = up();
  t.after(() => void first.p.kill('SIGKILL'));
  const firstFarm = await waitUntil('farm.json', () => farmUrl(), 30_000);
  const { url } = firstFarm;
  const ledger = join(data, 'powercut.ledger');
  await writeFile(join(data, 'scene.txt'), 'x');
  const spec = {
    name: 'powercut', scene: join(data, 'scene.txt'), renderer: 'command' as const, frames: '1-8',
    command: `sh -c 'sleep 0.8; echo {frame} >> ${ledger}; echo frame {frame} > {output}'`,
    output: { dir: join(data, 'out'), pattern: 'f_####.txt' },
  };
  const nc = await connect({ servers: url, ...(await login(firstFarm)) });
  const { jobId } = await call(nc, subjects.schedSubmit('studio', firstFarm.credsFile.match(/operator-([^/]+)\.creds$/)![1]!), codecs.submitRequest, { v: PROTOCOL_MAJOR, spec }, codecs.submitReply);
  await nc.close();
  await waitUntil('two frames rendered', async () => ((await readLedger(ledger)).size >= 2 ? true : undefined));
  const natsPid = Number((await readdir(data)).find((n) => /^nats-server_\d+\.ports$/.test(n))?.match(/\d+/)?.[0] ?? NaN);
  first.p.kill('SIGKILL'); // the power cut: no process of the site gets to clean up
  await first.exited;
  await waitUntil('nats-server gone with it', () => !pidAlive(natsPid) || undefined, 10_000);

  const second = up();
  t.after(() => void second.p.kill('SIGKILL'));
  const again = await waitUntil('the farm up again', async () => {
    const f = await farmUrl();
    return f.pid === second.p.pid ? f : undefined;
  }, 30_000);
  const nc2 = await connect({ servers: again.url, ...(await login(again)) });
  t.after(() => nc2.close());
  const job = await waitUntil('the job to finish', async () => {
    const body = await call(nc2, subjects.schedQuery('studio'), codecs.queryRequest, { v: PROTOCOL_MAJOR, what: 'job', jobId }, codecs.queryReply);
    return 'job' in body && body.job.state === 'done' ? body.job : undefined;
  }, 60_000, 250);
  const runs = await checkOutputs(job, ledger);
  assert.deepEqual([...runs.keys()].sort((x, y) => x - y), frameRange(1, 8));
  assert.ok([...runs.values()].every((n) => n <= 2), 'a frame runs again only when the power cut caught it mid-frame');

  second.p.kill('SIGTERM'); // and a graceful stop of the whole farm
  assert.deepEqual(await second.exited, [0, null], second.out());
  assert.ok(!existsSync(join(data, 'farm.json')));
});
