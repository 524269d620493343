import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createActor, fromPromise, SimulatedClock } from 'xstate';
import { schedulerMachine } from '../../actors/scheduler/index.ts';
import { ADOPT_WINDOW_MS, LEASE_CHECK_MS } from '../../actors/scheduler/machine.ts';

const ok = <T>(v: T) => fromPromise<T>(async () => v);
const done = () => fromPromise<void>(async () => {});
const flush = () => new Promise((r) => setImmediate(r));

test('scheduler - opens its store, replays the journal, then serves', async () => {
  const order: string[] = [];
  const m = schedulerMachine.provide({
    actors: {
      openStore: fromPromise<void>(async () => void order.push('open')),
      recover: fromPromise(async () => (order.push('recover'), 3)),
      dispatchRound: fromPromise<void>(async () => void order.push('dispatch')),
    },
  });
  const clock = new SimulatedClock();
  const a = createActor(m, { clock }).start();
  await flush();
  assert.deepEqual(order, ['open', 'recover']);
  assert.ok(a.getSnapshot().matches({ serving: { dispatch: 'adopting' } }), 'serving, but first listening for running tasks');
  clock.increment(ADOPT_WINDOW_MS);
  await flush();
  assert.deepEqual(order, ['open', 'recover', 'dispatch']);
  assert.ok(a.getSnapshot().matches({ serving: { dispatch: 'idle' } }));
});

test('scheduler - retries opening its store with backoff', async () => {
  const clock = new SimulatedClock();
  let tries = 0;
  const m = schedulerMachine.provide({
    actors: {
      openStore: fromPromise(async () => {
        tries += 1;
        if (tries < 3) throw new Error('no JetStream');
      }),
      recover: ok(0),
      dispatchRound: done(),
    },
  });
  const a = createActor(m, { clock }).start();
  await flush();
  assert.equal(tries, 1);
  assert.equal(a.getSnapshot().value, 'waitingForStore');
  clock.increment(999); // first retry after 1 s (500 ms × 2^1)
  await flush();
  assert.equal(tries, 1);
  clock.increment(1);
  await flush();
  assert.equal(tries, 2);
  clock.increment(2000);
  await flush();
  assert.equal(tries, 3);
  assert.ok(a.getSnapshot().matches('serving'));
});

test('scheduler - runs one dispatch round at a time and repeats it when work arrived meanwhile', async () => {
  const clock = new SimulatedClock();
  let rounds = 0;
  let release: () => void = () => {};
  const m = schedulerMachine.provide({
    actors: {
      openStore: done(),
      recover: ok(0),
      dispatchRound: fromPromise(() => {
        rounds += 1;
        return new Promise<void>((r) => (release = r));
      }),
    },
  });
  const a = createActor(m, { clock }).start();
  await flush();
  clock.increment(ADOPT_WINDOW_MS);
  await flush();
  assert.equal(rounds, 1);
  a.send({ type: 'dispatch.wanted' });
  a.send({ type: 'dispatch.wanted' });
  await flush();
  assert.equal(rounds, 1, 'no second round while one runs');
  release();
  await flush();
  assert.equal(rounds, 2, 'exactly one more round for the work that arrived');
  release();
  await flush();
  assert.ok(a.getSnapshot().matches({ serving: { dispatch: 'idle' } }));
  clock.increment(2000);
  await flush();
  assert.equal(rounds, 3, 'the slow tick runs a round');
});

test('scheduler - says hello when it starts serving, and looks for expired leases every second', async () => {
  const clock = new SimulatedClock();
  let hellos = 0;
  let checks = 0;
  const m = schedulerMachine.provide({
    actors: { openStore: done(), recover: ok(0), dispatchRound: done() },
    actions: { announce: () => void (hellos += 1), expireLeases: () => void (checks += 1) },
  });
  const a = createActor(m, { clock }).start();
  await flush();
  assert.equal(hellos, 1);
  assert.equal(checks, 0);
  clock.increment(LEASE_CHECK_MS);
  assert.equal(checks, 1);
  for (let i = 0; i < 3; i++) clock.increment(LEASE_CHECK_MS);
  assert.equal(checks, 4);
  a.send({ type: 'scheduler.stop' });
  for (let i = 0; i < 3; i++) clock.increment(LEASE_CHECK_MS);
  assert.equal(checks, 4, 'a stopped scheduler checks nothing');
  assert.equal(hellos, 1);
});
