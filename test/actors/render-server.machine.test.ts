import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createActor, fromPromise, SimulatedClock, waitFor } from 'xstate';
import { MAX_MISSED_HEARTBEATS, renderServerMachine, undrainRefusal } from '../../actors/render-server/index.ts';
import { FarmError, type HostInventory } from '../../protocol/index.ts';
import { anInventory } from '../helpers/builders.ts';

const INVENTORY: HostInventory = anInventory();

const gone = () => new FarmError('RB_REGISTRY_UNAVAILABLE', 'no answer', { retryable: true });

/** The server machine with fake effects: `registry` decides what register and heartbeat answer. */
function aServer(registry: {
  register?: (n: number) => Promise<{ registryId: string }>;
  heartbeat?: (n: number, draining: boolean) => Promise<{ known: boolean; registryId: string }>;
  probe?: () => Promise<HostInventory>;
} = {}) {
  const rec = { registers: 0, heartbeats: [] as boolean[], drained: 0, undrained: 0, byeRegistered: [] as boolean[], logged: [] as string[] };
  const clock = new SimulatedClock();
  const machine = renderServerMachine.provide({
    actors: {
      probe: fromPromise<HostInventory>(async () => (registry.probe ? registry.probe() : INVENTORY)),
      register: fromPromise<{ registryId: string }, { inventory: HostInventory }>(async ({ input }) => {
        assert.equal(input.inventory, INVENTORY);
        rec.registers++;
        return registry.register ? registry.register(rec.registers) : { registryId: 'r1' };
      }),
      heartbeat: fromPromise<{ known: boolean; registryId: string }, { draining: boolean }>(async ({ input }) => {
        rec.heartbeats.push(input.draining);
        return registry.heartbeat ? registry.heartbeat(rec.heartbeats.length, input.draining) : { known: true, registryId: 'r1' };
      }),
      shutdown: fromPromise<void, { registered: boolean }>(async ({ input }) => void rec.byeRegistered.push(input.registered)),
    },
    actions: {
      drainSlots: () => void rec.drained++,
      undrainSlots: () => void rec.undrained++,
      registered: (_, p) => void rec.logged.push(p.registryId),
    },
  });
  const actor = createActor(machine, { clock, input: { host: 'h1', heartbeatMs: 1_000 } }).start();
  return { actor, clock, rec };
}

test('render-server - probes, registers and heartbeats every heartbeatMs', async () => {
  const { actor, clock, rec } = aServer();
  await waitFor(actor, (s) => s.matches('registered'));
  assert.deepEqual(actor.getSnapshot().context.inventory, INVENTORY);
  assert.equal(actor.getSnapshot().context.registryId, 'r1');
  assert.deepEqual(rec.logged, ['r1']);
  clock.increment(999);
  assert.equal(rec.heartbeats.length, 0);
  clock.increment(1);
  await waitFor(actor, (s) => s.matches({ registered: 'waiting' }) && rec.heartbeats.length === 1);
  clock.increment(1_000);
  await waitFor(actor, (s) => s.matches({ registered: 'waiting' }) && rec.heartbeats.length === 2);
  assert.deepEqual(rec.heartbeats, [false, false]);
  assert.equal(rec.registers, 1);
});

test('render-server - keeps trying to register while no registry answers, and at once on a hello', async () => {
  const { actor, clock, rec } = aServer({ register: async (n) => { if (n < 4) throw gone(); return { registryId: 'r7' }; } });
  await waitFor(actor, (s) => s.matches({ locating: 'waiting' }) && rec.registers === 1);
  clock.increment(999);
  assert.equal(rec.registers, 1);
  clock.increment(1);
  await waitFor(actor, (s) => s.matches({ locating: 'waiting' }) && rec.registers === 2);
  // a registry announces itself: try now rather than at the next retry
  actor.send({ type: 'registry.hello', registryId: 'r7' });
  await waitFor(actor, (s) => s.matches({ locating: 'waiting' }) && rec.registers === 3);
  actor.send({ type: 'registry.hello', registryId: 'r7' });
  await waitFor(actor, (s) => s.matches('registered'));
  assert.equal(rec.registers, 4);
  assert.equal(actor.getSnapshot().context.registryId, 'r7');
});

test('render-server - registers again when a heartbeat reply says the registry does not know it', async () => {
  const { actor, clock, rec } = aServer({ heartbeat: async (n) => ({ known: n !== 2, registryId: n < 2 ? 'r1' : 'r2' }) });
  await waitFor(actor, (s) => s.matches('registered'));
  clock.increment(1_000);
  await waitFor(actor, () => rec.heartbeats.length === 1);
  await waitFor(actor, (s) => s.matches({ registered: 'waiting' }));
  assert.equal(rec.registers, 1);
  clock.increment(1_000);
  await waitFor(actor, (s) => s.matches('registered') && rec.registers === 2);
});

test('render-server - a hello from a new registry instance makes it register again; the same one does not', async () => {
  const { actor, rec } = aServer({ register: async (n) => ({ registryId: n === 1 ? 'r1' : 'r2' }) });
  await waitFor(actor, (s) => s.matches('registered'));
  actor.send({ type: 'registry.hello', registryId: 'r1' });
  assert.ok(actor.getSnapshot().matches('registered'));
  assert.equal(rec.registers, 1);
  actor.send({ type: 'registry.hello', registryId: 'r2' });
  await waitFor(actor, (s) => s.matches('registered') && rec.registers === 2);
  assert.equal(actor.getSnapshot().context.registryId, 'r2');
});

test('render-server - heartbeats that go unanswered send it looking for a registry', async () => {
  const { actor, clock, rec } = aServer({ heartbeat: async () => { throw gone(); } });
  await waitFor(actor, (s) => s.matches('registered'));
  for (let i = 1; i < MAX_MISSED_HEARTBEATS; i++) {
    clock.increment(1_000);
    await waitFor(actor, (s) => s.matches({ registered: 'waiting' }) && s.context.missed === i);
  }
  clock.increment(1_000);
  await waitFor(actor, (s) => s.matches('locating') || rec.registers === 2);
  await waitFor(actor, (s) => s.matches('registered') && rec.registers === 2);
  assert.equal(actor.getSnapshot().context.missed, 0);
});

test('render-server - drain tells the slots, heartbeats say so, and it stays draining after registering again', async () => {
  const { actor, clock, rec } = aServer({ heartbeat: async (n) => ({ known: n !== 2, registryId: 'r1' }) });
  await waitFor(actor, (s) => s.matches('registered'));
  actor.send({ type: 'server.drain' });
  assert.ok(actor.getSnapshot().matches('draining'));
  assert.equal(rec.drained, 1);
  clock.increment(1_000);
  await waitFor(actor, (s) => s.matches({ draining: 'waiting' }) && rec.heartbeats.length === 1);
  clock.increment(1_000); // forgotten: registers again
  await waitFor(actor, (s) => s.matches('draining') && rec.registers === 2);
  clock.increment(1_000);
  await waitFor(actor, () => rec.heartbeats.length === 3);
  assert.deepEqual(rec.heartbeats, [true, true, true]);
});

test('render-server - undrain takes a drained server back to work: slots told, a heartbeat at once says so', async () => {
  const { actor, clock, rec } = aServer();
  await waitFor(actor, (s) => s.matches('registered'));
  actor.send({ type: 'server.undrain' }); // not draining: nothing to take back
  assert.ok(actor.getSnapshot().matches({ registered: 'waiting' }));
  assert.equal(rec.undrained, 0);
  actor.send({ type: 'server.drain' });
  clock.increment(1_000);
  await waitFor(actor, (s) => s.matches({ draining: 'waiting' }) && rec.heartbeats.length === 1);
  assert.equal(undrainRefusal(actor.getSnapshot()), null);
  actor.send({ type: 'server.undrain' });
  assert.ok(actor.getSnapshot().matches('registered'));
  assert.equal(actor.getSnapshot().context.draining, false);
  assert.equal(rec.undrained, 1);
  // without waiting a heartbeat period: the registry stops marking it draining now
  await waitFor(actor, (s) => s.matches({ registered: 'waiting' }) && rec.heartbeats.length === 2);
  assert.deepEqual(rec.heartbeats, [true, false]);
  clock.increment(1_000);
  await waitFor(actor, () => rec.heartbeats.length === 3);
  assert.deepEqual(rec.heartbeats, [true, false, false]);
  // and it can be drained again
  actor.send({ type: 'server.drain' });
  assert.ok(actor.getSnapshot().matches('draining'));
  assert.equal(rec.drained, 2);
});

test('render-server - undrain before it registered is remembered like a drain', async () => {
  const { actor, rec } = aServer({ register: async () => { throw gone(); } });
  await waitFor(actor, (s) => s.matches({ locating: 'waiting' }));
  actor.send({ type: 'server.drain' });
  actor.send({ type: 'server.undrain' });
  assert.equal(actor.getSnapshot().context.draining, false);
  assert.deepEqual([rec.drained, rec.undrained], [1, 1]);
});

test('render-server - a server leaving (a stop with a grace period) cannot be undrained', async () => {
  const { actor, clock, rec } = aServer();
  await waitFor(actor, (s) => s.matches('registered'));
  actor.send({ type: 'server.leave' });
  assert.ok(actor.getSnapshot().matches('draining'));
  assert.equal(rec.drained, 1);
  assert.match(undrainRefusal(actor.getSnapshot()) ?? '', /^is stopping: a server that is stopping cannot be undrained$/);
  actor.send({ type: 'server.undrain' }); // the machine refuses it too
  assert.ok(actor.getSnapshot().matches('draining'));
  assert.equal(rec.undrained, 0);
  clock.increment(1_000);
  await waitFor(actor, () => rec.heartbeats.length === 1);
  assert.deepEqual(rec.heartbeats, [true]);

  // a drained server told to leave is leaving too
  const other = aServer();
  await waitFor(other.actor, (s) => s.matches('registered'));
  other.actor.send({ type: 'server.drain' });
  other.actor.send({ type: 'server.leave' });
  assert.notEqual(undrainRefusal(other.actor.getSnapshot()), null);
  other.actor.send({ type: 'server.undrain' });
  assert.ok(other.actor.getSnapshot().matches('draining'));

  // and once stopping or stopped, all the more
  actor.send({ type: 'server.stop' });
  assert.notEqual(undrainRefusal(actor.getSnapshot()), null);
  await waitFor(actor, (s) => s.status === 'done');
  assert.notEqual(undrainRefusal(actor.getSnapshot()), null);
});

test('render-server - stop shuts down (saying bye when registered) and ends', async () => {
  const { actor, rec } = aServer();
  await waitFor(actor, (s) => s.matches('registered'));
  actor.send({ type: 'server.stop' });
  await waitFor(actor, (s) => s.status === 'done');
  assert.ok(actor.getSnapshot().matches('stopped'));
  assert.deepEqual(rec.byeRegistered, [true]);

  const never = aServer({ register: async () => { throw gone(); } });
  await waitFor(never.actor, (s) => s.matches({ locating: 'waiting' }));
  never.actor.send({ type: 'server.stop' });
  await waitFor(never.actor, (s) => s.status === 'done');
  assert.deepEqual(never.rec.byeRegistered, [false]);
});

test('render-server - a probe that fails stops it with the reason', async () => {
  const { actor } = aServer({ probe: async () => { throw new Error('/proc is not mounted'); } });
  await waitFor(actor, (s) => s.status === 'done');
  assert.equal(actor.getSnapshot().context.error, '/proc is not mounted');
});
