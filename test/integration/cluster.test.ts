import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import pino from 'pino';
import { connect } from '@nats-io/transport-node';
import { call, connectBus, loginOptions } from '../../actors/bus/index.ts';
import { readCredentials } from '../../sites/auth/credentials-file.ts';
import { startRenderServer } from '../../actors/render-server/index.ts';
import { Journal } from '../../actors/scheduler/journal.ts';
import { Kvm } from '@nats-io/kv';
import { jetstream } from '@nats-io/jetstream';
import { codecs, decodeAny, PROTOCOL_MAJOR, Role, streams, subjects, type FrameEvent, type JobSpec } from '../../protocol/index.ts';
import { natsServerBin } from '../../sites/nats-server.ts';
import { serverConfig } from '../../sites/server-config.ts';
import { ActorProcess, CLI, readLedger, waitUntil } from '../helpers/farm.ts';
import { startTestCluster } from '../helpers/cluster.ts';

const log = pino({ level: process.env.RENDERBUS_LOG ?? 'warn' });
const FRAMES = 100;

/** Member index (0-based) of a server name `n<i>`. */
const memberOf = (name: string | undefined) => Number(name?.slice(1)) - 1;

test('cluster - nats-server takes the config a member is given', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'rb-cluster-conf-'));
  try {
    const conf = join(dir, 'n1', 'nats.conf');
    await writeFile(join(dir, 'auth.conf'), 'accounts { FARM { jetstream: enabled, users: [] } }\n');
    await mkdir(join(dir, 'n1'));
    await writeFile(conf, serverConfig({ listen: '127.0.0.1:-1', serverName: 'n1', maxPayload: 1048576, storeDir: join(dir, 'n1', 'js'), maxFileStore: 1 << 30, authInclude: '../auth.conf', cluster: { name: 'renderbus-t', listen: '127.0.0.1:-1', routes: ['127.0.0.1:6222', '127.0.0.1:6223'], user: 'route', password: 'beef' } }));
    const r = spawnSync(natsServerBin(), ['-t', '-c', conf], { encoding: 'utf8' });
    assert.equal(r.status, 0, `nats-server refused the config: ${r.stderr}${r.stdout}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

/**
 * Issue 18's test: kill -9 of one nats-server mid-job, then of the leading scheduler (a standby
 * takes over), then of the member that leads the journal: the job completes, every frame once.
 */
test('cluster - a job survives kill -9 of its render server\'s NATS member, then of the leading scheduler, then of the journal leader\'s member', async (t) => {
  const site = `t${randomUUID().slice(0, 8)}`;
  const started = Date.now();
  const c = await startTestCluster(site);
  t.diagnostic(`cluster of 3 ready (JetStream meta leader) in ${c.readyMs} ms`);
  const procs: ActorProcess[] = [];
  const work = await mkdtemp(join(tmpdir(), 'rb-cluster-job-'));
  const cleanups: (() => Promise<unknown>)[] = [];
  t.after(async () => {
    for (const f of cleanups.reverse()) await f().catch(() => {});
    await Promise.all(procs.map((p) => p.kill()));
    await c.stop();
    await rm(work, { recursive: true, force: true });
  });
  const nc = await c.connectAs(Role.Operator, 'op');
  cleanups.push(() => nc.close());
  const checker = await c.connectAs(Role.Scheduler, 'checker'); // the JetStream API is the services' only
  cleanups.push(() => checker.close());
  const jsm: JetStreamManager = await jetstreamManager(checker, { timeout: 5_000 });
  // the registry and two schedulers (one leads, one stands by) as processes given every member: --nats a,b,c
  const spawnActor = async (role: Role) => {
    const p = new ActorProcess(role, spawn(process.execPath, [CLI, role, '--nats', c.servers.join(','), '--site', site, '--creds', await c.credsFile(role)], { stdio: ['ignore', 'pipe', 'pipe'] }));
    procs.push(p);
    return p;
  };
  const [registry, ...schedulers] = await Promise.all([spawnActor(Role.Registry), spawnActor(Role.Scheduler), spawnActor(Role.Scheduler)]);
  const jobs = () => call(nc, subjects.schedQuery(site), codecs.queryRequest, { v: PROTOCOL_MAJOR, what: 'jobs' }, codecs.queryReply, { timeoutMs: 1_000 });
  await waitUntil('the scheduler to serve', () => jobs().then(() => true), 20_000);

  await t.test('the journal and event streams are kept on all three members', async () => {
    for (const name of [streams.journal(site), streams.events(site)]) {
      const info = await jsm.streams.info(name);
      assert.equal(info.config.num_replicas, 3, `${name} num_replicas`);
      assert.ok(info.cluster?.leader, `${name} has a leader`);
      assert.equal(info.cluster?.replicas?.length, 2, `${name}: its leader and two more peers`);
    }
  });

  await t.test('a stream made on one server grows to R3 when the farm moves to a cluster, and never shrinks', async () => {
    const other = `${site}x`;
    await Journal.open(checker, other, log, { replicas: 1 });
    assert.equal((await jsm.streams.info(streams.journal(other))).config.num_replicas, 1);
    await Journal.open(checker, other, log); // what a scheduler on the cluster does: it asks the server
    const grown = await jsm.streams.info(streams.journal(other));
    assert.equal(grown.config.num_replicas, 3);
    // while a member is down a server lists two: the stream keeps its three copies (shrinking it
    // dropped a live copy and left the journal without a leader until the member came back)
    await Journal.open(checker, other, log, { replicas: 2 });
    assert.equal((await jsm.streams.info(streams.journal(other))).config.num_replicas, 3, 'copies never shrink');
  });

  await t.test('the job completes through both kills, every frame done exactly once', async () => {
    try {
      // the render server in this process, so the test can tell which member it is on
      const rsNc = await connectBus({ servers: c.servers, name: 'render-server-h1', creds: await c.creds(Role.RenderServer, 'h1') });
      cleanups.push(() => rsNc.close());
      const rs = await startRenderServer({ nc: rsNc, site, host: 'h1', slots: 2, log, heartbeatMs: 500 });
      cleanups.push(() => rs.stop());
      const ledger = join(work, 'ledger');
      await writeFile(join(work, 'scene.pov'), '// a command job: no scene read\n');
      const spec: JobSpec = {
        name: 'cluster', scene: join(work, 'scene.pov'), renderer: 'command', frames: `1-${FRAMES}`,
        command: `sh -c 'sleep 0.3; echo {frame} >> ${ledger}; echo frame {frame} > {output}'`,
        output: { dir: join(work, 'out'), pattern: 'f_####.txt' },
      };
      const dispatchedAt: number[] = [];
      nc.subscribe(`rb.${site}.evt.frame.>`, {
        callback: (_e, m) => void ((decodeAny(m.data) as FrameEvent).event === 'dispatched' && dispatchedAt.push(Date.now())),
      });
      await nc.flush();
      const submitted = await call(nc, subjects.schedSubmit(site, 'op'), codecs.submitRequest, { v: PROTOCOL_MAJOR, spec }, codecs.submitReply, { timeoutMs: 5_000 });
      const framesDone = async () => [...(await readLedger(ledger)).keys()].length;
      await waitUntil('three frames rendered', async () => (await framesDone()) >= 3, 20_000);

      /**
       * Every copy of the journal has caught up, so losing its leader leaves two current ones. A
       * restarted member counts once it has been heard from after its restart (right after it, the
       * cluster may still describe it as it was before).
       */
      let restartedAt = 0;
      const current = async () => {
        const info = await jsm.streams.info(streams.journal(site));
        const copies = info.cluster?.replicas ?? [];
        const settled = Date.now() - restartedAt > 1_500;
        return settled && copies.length + 1 === info.config.num_replicas && copies.every((r) => r.current && !r.offline && r.active < 1e9) ? info : undefined;
      };
      await waitUntil('every copy of the journal to be current', current, 20_000, 50);
      const rsMember = memberOf(rsNc.info?.server_name);
      await c.kill(rsMember);
      t.diagnostic(`killed n${rsMember + 1}, the render server's member, at ${await framesDone()} frames`);
      // JetStream re-elects the leaders of the streams the member led: seconds, more on a loaded machine
      await waitUntil('rendering to go on', async () => (await framesDone()) >= 8, 45_000);
      assert.notEqual(memberOf(rsNc.info?.server_name), rsMember, 'the render server moved to another member');
      const ms = () => `${Date.now() - started} ms`;
      t.diagnostic(`${ms()}: rendering went on`);
      await c.restart(rsMember);
      restartedAt = Date.now();
      t.diagnostic(`${ms()}: n${rsMember + 1} restarted`);
      await waitUntil('every copy of the journal to be current', current, 20_000, 100);
      t.diagnostic(`${ms()}: every copy of the journal is current`);

      // the leading scheduler: the one whose pid its lease names
      // (the bucket answers late while its copy on the restarted member catches up: asked again)
      const leases = await new Kvm(jetstream(checker, { timeout: 2_000 })).open(streams.leaders(site));
      const lease = await waitUntil('the scheduler lease to be read', async () => (await leases.get('scheduler').catch(() => null)) ?? undefined, 20_000, 100);
      const leadingPid = codecs.leadership.decode(lease.value).pid;
      const leading = schedulers.find((p) => p.proc.pid === leadingPid);
      assert.ok(leading, `the lease names scheduler pid ${leadingPid}, one of ${schedulers.map((p) => p.proc.pid).join(', ')}`);
      const killedAt = Date.now();
      await leading.kill();
      const atKill = await framesDone();
      t.diagnostic(`${ms()}: killed the leading scheduler at ${atKill} frames`);
      await nc.flush(); // the dead leader's last events are in: a dispatch from now on is the standby's
      const heardAll = Date.now();
      const next = await waitUntil('a dispatch by the standby', () => dispatchedAt.find((at) => at > heardAll), 45_000, 20);
      const failoverMs = next - killedAt;
      t.diagnostic(`scheduler failover on the cluster: ${failoverMs} ms from kill -9 to the next dispatch`);
      // asserted loosely: with another test file beside it on 2 cores it took 4.2-8.3 s; with the
      // machine oversubscribed 2.5 times, up to 24.6 s (JetStream re-forming after the restart)
      assert.ok(failoverMs < 30_000, `failover took ${failoverMs} ms (goal 5 s)`);
      await waitUntil('rendering to go on after the takeover', async () => (await framesDone()) >= atKill + 4, 30_000);

      const info = await waitUntil('every copy of the journal to be current', current, 20_000, 100);
      const leader = memberOf(info.cluster!.leader);
      await c.kill(leader);
      const atLastKill = await framesDone();
      t.diagnostic(`killed n${leader + 1}, the journal's leader, at ${atLastKill} frames; it stays down`);
      assert.ok(atLastKill < FRAMES, 'frames were left to render after the last kill');

      const job = async () => {
        const body = await call(nc, subjects.schedQuery(site), codecs.queryRequest, { v: PROTOCOL_MAJOR, what: 'job', jobId: submitted.jobId }, codecs.queryReply, { timeoutMs: 2_000 });
        return 'job' in body ? body.job : undefined;
      };
      const done = await waitUntil('the job to be done with a member down', async () => {
        const j = await job().catch(() => undefined);
        if (j && ['failed', 'cancelled'].includes(j.state)) throw new Error(`job ended ${j.state}`);
        return j?.state === 'done' ? j : undefined;
      }, 90_000, 200);
      t.diagnostic(`${ms()}: the job is done`);
      assert.equal(done.frames.filter((f) => f.state === 'done').length, FRAMES);
      const runs = await readLedger(ledger);
      const frames = Array.from({ length: FRAMES }, (_, i) => i + 1);
      assert.deepEqual(frames.filter((f) => runs.get(f) !== 1), [], `frames not rendered exactly once: ${JSON.stringify([...runs])}`);
      t.diagnostic(`the job of ${FRAMES} frames took ${Date.now() - started} ms from the cluster's start`);
    } catch (err) {
      // what the registry and the schedulers did meanwhile (their info and warnings)
      for (const [i, p] of [registry, ...schedulers].entries()) {
        const lines = p.output.split('\n').filter((l) => !l.includes('"level":20')).join('\n');
        t.diagnostic(`${i === 0 ? 'the registry' : `scheduler ${i}`}'s log (${p.running ? 'running' : 'killed'}):\n${lines.slice(-6_000)}`);
      }
      throw err;
    }
  });
});

test('cluster - renderbus up --cluster takes 3 or 1, and not with --site', () => {
  const up = (...args: string[]) => spawnSync(process.execPath, [CLI, 'up', '--data', join(tmpdir(), `rb-never-${randomUUID()}`), ...args], { encoding: 'utf8', timeout: 20_000 });
  const two = up('--cluster', '2');
  assert.equal(two.status, 2);
  assert.match(two.stderr, /--cluster 2: give 3 \(a cluster of three NATS servers on this machine\) or 1/);
  const linked = up('--cluster', '3', '--site', 'studio');
  assert.equal(linked.status, 2);
  assert.match(linked.stderr, /--cluster 3 with --site: a linked site runs on one NATS server/);
});

test('cluster - renderbus up --cluster 3: jobs answers with every URL in farm.json, and with the first member down', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'rb-cluster-up-'));
  const up = new ActorProcess('up', spawn(process.execPath, [CLI, 'up', '--data', dir, '--cluster', '3', '--slots', '0', '--monitor-port', '-1'], { stdio: ['ignore', 'pipe', 'pipe'] }));
  t.after(async () => {
    await up.kill('SIGTERM');
    await rm(dir, { recursive: true, force: true });
  });
  const t0 = Date.now();
  const ready = await waitUntil('the farm to be up', async () => {
    if (!up.running) return { exited: true } as const; // fails below, at once
    const f = await readFile(join(dir, 'farm.json'), 'utf8').then((s) => JSON.parse(s) as { url: string; servers?: string[]; natsPids?: number[] }, () => undefined);
    return f && /is up/.test(up.output) ? { exited: false, farm: f } as const : undefined;
  }, 30_000, 100);
  assert.ok(!ready.exited, `up exited:\n${up.output}`);
  const farm = ready.farm;
  t.diagnostic(`renderbus up --cluster 3 was up in ${Date.now() - t0} ms`);
  assert.equal(farm.servers?.length, 3);
  assert.equal(farm.url, farm.servers?.[0]);
  assert.equal(new Set(farm.natsPids).size, 3);
  const rbJobs = () => spawnSync(process.execPath, [CLI, '--data', dir, 'jobs'], { encoding: 'utf8', timeout: 20_000 });
  const before = rbJobs();
  assert.equal(before.status, 0, before.stderr);
  // a credential issued while it runs gets in at every member (each one reloads the shared auth.conf)
  const file = join(dir, 'ann.creds');
  const add = spawnSync(process.execPath, [CLI, '--data', dir, 'credentials', 'add', 'artist', 'ann', '--out', file], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(add.status, 0, add.stderr);
  const ann = await readCredentials(file);
  assert.equal(ann.url, farm.servers!.join(','), 'the credential names every member');
  for (const url of farm.servers!) {
    await waitUntil(`ann to get in at ${url}`, async () => {
      // that member itself: no moving on to the others it names in INFO
      const nc = await connect({ servers: url, ...loginOptions(ann), maxReconnectAttempts: 0, ignoreClusterUpdates: true, timeout: 2_000 });
      await nc.close();
      return true;
    }, 10_000, 50);
  }
  // the first URL's member: a command given farm.url alone would find nobody there
  process.kill(farm.natsPids![0]!, 'SIGKILL');
  const after = rbJobs();
  assert.equal(after.status, 0, after.stderr);
  assert.match(after.stdout, /no jobs/);
  up.proc.kill('SIGTERM');
  await once(up.proc, 'exit');
  // its queue is in the cluster's stores: a one-server start would not see it, so it is refused
  const single = spawnSync(process.execPath, [CLI, 'up', '--data', dir, '--slots', '0', '--monitor-port', '-1'], { encoding: 'utf8', timeout: 20_000 });
  assert.notEqual(single.status, 0);
  assert.match(single.stderr, /holds the JetStream store of a farm that ran on a NATS cluster/);
});
