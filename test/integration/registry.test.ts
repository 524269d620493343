import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test, type TestContext } from 'node:test';
import type { NatsConnection } from '@nats-io/transport-node';
import { startRegistry } from '../../actors/registry/index.ts';
import { call, connectBus } from '../../actors/bus/index.ts';
import { once } from 'node:events';
import { waitUntil } from '../../tools/lib/wait-until.ts';
import { silentLogger } from '../../sites/logger.ts';
import {
  ANY_HOST,
  FarmError,
  isToken,
  Role,
  PROTOCOL_MAJOR,
  codecs,
  encodeAny,
  subjects,
  type Codec,
  type HostEvent,
  type HostHeartbeat,
  type HostInventory,
  type HostRegister,
  type MatchRequest,
  type RegistryHello,
  type SlotInfo,
} from '../../protocol/index.ts';
import { startNatsServer } from '../helpers/nats-server.ts';
import { anInventory } from '../helpers/builders.ts';

let nats: Awaited<ReturnType<typeof startNatsServer>>;
before(async () => {
  nats = await startNatsServer();
});
after(async () => {
  await nats.stop();
});


const idle = (n: number): SlotInfo[] => Array.from({ length: n }, (_, index) => ({ index, state: 'idle' as const }));

function aRegister(o: Partial<HostRegister> = {}): HostRegister {
  return { v: 1, host: 'h1', serverId: 's1', inventory: anInventory(), slots: idle(2), heartbeatMs: 1_000, ...o };
}

function aHeartbeat(o: Partial<HostHeartbeat> = {}): HostHeartbeat {
  return { v: 1, host: 'h1', serverId: 's1', slots: idle(2), ...o };
}

/**
 * A fresh site with an operator's connection (`nc`: reads everything), a render-server connection
 * for any host (`hostNc`: plays the render servers) and a registry's; a registry started through
 * `registry()` is stopped after the test.
 */
async function setup(t: TestContext, o: { announceMs?: number; missedBeats?: number } = {}) {
  const site = `t${randomUUID().slice(0, 8)}`;
  const nc = await nats.connectAs(site, Role.Operator, 'op');
  const hostNc = await nats.connectAs(site, Role.RenderServer, ANY_HOST);
  const regNc = await nats.connectAs(site, Role.Registry);
  const stops: (() => Promise<void>)[] = [];
  t.after(async () => {
    for (const s of stops.reverse()) await s();
    await Promise.all([nc.drain(), hostNc.drain(), regNc.drain()]);
  });
  const registry = async (conn: NatsConnection = regNc) => {
    const r = await startRegistry({ nc: conn, site, log: silentLogger(), announceMs: o.announceMs ?? 100, missedBeats: o.missedBeats });
    stops.push(r.stop);
    return r;
  };
  const req = {
    register: (m: HostRegister) => call(hostNc, subjects.regRegister(site, tokenOr(m.host)), codecs.hostRegister, m, codecs.hostRegisterReply),
    heartbeat: (m: HostHeartbeat) => call(hostNc, subjects.regHeartbeat(site, m.host), codecs.hostHeartbeat, m, codecs.hostHeartbeatReply),
    bye: (host: string, serverId: string) => call(hostNc, subjects.regBye(site, host), codecs.hostBye, { v: 1, host, serverId }, codecs.hostByeReply),
    match: (m: Omit<MatchRequest, 'v'>) => call(nc, subjects.regMatch(site), codecs.matchRequest, { v: 1, ...m }, codecs.matchReply),
    list: () => call(nc, subjects.regList(site), codecs.listRequest, { v: 1 }, codecs.listReply),
  };
  return { nc, hostNc, site, registry, req };
}

/** A host name as its subject token; one that is no token (a test of bad input) goes as 'h1'. */
const tokenOr = (host: string) => (isToken(host) ? host : 'h1');

/** Collects decoded messages on a subject from now on (those `keep` accepts); `next` waits for one that fits. */
async function collect<T>(nc: NatsConnection, subject: string, codec: Codec<T>, keep: (m: T) => boolean = () => true) {
  const seen: T[] = [];
  const waiters: { pred: (m: T) => boolean; resolve: (m: T) => void }[] = [];
  const sub = nc.subscribe(subject, {
    callback: (_err, msg) => {
      let m: T;
      try {
        m = codec.decode(msg.data);
      } catch {
        return; // not this kind of message
      }
      if (!keep(m)) return;
      seen.push(m);
      for (const w of waiters.splice(0)) {
        if (w.pred(m)) w.resolve(m);
        else waiters.push(w);
      }
    },
  });
  await nc.flush();
  const next = (pred: (m: T) => boolean = () => true, timeoutMs = 3_000): Promise<T> => {
    const found = seen.find(pred);
    if (found !== undefined) return Promise.resolve(found);
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`nothing on ${subject} within ${timeoutMs} ms`)), timeoutMs);
      waiters.push({ pred, resolve: (m) => { clearTimeout(timer); resolve(m); } });
    });
  };
  return { seen, next, stop: () => sub.unsubscribe() };
}

/** Host events of one kind (`up`, `down`) on the site's event subjects. */
const hostEvents = (nc: NatsConnection, site: string, event: string) =>
  collect(nc, subjects.allEvents(site), codecs.hostEvent, (e) => e.event === event);

/** Sends raw bytes as a request and decodes the reply envelope with the given codec. */
async function raw<T>(nc: NatsConnection, subject: string, bytes: Uint8Array, reply: Codec<T>): Promise<T> {
  return reply.decode((await nc.request(subject, bytes, { timeout: 3_000 })).data);
}

async function refusal(p: Promise<unknown>): Promise<FarmError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof FarmError, `expected a FarmError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the request to be refused');
}

test('registry - lists and matches registered hosts, announcing each as up', async (t) => {
  const { nc, site, registry, req } = await setup(t);
  const ups = await hostEvents(nc, site, 'up');
  const { registryId } = await registry();
  assert.deepEqual(await req.register(aRegister({ host: 'h1', serverId: 's1', slots: idle(2) })), { registryId });
  const blender = anInventory({ packages: [{ name: 'blender', version: '4.2.1' }], ramMb: 4_096 });
  await req.register(aRegister({ host: 'h2', serverId: 's2', slots: idle(4), inventory: blender }));

  const list = await req.list();
  assert.equal(list.registryId, registryId);
  assert.deepEqual(list.hosts.map((h) => [h.host, h.serverId, h.slots.length]), [['h1', 's1', 2], ['h2', 's2', 4]]);

  const pov = await req.match({ requirements: { packages: ['povray@3.7.*'] } });
  assert.deepEqual(pov.hosts.map((h) => [h.host, h.free]), [['h1', 2]]);
  assert.equal(pov.totalHosts, 2);
  const any = await req.match({ requirements: {} });
  assert.deepEqual(any.hosts.map((h) => [h.host, h.free]), [['h2', 4], ['h1', 2]], 'most free slots first');
  const none = await req.match({ requirements: { packages: ['maya@2024'], ramMb: 6_000 } });
  assert.deepEqual(none.hosts, []);
  assert.deepEqual(none.closest, [
    { host: 'h1', missing: ['needs maya@2024, has no maya'] },
    { host: 'h2', missing: ['needs 6000 MB RAM, has 4096', 'needs maya@2024, has no maya'] },
  ]);

  const up = await ups.next((e) => e.host === 'h2');
  assert.equal(up.serverId, 's2');
  assert.equal(up.event, 'up');
  assert.deepEqual(ups.seen.map((e) => e.host).sort(), ['h1', 'h2']);
});

test('registry - a heartbeat from an unknown host or instance is answered known: false', async (t) => {
  const { registry, req } = await setup(t);
  const { registryId } = await registry();
  assert.deepEqual(await req.heartbeat(aHeartbeat()), { known: false, registryId });
  await req.register(aRegister());
  assert.deepEqual(await req.heartbeat(aHeartbeat({ load: 0.5 })), { known: true, registryId });
  assert.deepEqual(await req.heartbeat(aHeartbeat({ serverId: 'a-new-start' })), { known: false, registryId });
  const [h] = (await req.list()).hosts;
  assert.equal(h?.serverId, 's1');
  assert.equal(h?.load, 0.5);
});

test('registry - drops a silent host with a down event, keeps one that heartbeats', async (t) => {
  const { nc, site, registry, req } = await setup(t, { announceMs: 40, missedBeats: 3 });
  const downs = await hostEvents(nc, site, 'down');
  await registry();
  await req.register(aRegister({ host: 'silent', heartbeatMs: 60 }));
  await req.register(aRegister({ host: 'alive', heartbeatMs: 100 })); // its own, longer period
  const beating = setInterval(() => void req.heartbeat(aHeartbeat({ host: 'alive' })).catch(() => {}), 25);
  t.after(() => clearInterval(beating));
  const started = Date.now();
  const down = await downs.next((e) => e.host === 'silent');
  const waited = Date.now() - started;
  assert.equal(down.reason, 'missed 3 heartbeats');
  assert.equal(down.serverId, 's1');
  assert.ok(waited >= 150, `dropped after ${waited} ms, before 3 × 60 ms of silence`);
  assert.deepEqual((await req.list()).hosts.map((h) => h.host), ['alive']);
  // a host of alive's own period that never beats: once it is dropped, the registry has looked past
  // 3 × 100 ms of alive's life too, and only its heartbeats kept it
  await req.register(aRegister({ host: 'probe', heartbeatMs: 100 }));
  await downs.next((e) => e.host === 'probe');
  assert.deepEqual((await req.list()).hosts.map((h) => h.host), ['alive']);
  assert.deepEqual(downs.seen.map((e) => e.host), ['silent', 'probe']);
  clearInterval(beating);
  assert.equal((await downs.next((e) => e.host === 'alive')).reason, 'missed 3 heartbeats');
  assert.deepEqual((await req.list()).hosts, []);
});

test('registry - bye removes the host with a down event, reason stopped', async (t) => {
  const { nc, site, registry, req } = await setup(t);
  const downs = await hostEvents(nc, site, 'down');
  await registry();
  await req.register(aRegister());
  await req.bye('h1', 'not-the-holder');
  assert.equal((await req.list()).hosts.length, 1, 'a bye from another instance changes nothing');
  assert.deepEqual(await req.bye('h1', 's1'), {});
  assert.deepEqual((await req.list()).hosts, []);
  const down = await downs.next();
  assert.equal(down.reason, 'stopped');
  assert.equal(down.serverId, 's1');
  assert.deepEqual(await req.bye('h1', 's1'), {}, 'a second bye is harmless');
});

test('registry - slot events update free counts between heartbeats', async (t) => {
  const { hostNc, site, registry, req } = await setup(t);
  await registry();
  await req.register(aRegister({ slots: idle(3) }));
  const slotEvent = (o: Partial<HostEvent>): HostEvent => ({
    v: 1, host: 'h1', event: 'slot', at: Date.now(), serverId: 's1', slot: { index: 1, state: 'busy', jobId: 'j1' }, ...o,
  });
  // the events go first: flushed, the server has passed them to the registry before the match
  const free = async (freeOnly = false) => {
    await hostNc.flush();
    return (await req.match({ requirements: {}, freeOnly })).hosts.map((h) => h.free);
  };
  hostNc.publish(subjects.hostEvent(site, 'h1', 'slot'), codecs.hostEvent.encode(slotEvent({})));
  hostNc.publish(subjects.hostEvent(site, 'h1', 'slot'), codecs.hostEvent.encode(slotEvent({ slot: { index: 2, state: 'busy' } })));
  assert.deepEqual(await free(), [1], 'the events arrive before the match');
  // ignored: another instance, an unknown host, no slot, garbage
  hostNc.publish(subjects.hostEvent(site, 'h1', 'slot'), codecs.hostEvent.encode(slotEvent({ serverId: 'old', slot: { index: 0, state: 'busy' } })));
  hostNc.publish(subjects.hostEvent(site, 'h9', 'slot'), codecs.hostEvent.encode(slotEvent({ host: 'h9', slot: { index: 0, state: 'busy' } })));
  hostNc.publish(subjects.hostEvent(site, 'h1', 'slot'), codecs.hostEvent.encode(slotEvent({ slot: undefined })));
  hostNc.publish(subjects.hostEvent(site, 'h1', 'slot'), new Uint8Array([0xc1, 0xff, 0x00]));
  assert.deepEqual(await free(), [1]);
  const [rec] = (await req.list()).hosts;
  assert.deepEqual(rec?.slots[1], { index: 1, state: 'busy', jobId: 'j1' });
  hostNc.publish(subjects.hostEvent(site, 'h1', 'slot'), codecs.hostEvent.encode(slotEvent({ slot: { index: 0, state: 'busy' } })));
  assert.deepEqual(await free(true), [], 'no free slot left: freeOnly leaves the host out');
  await req.heartbeat(aHeartbeat({ slots: idle(3) }));
  assert.deepEqual(await free(), [3], 'the next heartbeat sets every slot');
  await req.heartbeat(aHeartbeat({ slots: idle(3), draining: true }));
  assert.deepEqual(await free(), [0], 'a draining host has nothing free');
});

test('registry - a restarted registry says hello with a new id and rebuilds from re-registrations', async (t) => {
  const { nc, site, registry, req } = await setup(t);
  const hellos = await collect<RegistryHello>(nc, subjects.regHello(site), codecs.regHello);
  const first = await registry();
  const hello = await hellos.next();
  assert.equal(hello.registryId, first.registryId);
  assert.equal(hello.announceMs, 100);
  await hellos.next((h) => h !== hello && h.registryId === first.registryId); // repeats
  await req.register(aRegister());
  await first.stop();
  await first.stop(); // stopping twice is harmless

  const other = await nats.connectAs(site, Role.Registry);
  t.after(() => other.drain());
  const second = await registry(other);
  assert.notEqual(second.registryId, first.registryId);
  const hello2 = await hellos.next((h) => h.registryId === second.registryId);
  assert.ok(hello2.at >= hello.at);
  assert.ok(hellos.seen.every((h) => h.registryId === first.registryId || h.registryId === second.registryId));
  const afterStop = hellos.seen.filter((h) => h.registryId === first.registryId && h.at > hello2.at);
  assert.deepEqual(afterStop, [], 'the stopped registry says nothing more');

  assert.deepEqual(await req.heartbeat(aHeartbeat()), { known: false, registryId: second.registryId });
  assert.deepEqual((await req.list()).hosts, [], 'the database starts empty');
  assert.deepEqual(await req.register(aRegister()), { registryId: second.registryId });
  assert.deepEqual((await req.list()).hosts.map((h) => h.host), ['h1']);
  assert.equal((await req.heartbeat(aHeartbeat())).known, true);
});

test('registry - malformed requests get error replies naming the problem, and it keeps serving', async (t) => {
  const { nc, hostNc, site, registry, req } = await setup(t);
  await registry();
  const garbage = new Uint8Array([0xc1, 0xc1, 0xc1]);
  for (const [conn, subject, reply] of [
    [hostNc, subjects.regRegister(site, 'h1'), codecs.hostRegisterReply],
    [hostNc, subjects.regHeartbeat(site, 'h1'), codecs.hostHeartbeatReply],
    [hostNc, subjects.regBye(site, 'h1'), codecs.hostByeReply],
    [nc, subjects.regMatch(site), codecs.matchReply],
    [nc, subjects.regList(site), codecs.listReply],
  ] as const) {
    const r = await raw<{ ok: boolean; error?: { code: string } }>(conn, subject, garbage, reply as Codec<never>);
    assert.equal(r.ok, false, subject);
    assert.equal(r.error?.code, 'RB_DECODE_FAILED', subject);
  }

  const noInventory = await raw(hostNc, subjects.regRegister(site, 'h1'), encodeAny({ ...aRegister(), inventory: undefined }), codecs.hostRegisterReply);
  assert.ok(!noInventory.ok);
  assert.equal(noInventory.error.code, 'RB_SCHEMA_MISMATCH');
  assert.match(noInventory.error.message, /\/inventory/);

  const badCpu = await refusal(req.register(aRegister({ inventory: anInventory({ cpu: { count: 0, family: 'x', type: 'y', speedMhz: 1 } }) })));
  assert.equal(badCpu.code, 'RB_SCHEMA_MISMATCH');
  assert.match(badCpu.message, /\/inventory\/cpu\/count/);

  const dupSlots = await refusal(req.register(aRegister({ slots: [{ index: 0, state: 'idle' }, { index: 0, state: 'idle' }] })));
  assert.equal(dupSlots.code, 'RB_SCHEMA_MISMATCH');
  assert.match(dupSlots.message, /slot index 0 appears twice/);

  const v2 = await raw(hostNc, subjects.regRegister(site, 'h1'), encodeAny({ ...aRegister(), v: 2 }), codecs.hostRegisterReply);
  assert.ok(!v2.ok);
  assert.equal(v2.error.code, 'RB_PROTOCOL_MISMATCH');
  assert.match(v2.error.message, /protocol 2/);
  const v2list = await raw(nc, subjects.regList(site), encodeAny({ v: 2 }), codecs.listReply);
  assert.ok(!v2list.ok);
  assert.equal(v2list.error.code, 'RB_PROTOCOL_MISMATCH');

  const badHost = await refusal(req.register(aRegister({ host: 'Not A Token' })));
  assert.equal(badHost.code, 'RB_SCHEMA_MISMATCH');
  assert.match(badHost.message, /\/host/);

  const badSpec = await refusal(req.match({ requirements: { os: 'linux@6..1' } }));
  assert.equal(badSpec.code, 'RB_BAD_SPEC');
  assert.match(badSpec.message, /requirements\.os/);
  const badPkg = await refusal(req.match({ requirements: { packages: ['povray', 'a/b/c'] } }));
  assert.equal(badPkg.code, 'RB_BAD_SPEC');
  assert.match(badPkg.message, /requirements\.packages\[1\]/);
  const unknownField = await refusal(req.match({ requirements: { gpu: 'nvidia' } as never }));
  assert.equal(unknownField.code, 'RB_SCHEMA_MISMATCH');

  assert.deepEqual((await req.list()).hosts, [], 'nothing malformed was registered');
  await req.register(aRegister());
  assert.deepEqual((await req.match({ requirements: { packages: ['povray@3.7.*'] } })).hosts.map((h) => h.host), ['h1']);
});

test('registry - a connection that drops while it starts does not fail its start; it serves once the server is back', async (t) => {
  const own = await startNatsServer();
  t.after(() => own.stop());
  const nc = await connectBus({ servers: own.url, name: 'registry-start', creds: await own.creds('drop', Role.Registry) });
  t.after(() => nc.close());
  own.proc.kill('SIGKILL'); // nats-server dies just as the registry starts
  await once(own.proc, 'exit');
  const started = startRegistry({ nc, site: 'drop', log: silentLogger() });
  const registry = await started; // resolves instead of throwing 'connection disconnected'
  t.after(() => registry.stop());
  const again = await startNatsServer({ dir: own.dir, port: own.port });
  t.after(() => again.stop());
  const client = await again.connectAs('drop', Role.Operator, 'op');
  t.after(() => client.close());
  const body = await waitUntil('the registry to answer', () => call(client, subjects.regList('drop'), codecs.listRequest, { v: PROTOCOL_MAJOR }, codecs.listReply, { timeoutMs: 500 }), 20_000);
  assert.equal(body.registryId, registry.registryId);
});
