import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SimulatedClock, createActor } from 'xstate';
import { registryMachine, registryPhase, type HostEventOut, type RegistryInput } from '../../actors/registry/machine.ts';
import { hostEntries, hostEntry } from '../../actors/registry/database.ts';
import type { HostHeartbeat, HostInventory, HostRegister, SlotInfo } from '../../protocol/index.ts';
import { anInventory } from '../helpers/builders.ts';


const idle = (n: number): SlotInfo[] => Array.from({ length: n }, (_, index) => ({ index, state: 'idle' as const }));

function aRegister(o: Partial<HostRegister> = {}): HostRegister {
  return { v: 1, host: 'h1', serverId: 's1', inventory: anInventory(), slots: idle(2), heartbeatMs: 1_000, ...o };
}

function aHeartbeat(o: Partial<HostHeartbeat> = {}): HostHeartbeat {
  return { v: 1, host: 'h1', serverId: 's1', slots: idle(2), ...o };
}

/** A registry machine on a simulated clock, recording what it would publish. */
function aRegistry(o: Partial<RegistryInput> = {}) {
  const clock = new SimulatedClock();
  const hellos: number[] = [];
  const published: HostEventOut[] = [];
  const machine = registryMachine.provide({
    actions: {
      announce: () => {
        hellos.push(clock.now());
      },
      publishHostEvent: (_, e: HostEventOut) => {
        published.push(e);
      },
    },
  });
  const input: RegistryInput = { registryId: 'r1', announceMs: 2_000, missedBeats: 3, sweepMs: 500, rebuildMs: 3_000, now: () => clock.now(), ...o };
  const actor = createActor(machine, { clock, input }).start();
  const hosts = () => [...hostEntries(actor.getSnapshot().context.db)].map((e) => e.record.host).sort();
  const phase = () => registryPhase(actor.getSnapshot());
  return { clock, actor, hellos, published, hosts, phase };
}

test('registry - waits in starting, then rebuilds for the rebuild window and serves', () => {
  const r = aRegistry();
  assert.equal(r.phase(), 'starting');
  r.clock.increment(10_000);
  assert.equal(r.phase(), 'starting', 'nothing happens until the runtime has subscribed');
  assert.deepEqual(r.hellos, []);
  r.actor.send({ type: 'registry.started' });
  assert.equal(r.phase(), 'rebuilding');
  r.clock.increment(2_999);
  assert.equal(r.phase(), 'rebuilding');
  r.clock.increment(1);
  assert.equal(r.phase(), 'serving');
});

test('registry - says hello at start and every announce period', () => {
  const r = aRegistry();
  r.actor.send({ type: 'registry.started' });
  assert.deepEqual(r.hellos, [0]);
  r.clock.increment(1_999);
  assert.deepEqual(r.hellos, [0]);
  r.clock.increment(1);
  r.clock.increment(2_000);
  r.clock.increment(2_000);
  assert.deepEqual(r.hellos, [0, 2_000, 4_000, 6_000], 'hello keeps going after rebuilding ends');
});

test('registry - accepts registrations while rebuilding and publishes up', () => {
  const r = aRegistry();
  r.actor.send({ type: 'registry.started' });
  r.actor.send({ type: 'host.register', msg: aRegister() });
  assert.equal(r.phase(), 'rebuilding');
  assert.deepEqual(r.hosts(), ['h1']);
  assert.deepEqual(r.published, [{ event: 'up', host: 'h1', serverId: 's1', at: 0 }]);
  r.actor.send({ type: 'host.register', msg: aRegister() });
  assert.equal(r.published.length, 1, 'the same instance registering again is not a second up');
});

test('registry - a restarted render server is down for its old instance and up for the new one', () => {
  const r = aRegistry();
  r.actor.send({ type: 'registry.started' });
  r.actor.send({ type: 'host.register', msg: aRegister() });
  r.clock.increment(100);
  r.actor.send({ type: 'host.register', msg: aRegister({ serverId: 's2' }) });
  assert.deepEqual(r.published.slice(1), [
    { event: 'down', host: 'h1', serverId: 's1', at: 100, reason: 'server restarted' },
    { event: 'up', host: 'h1', serverId: 's2', at: 100 },
  ]);
  assert.equal(hostEntry(r.actor.getSnapshot().context.db, 'h1')?.record.serverId, 's2');
});

test('registry - sweep drops a silent host at the right time, not before', () => {
  const r = aRegistry(); // sweep every 500 ms; a host is dropped after 3 × 1000 ms of silence
  r.actor.send({ type: 'registry.started' });
  r.actor.send({ type: 'host.register', msg: aRegister() }); // t = 0
  r.clock.increment(3_000);
  assert.deepEqual(r.hosts(), ['h1'], 'exactly three periods of silence is not yet missed');
  r.clock.increment(499);
  assert.deepEqual(r.hosts(), ['h1'], 'no sweep between 3000 and 3500');
  assert.equal(r.published.length, 1);
  r.clock.increment(1);
  assert.deepEqual(r.hosts(), []);
  assert.deepEqual(r.published[1], { event: 'down', host: 'h1', serverId: 's1', at: 3_500, reason: 'missed 3 heartbeats' });
});

test('registry - heartbeats keep a host, and the sweep counts from the last one', () => {
  const r = aRegistry({ missedBeats: 2 });
  r.actor.send({ type: 'registry.started' });
  r.actor.send({ type: 'host.register', msg: aRegister() });
  for (let t = 0; t < 10_000; t += 1_000) {
    r.clock.increment(1_000);
    r.actor.send({ type: 'host.heartbeat', msg: aHeartbeat() });
  }
  assert.deepEqual(r.hosts(), ['h1']);
  assert.equal(hostEntry(r.actor.getSnapshot().context.db, 'h1')?.record.lastSeenAt, 10_000);
  r.clock.increment(2_000); // 12 000: silent for exactly 2 periods
  assert.deepEqual(r.hosts(), ['h1']);
  r.clock.increment(500);
  assert.deepEqual(r.hosts(), []);
  assert.equal(r.published.at(-1)?.reason, 'missed 2 heartbeats');
});

test('registry - a heartbeat from another instance does not keep a host alive', () => {
  const r = aRegistry();
  r.actor.send({ type: 'registry.started' });
  r.actor.send({ type: 'host.register', msg: aRegister() });
  r.clock.increment(2_500);
  r.actor.send({ type: 'host.heartbeat', msg: aHeartbeat({ serverId: 'someone-else' }) });
  r.actor.send({ type: 'host.heartbeat', msg: aHeartbeat({ host: 'h2' }) });
  assert.deepEqual(r.hosts(), ['h1'], 'an unknown heartbeat adds nothing');
  r.clock.increment(1_000);
  assert.deepEqual(r.hosts(), []);
});

test('registry - bye removes the host and publishes down with reason stopped', () => {
  const r = aRegistry();
  r.actor.send({ type: 'registry.started' });
  r.actor.send({ type: 'host.register', msg: aRegister() });
  r.actor.send({ type: 'host.bye', msg: { v: 1, host: 'h1', serverId: 'other' } });
  assert.deepEqual(r.hosts(), ['h1']);
  r.clock.increment(50);
  r.actor.send({ type: 'host.bye', msg: { v: 1, host: 'h1', serverId: 's1' } });
  assert.deepEqual(r.hosts(), []);
  assert.deepEqual(r.published.slice(1), [{ event: 'down', host: 'h1', serverId: 's1', at: 50, reason: 'stopped' }]);
});

test('registry - slot events update the slot of a known instance only', () => {
  const r = aRegistry();
  r.actor.send({ type: 'registry.started' });
  r.actor.send({ type: 'host.register', msg: aRegister() });
  r.actor.send({ type: 'host.slot', host: 'h1', serverId: 'old', slot: { index: 0, state: 'busy' } });
  assert.equal(hostEntry(r.actor.getSnapshot().context.db, 'h1')?.idle, 2);
  r.actor.send({ type: 'host.slot', host: 'h1', serverId: 's1', slot: { index: 0, state: 'busy' } });
  assert.equal(hostEntry(r.actor.getSnapshot().context.db, 'h1')?.idle, 1);
});

test('registry - stop ends hello and the sweep', () => {
  const r = aRegistry();
  r.actor.send({ type: 'registry.started' });
  r.actor.send({ type: 'host.register', msg: aRegister() });
  r.actor.send({ type: 'registry.stop' });
  assert.equal(r.phase(), 'stopped');
  assert.equal(r.actor.getSnapshot().status, 'done');
  r.clock.increment(60_000);
  assert.deepEqual(r.hellos, [0]);
  assert.equal(r.published.length, 1, 'no down events after stop');
});

test('registry - drops nobody while itself off the bus, and gives every host a full period once back', () => {
  const r = aRegistry();
  r.actor.send({ type: 'registry.started' });
  r.actor.send({ type: 'host.register', msg: aRegister() });
  r.actor.send({ type: 'bus.down' });
  for (let t = 0; t < 60_000; t += 500) r.clock.increment(500); // a 60 s outage
  assert.deepEqual(r.hosts(), ['h1'], 'heartbeats could not reach the registry: not the host\'s fault');
  r.actor.send({ type: 'bus.up' });
  for (let t = 0; t < 3_000; t += 500) r.clock.increment(500);
  assert.deepEqual(r.hosts(), ['h1'], 'three heartbeat periods from the reconnect');
  for (let t = 0; t < 1_000; t += 500) r.clock.increment(500);
  assert.deepEqual(r.hosts(), [], 'still silent after the grace: dropped');
  assert.equal(r.published.filter((e) => e.event === 'down').length, 1);
});
