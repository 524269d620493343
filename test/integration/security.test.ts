import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, PermissionViolationError, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { call } from '../../actors/bus/index.ts';
import { newUserKey } from '../../sites/auth/principals.ts';
import { codecs, FarmError, PROTOCOL_MAJOR, Role, streams, subjects, type JobSpec } from '../../protocol/index.ts';
import { TestFarm, TEST_OPERATOR, readLedger, rbAs, waitUntil } from '../helpers/farm.ts';
import { loginOptions } from '../helpers/nats-server.ts';

// The hostile clients of issue 12: each holds a real credential of the farm and tries what its
// role must not do. The refusals asserted here are the nats-server's (permission violations), not
// our code's, except where a subject is the caller's own and the actor must check the message.

let farm: TestFarm;
const conns = new Map<string, NatsConnection>();
/** Every publish and subscribe the server refused, per principal: `pub <subject>` / `sub <subject>`. */
const refused = new Map<string, Set<string>>();

const PRINCIPALS = [
  [Role.Artist, 'ann'],
  [Role.Artist, 'bob'],
  [Role.Operator, TEST_OPERATOR],
  [Role.RenderServer, 'node-b'], // a second render host: not the one that runs the farm's tasks
  [Role.Registry, 'registry'],
  [Role.Notifier, 'notifier'],
  [Role.Monitor, 'monitor'],
  [Role.Intake, 'intake'],
] as const;
type Who = `${(typeof PRINCIPALS)[number][0]}/${(typeof PRINCIPALS)[number][1]}` | 'scheduler/scheduler' | 'render-server/node-a';

before(async () => {
  farm = await TestFarm.start();
  await farm.registry();
  await farm.scheduler();
  await farm.renderServer('node-a', 1);
  for (const [role, name] of PRINCIPALS) {
    const nc = role === Role.Operator ? farm.nc : await farm.connectAs(role, name);
    const key = `${role}/${name}`;
    conns.set(key, nc);
    const seen = new Set<string>();
    refused.set(key, seen);
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === 'error' && s.error instanceof PermissionViolationError) seen.add(`${s.error.operation === 'publish' ? 'pub' : 'sub'} ${s.error.subject}`);
      }
    })();
  }
});
after(async () => {
  for (const [key, nc] of conns) if (!key.startsWith('operator/')) await nc.close();
  await farm?.stop();
});

const conn = (who: string) => conns.get(who)!;

/**
 * Who may publish on each subject of the catalog (site S, host node-a, user ann, job j1). Written
 * out by hand from docs/security.md, not derived from protocol/roles.ts, so a permission that grows
 * by mistake fails here.
 */
function ownersTable(site: string): [string, Who[]][] {
  const r = `rb.${site}`;
  return [
    [`${r}.reg.hello`, ['registry/registry']],
    [`${r}.reg.register.node-a`, ['render-server/node-a']],
    [`${r}.reg.heartbeat.node-a`, ['render-server/node-a']],
    [`${r}.reg.bye.node-a`, ['render-server/node-a']],
    [`${r}.reg.match`, ['scheduler/scheduler', 'operator/op', 'intake/intake']],
    [`${r}.reg.list`, ['artist/ann', 'artist/bob', 'operator/op', 'scheduler/scheduler', 'monitor/monitor', 'intake/intake']],
    [`${r}.sched.submit.ann`, ['artist/ann']],
    [`${r}.sched.ctl.ann`, ['artist/ann']],
    [`${r}.op.ctl`, ['operator/op', 'monitor/monitor']],
    [`${r}.op.limits`, ['operator/op']],
    [`${r}.op.shares`, ['operator/op']],
    [`${r}.op.budgets`, ['operator/op']],
    [`${r}.op.hosts`, ['operator/op']],
    [`${r}.sched.query`, ['artist/ann', 'artist/bob', 'operator/op', 'notifier/notifier', 'monitor/monitor', 'intake/intake']],
    // a peer's job (submit, cancel) and news of a job sent to a peer: the peer is the last token
    [`${r}.sched.intake.studio`, ['intake/intake']],
    [`${r}.sched.remote.studio`, ['intake/intake']],
    // lifting a peer's quarantine (`renderbus site release`): operators only
    [`${r}.link.release`, ['operator/op']],
    // a `site: auto` job's quotes, asked of the site's services (its site-link answers); the queue's
    // load, asked by the site-link for a peer's quote: no role of this table may ask either
    [`${r}.link.quotes`, ['scheduler/scheduler']],
    [`${r}.sched.load`, []],
    [`${r}.sched.result.node-a`, ['render-server/node-a']],
    [`${r}.sched.leases.node-a`, ['render-server/node-a']],
    [`${r}.sched.hello`, ['scheduler/scheduler']],
    [`${r}.host.node-a.assign`, ['scheduler/scheduler']],
    [`${r}.host.node-a.ctl`, ['scheduler/scheduler', 'operator/op']],
    [`${r}.evt.job.j1.done`, ['scheduler/scheduler']],
    [`${r}.evt.frame.j1.1.done`, ['scheduler/scheduler']],
    [`${r}.evt.frame.j1.1.failed`, ['scheduler/scheduler']],
    [`${r}.evt.host.node-a.down`, ['registry/registry']],
    [`${r}.evt.host.node-a.up`, ['registry/registry']],
    [`${r}.evt.host.node-a.slot`, ['render-server/node-a']],
    [`${r}.evt.host.node-a.sick`, ['scheduler/scheduler']],
    [`${r}.evt.notify.j1.sent`, ['notifier/notifier']],
    [`${r}.journal.submit`, ['scheduler/scheduler']],
    [`$JS.API.STREAM.DELETE.${streams.journal(site)}`, ['scheduler/scheduler']],
    [`$JS.API.STREAM.PURGE.${streams.events(site)}`, ['scheduler/scheduler']],
    [`$JS.API.STREAM.DELETE.${streams.events(site)}`, ['scheduler/scheduler']],
    [`$JS.API.CONSUMER.CREATE.${streams.journal(site)}`, ['scheduler/scheduler']],
    // the leadership leases (a standby takes over when one lapses): each service writes its own key only
    [`$KV.${streams.leaders(site)}.scheduler`, ['scheduler/scheduler']],
    [`$KV.${streams.leaders(site)}.registry`, ['registry/registry']],
    [`$JS.API.STREAM.CREATE.KV_${streams.leaders(site)}`, ['scheduler/scheduler', 'registry/registry']],
    [`$JS.API.STREAM.DELETE.KV_${streams.leaders(site)}`, ['scheduler/scheduler']],
    [`$JS.API.STREAM.PURGE.KV_${streams.leaders(site)}`, ['scheduler/scheduler']],
    // reading who leads (`renderbus leaders`): the services and operators
    [`$JS.API.STREAM.MSG.GET.KV_${streams.leaders(site)}`, ['scheduler/scheduler', 'registry/registry', 'operator/op']],
  ];
}

test('security - a client without credentials, or with a key the farm never issued, is refused by the server', async () => {
  await assert.rejects(connect({ servers: farm.url, maxReconnectAttempts: 0, timeout: 2_000 }), /authorization/i);
  const stranger = { role: Role.Operator, name: 'op', site: farm.site, seed: newUserKey().seed };
  await assert.rejects(connect({ servers: farm.url, maxReconnectAttempts: 0, timeout: 2_000, ...loginOptions(stranger) }), /authorization/i);
});

test('security - every role is refused by the server what it must not publish, and the farm\'s state is unchanged', async () => {
  const jsm = await jetstreamManager(await farm.connectAs(Role.Scheduler));
  const before = { journal: (await jsm.streams.info(streams.journal(farm.site))).state.messages, jobs: (await farm.jobs()).length };
  const expected = new Map<string, string[]>();
  for (const [subject, owners] of ownersTable(farm.site)) {
    for (const [role, name] of PRINCIPALS) {
      const who = `${role}/${name}`;
      if ((owners as string[]).includes(who)) continue;
      // garbage: if the server let it through, the actors would answer or store it
      conn(who).publish(subject, new Uint8Array([0xc1]), { reply: `_INBOX.${role}.${name}.probe` });
      expected.set(who, [...(expected.get(who) ?? []), `pub ${subject}`]);
    }
  }
  await Promise.all([...conns.values()].map((c) => c.flush()));
  await waitUntil('the server to refuse every forbidden publish', () => [...expected].every(([who, list]) => list.every((e) => refused.get(who)!.has(e))), 10_000, 50).catch(() => {});
  const missing = [...expected].flatMap(([who, list]) => list.filter((e) => !refused.get(who)!.has(e)).map((e) => `${who}: ${e}`));
  assert.deepEqual(missing, [], 'the server let these through');
  assert.ok([...expected.values()].flat().length > 150, 'the table covers every role');
  const afterwards = { journal: (await jsm.streams.info(streams.journal(farm.site))).state.messages, jobs: (await farm.jobs()).length };
  assert.deepEqual(afterwards, before, 'no journal record, no job, no stream deleted');
});

test('security - nobody subscribes where its role may not read: tasks, the journal, other principals\' replies', async () => {
  const r = `rb.${farm.site}`;
  const tries: [string, string][] = [
    ['artist/ann', `${r}.host.node-a.assign`],
    ['artist/ann', `${r}.journal.>`],
    ['artist/ann', `${r}.sched.>`],
    ['artist/ann', '_INBOX.>'],
    ['artist/ann', '_INBOX.artist.bob.>'],
    ['artist/ann', '_INBOX.operator.op.>'],
    ['render-server/node-b', `${r}.host.node-a.>`],
    ['render-server/node-b', `${r}.evt.>`],
    ['render-server/node-b', '_INBOX.>'],
    ['monitor/monitor', '_INBOX.>'],
    ['monitor/monitor', `${r}.journal.>`],
    ['notifier/notifier', `${r}.host.>`],
    ['registry/registry', `${r}.sched.>`],
    ['operator/op', '_INBOX.>'],
  ];
  for (const [who, subject] of tries) conn(who).subscribe(subject, { callback: () => {} });
  await waitUntil('the server to refuse every subscription', () => tries.every(([who, s]) => refused.get(who)!.has(`sub ${s}`)), 10_000, 50).catch(() => {});
  assert.deepEqual(tries.filter(([who, s]) => !refused.get(who)!.has(`sub ${s}`)), [], 'the server let these subscribe');
});

test('security - an artist\'s job is theirs: the user comes from the credential, and others cannot steer it', async () => {
  const ann = conn('artist/ann');
  const bob = conn('artist/bob');
  const { spec } = await farm.ledgerJob('anns', '1-2', 0.1, { hold: true });
  // submitting in bob's name, on her own subject: the scheduler refuses; on bob's: the server does
  await assert.rejects(call(ann, subjects.schedSubmit(farm.site, 'ann'), codecs.submitRequest, { v: PROTOCOL_MAJOR, spec: { ...spec, user: 'bob' } }, codecs.submitReply), (e: FarmError) => e.code === 'RB_FORBIDDEN' && /user 'bob'/.test(e.message));
  await assert.rejects(call(ann, subjects.schedSubmit(farm.site, 'bob'), codecs.submitRequest, { v: PROTOCOL_MAJOR, spec }, codecs.submitReply, { timeoutMs: 3_000 }), (e: FarmError) => e.code === 'RB_FORBIDDEN' && /refused/.test(e.message));
  const { jobId } = await call(ann, subjects.schedSubmit(farm.site, 'ann'), codecs.submitRequest, { v: PROTOCOL_MAJOR, spec }, codecs.submitReply);
  assert.equal((await farm.job(jobId)).user, 'ann', 'the job is ann\'s, as her credential says');
  // bob may not cancel, retry or re-prioritise it, on his own subject (the scheduler) or hers (the server)
  for (const action of ['cancel', 'priority', 'release'] as const) {
    const req = { v: PROTOCOL_MAJOR as 1, action, jobId, ...(action === 'priority' ? { priority: 1 } : {}) };
    await assert.rejects(call(bob, subjects.schedCtl(farm.site, 'bob'), codecs.ctlRequest, req, codecs.ctlReply), (e: FarmError) => e.code === 'RB_FORBIDDEN' && /belongs to 'ann'/.test(e.message), action);
  }
  await assert.rejects(call(bob, subjects.schedCtl(farm.site, 'ann'), codecs.ctlRequest, { v: PROTOCOL_MAJOR, action: 'cancel', jobId }, codecs.ctlReply, { timeoutMs: 3_000 }), (e: FarmError) => e.code === 'RB_FORBIDDEN');
  // nor change the farm's settings, which are for operators
  await assert.rejects(call(bob, subjects.schedLimits(farm.site), codecs.limitsRequest, { v: PROTOCOL_MAJOR, action: 'set', limit: { name: 'maya', max: 0, per: 'task' } }, codecs.limitsReply), (e: FarmError) => e.code === 'RB_FORBIDDEN' && /for operators/.test(e.message));
  const job = await farm.job(jobId);
  assert.equal(job.state, 'held');
  assert.equal(job.priority, 50);
  // the CLI says the same, by name (exit 1)
  const cli = rbAs(farm, await farm.credsFile(Role.Artist, 'bob'), 'cancel', jobId);
  assert.equal(cli.code, 1, cli.stderr);
  assert.match(cli.stderr, /belongs to 'ann'/);
  // ann may; an operator may too
  await call(ann, subjects.schedCtl(farm.site, 'ann'), codecs.ctlRequest, { v: PROTOCOL_MAJOR, action: 'priority', jobId, priority: 7 }, codecs.ctlReply);
  await call(farm.nc, subjects.opCtl(farm.site), codecs.ctlRequest, { v: PROTOCOL_MAJOR, action: 'cancel', jobId }, codecs.ctlReply);
  assert.equal((await farm.job(jobId)).state, 'cancelled');
});

test('security - a forged result from another host does not end a frame, and a host cannot register as another', async () => {
  const nodeB = conn('render-server/node-b');
  const { spec, ledger } = await farm.ledgerJob('forged', '1', 3);
  const jobId = await farm.submit(spec as JobSpec);
  const running = await waitUntil('the frame to run on node-a', async () => (await farm.job(jobId)).frames.find((f) => f.state === 'running' && f.host === 'node-a'), 20_000);
  const forged = {
    v: PROTOCOL_MAJOR as 1, slot: running.slot ?? 0, taskId: `${jobId}.0`, jobId, taskIndex: 0, attempt: running.attempt,
    status: 'done' as const, outputs: [], stats: { wallMs: 1, cpuMs: 1, peakRssKb: 1, bytesWritten: 0 }, wantNext: false, want: 0,
  };
  // claiming node-a on its own subject: refused by the scheduler; on node-a's subject: by the server
  await assert.rejects(call(nodeB, subjects.schedResult(farm.site, 'node-b'), codecs.taskResult, { ...forged, host: 'node-a' }, codecs.taskResultReply), (e: FarmError) => e.code === 'RB_FORBIDDEN' && /node-b/.test(e.message));
  await assert.rejects(call(nodeB, subjects.schedResult(farm.site, 'node-a'), codecs.taskResult, { ...forged, host: 'node-a' }, codecs.taskResultReply, { timeoutMs: 3_000 }), (e: FarmError) => e.code === 'RB_FORBIDDEN' && /refused/.test(e.message));
  // as itself: node-b holds no lease on that task, so the result is stale and changes nothing
  await call(nodeB, subjects.schedResult(farm.site, 'node-b'), codecs.taskResult, { ...forged, host: 'node-b' }, codecs.taskResultReply).catch(() => {});
  assert.equal((await farm.job(jobId)).frames[0]?.state, 'running', 'the real render goes on');
  const register = { v: PROTOCOL_MAJOR as 1, host: 'node-a', serverId: 'evil', inventory: (await farm.hosts())[0]!.inventory, slots: [{ index: 0, state: 'idle' as const }], heartbeatMs: 1_000 };
  await assert.rejects(call(nodeB, subjects.regRegister(farm.site, 'node-b'), codecs.hostRegister, register, codecs.hostRegisterReply), (e: FarmError) => e.code === 'RB_FORBIDDEN');
  await assert.rejects(call(nodeB, subjects.regRegister(farm.site, 'node-a'), codecs.hostRegister, register, codecs.hostRegisterReply, { timeoutMs: 3_000 }), (e: FarmError) => e.code === 'RB_FORBIDDEN');
  const done = await farm.waitJob(jobId, 'done', 30_000);
  assert.equal(done.frames[0]?.host, 'node-a');
  assert.deepEqual([...(await readLedger(ledger)).entries()], [[1, 1]], 'the frame was rendered, once, by the host that held it');
  assert.deepEqual((await farm.hosts()).map((h) => [h.host, h.serverId !== 'evil']), [['node-a', true]]);
});

test('security - a refused credential is named: the CLI says which subject and whose credential', async () => {
  const cli = rbAs(farm, await farm.credsFile(Role.Artist, 'ann'), 'host', 'node-a', '--drain');
  assert.equal(cli.code, 1, cli.stderr);
  assert.match(cli.stderr, /refused .*host\.node-a\.ctl.*artist ann/);
  await sleep(0);
});
