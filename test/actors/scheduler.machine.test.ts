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

test('scheduler - held (its lease unrenewed): no dispatch, no lease check, clocks paused; resumed, it dispatches at once without adopting again', async () => {
  const calls = { dispatch: 0, expire: 0, pause: 0, resume: 0, announce: 0 };
  const m = schedulerMachine.provide({
    actors: { openStore: done(), recover: ok(0), dispatchRound: fromPromise<void>(async () => void (calls.dispatch += 1)) },
    actions: {
      expireLeases: () => void (calls.expire += 1),
      pauseClocks: () => void (calls.pause += 1),
      resumeClocks: () => void (calls.resume += 1),
      announce: () => void (calls.announce += 1),
    },
  });
  const clock = new SimulatedClock();
  const a = createActor(m, { clock }).start();
  await flush();
  clock.increment(ADOPT_WINDOW_MS);
  await flush();
  assert.equal(calls.dispatch, 1);
  a.send({ type: 'lease.held' });
  assert.ok(a.getSnapshot().matches('held'));
  assert.equal(calls.pause, 1);
  const expired = calls.expire;
  a.send({ type: 'dispatch.wanted' });
  for (let i = 0; i < 5; i++) {
    clock.increment(LEASE_CHECK_MS);
    await flush();
  }
  assert.deepEqual([calls.dispatch, calls.expire], [1, expired], 'nothing dispatched and no lease taken back while held');
  a.send({ type: 'lease.resumed' });
  await flush();
  assert.equal(calls.resume, 1);
  assert.equal(calls.dispatch, 2, 'a round at once: the book and its leases are whole');
  assert.equal(calls.announce, 2, 'the render servers are asked to report again');
  assert.ok(a.getSnapshot().matches({ serving: { dispatch: 'idle' } }));
});

test('scheduler - held while it still replays its journal: it holds once the replay ends instead of serving', async () => {
  let replayed: () => void = () => {};
  const m = schedulerMachine.provide({
    actors: { openStore: done(), recover: fromPromise(() => new Promise<number>((r) => (replayed = () => r(0)))), dispatchRound: done() },
  });
  const a = createActor(m, { clock: new SimulatedClock() }).start();
  await flush();
  assert.ok(a.getSnapshot().matches('recovering'));
  a.send({ type: 'lease.held' });
  replayed();
  await flush();
  assert.ok(a.getSnapshot().matches('held'));
  a.send({ type: 'lease.resumed' });
  await flush();
  assert.ok(a.getSnapshot().matches('serving'));
});
