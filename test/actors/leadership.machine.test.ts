import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createActor, fromPromise, SimulatedClock } from 'xstate';
import { leadershipMachine, LeaseTakenError, type KeyState, type LeadershipTiming } from '../../actors/leadership/machine.ts';
import { PROTOCOL_MAJOR, type Leadership } from '../../protocol/index.ts';

const flush = async () => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
};
const timing: LeadershipTiming = { renewMs: 500, fenceMs: 2_000, lapseMs: 3_000, pollMs: 250 };
const lease = (o: Partial<Leadership> = {}): Leadership => ({ v: PROTOCOL_MAJOR, role: 'scheduler', holder: 'other', host: 'elsewhere', pid: 42, since: 0, renewedAt: 0, ...o });

/**
 * A candidate against a fake key: `key` is what a read finds, `claims` and `renewals` what it
 * wrote; `renewFails` makes renewals throw (a lost bus: Error, a lost race: LeaseTakenError).
 */
function candidate(o: { key: KeyState; deadHere?: (l: Leadership) => boolean; claimFails?: boolean; holdAtFence?: boolean }) {
  const clock = new SimulatedClock();
  const rec = { key: o.key, claims: [] as number[], renewals: [] as number[], releases: [] as number[], won: 0, lost: 0, held: 0, resumed: 0, renewFails: null as Error | null };
  const m = leadershipMachine.provide({
    actors: {
      open: fromPromise<void>(async () => {}),
      read: fromPromise<KeyState>(async () => rec.key),
      claim: fromPromise<{ revision: number; sentAt: number }, { expect: number }>(async ({ input }) => {
        rec.claims.push(input.expect);
        if (o.claimFails) throw new LeaseTakenError('taken');
        return { revision: input.expect + 1, sentAt: clock.now() };
      }),
      renew: fromPromise<{ revision: number; sentAt: number }, { revision: number }>(async ({ input }) => {
        rec.renewals.push(input.revision);
        if (rec.renewFails) throw rec.renewFails;
        return { revision: input.revision + 1, sentAt: clock.now() };
      }),
      release: fromPromise<void, { revision: number }>(async ({ input }) => void rec.releases.push(input.revision)),
    },
    actions: {
      won: () => void (rec.won += 1),
      lost: () => void (rec.lost += 1),
      held: () => void (rec.held += 1),
      resumed: () => void (rec.resumed += 1),
    },
  });
  const a = createActor(m, { clock, input: { holder: 'me', timing, now: () => clock.now(), deadHere: o.deadHere ?? (() => false), holdAtFence: o.holdAtFence } }).start();
  const advance = async (ms: number, step = 50) => {
    for (let t = 0; t < ms; t += step) {
      clock.increment(step);
      await flush();
    }
  };
  return { a, rec, advance };
}

test('leadership - a free key is claimed at once (created, expecting revision 0), and renewed', async () => {
  const { a, rec, advance } = candidate({ key: { revision: 0, lease: null } });
  await flush();
  assert.deepEqual(rec.claims, [0]);
  assert.equal(rec.won, 1);
  assert.ok(a.getSnapshot().matches('leading'));
  await advance(1_500);
  assert.deepEqual(rec.renewals, [1, 2, 3], 'each renewal expects the revision the last one stored');
  assert.equal(rec.lost, 0);
});

test('leadership - a released key (a delete marker) is claimed at once, expecting the marker\'s revision', async () => {
  const { rec } = candidate({ key: { revision: 7, lease: null } });
  await flush();
  assert.deepEqual(rec.claims, [7]);
});

test('leadership - a lease that keeps being renewed is never taken; one that stops is taken after the lapse', async () => {
  const { a, rec, advance } = candidate({ key: { revision: 5, lease: lease() } });
  await flush();
  assert.ok(a.getSnapshot().matches('following'));
  // the leader renews every 500 ms: 10 s pass and the standby never claims
  for (let i = 0; i < 20; i++) {
    rec.key = { revision: rec.key.revision + 1, lease: lease() };
    await advance(500);
  }
  assert.deepEqual(rec.claims, []);
  // then it dies (its last renewal was seen 500 ms ago): the standby claims once lapseMs passed on its own clock
  await advance(2_300);
  assert.deepEqual(rec.claims, [], 'not before the lapse');
  await advance(500);
  assert.deepEqual(rec.claims, [25], 'the claim expects the revision it saw lapse');
  assert.equal(rec.won, 1);
});

test('leadership - a value that does not decode is held, and lapses like any lease', async () => {
  const { rec, advance } = candidate({ key: { revision: 3, lease: null, unreadable: true } });
  await advance(2_500);
  assert.deepEqual(rec.claims, []);
  await advance(1_000);
  assert.deepEqual(rec.claims, [3]);
});

test('leadership - a restart takes over at once from its dead predecessor on this machine, but only at its first read', async () => {
  const dead = candidate({ key: { revision: 9, lease: lease({ host: 'here', pid: 7 }) }, deadHere: (l) => l.host === 'here' && l.pid === 7 });
  await flush();
  assert.deepEqual(dead.rec.claims, [9]);
  const alive = candidate({ key: { revision: 9, lease: lease({ host: 'here', pid: 8 }) }, deadHere: (l) => l.host === 'here' && l.pid === 7 });
  await flush();
  assert.deepEqual(alive.rec.claims, [], 'a live holder on this machine keeps its lease');
});

test('leadership - of two standbys one wins the claim; the loser follows the new holder', async () => {
  const { a, rec, advance } = candidate({ key: { revision: 4, lease: lease() }, claimFails: true });
  await advance(3_300);
  assert.deepEqual(rec.claims, [4]);
  assert.equal(rec.won, 0);
  assert.ok(a.getSnapshot().matches('following'));
  // the winner renews from now on: no second claim
  for (let i = 0; i < 10; i++) {
    rec.key = { revision: rec.key.revision + 1, lease: lease({ holder: 'winner' }) };
    await advance(500);
  }
  assert.deepEqual(rec.claims, [4]);
});

test('leadership - a leader whose renewal finds the key taken steps down at once', async () => {
  const { a, rec, advance } = candidate({ key: { revision: 0, lease: null } });
  await advance(600);
  assert.equal(rec.won, 1);
  rec.renewFails = new LeaseTakenError('taken');
  rec.key = { revision: 50, lease: lease({ holder: 'usurper' }) };
  await advance(500);
  assert.equal(rec.lost, 1);
  assert.ok(a.getSnapshot().matches('following'));
});

test('leadership - a leader that cannot store a renewal steps down once fenceMs passed since the last stored one, before a standby could lapse it', async () => {
  const { a, rec, advance } = candidate({ key: { revision: 0, lease: null } });
  await flush(); // claimed at 0
  await advance(1_000); // renewals sent at 500 and 1000 stored
  rec.renewFails = new Error('timeout: the bus is away');
  rec.key = { revision: 3, lease: lease({ holder: 'standby' }) }; // a standby's, whose claim this one cannot see yet
  await advance(1_900);
  assert.equal(rec.lost, 0, 'still within the fence');
  await advance(200);
  assert.equal(rec.lost, 1, 'stepped down 2 s after the send of its last stored renewal');
  assert.ok(a.getSnapshot().matches('following'));
  assert.ok(timing.fenceMs < timing.lapseMs, 'the fence ends before any standby sees the lease lapse');
});

test('leadership - release deletes the key at the revision it holds; a stop while following deletes nothing', async () => {
  const leader = candidate({ key: { revision: 0, lease: null } });
  await leader.advance(600);
  leader.a.send({ type: 'leadership.release' });
  await flush();
  assert.deepEqual(leader.rec.releases, [2]);
  assert.equal(leader.a.getSnapshot().status, 'done');
  assert.equal(leader.rec.lost, 0, 'a release is not a loss');
  const standby = candidate({ key: { revision: 3, lease: lease() } });
  await flush();
  standby.a.send({ type: 'leadership.stop' });
  await flush();
  assert.deepEqual(standby.rec.releases, []);
  assert.equal(standby.a.getSnapshot().status, 'done');
});

test('leadership - a leader that stepped down takes its own lease back at once when nobody claimed it; a lease of another holder waits for the lapse', async () => {
  const { a, rec, advance } = candidate({ key: { revision: 0, lease: null } });
  await flush();
  rec.renewFails = new Error('timeout: the bucket elects a new leader');
  rec.key = { revision: 1, lease: lease({ holder: 'me' }) };
  await advance(3_100);
  assert.equal(rec.lost, 1);
  rec.renewFails = null;
  await advance(300);
  assert.deepEqual(rec.claims, [0, 1], 'claimed back at its next read, expecting the revision it read');
  assert.equal(rec.won, 2);
  assert.ok(a.getSnapshot().matches('leading'));
});

test('leadership - with holdAtFence, a leader whose renewals are held up holds its term at the fence and goes on when one is stored: no new term', async () => {
  const { a, rec, advance } = candidate({ key: { revision: 0, lease: null }, holdAtFence: true });
  await flush(); // claimed at 0
  await advance(1_000);
  rec.renewFails = new Error('timeout: the bucket elects a new leader');
  await advance(1_900);
  assert.equal(rec.held, 0, 'still within the fence');
  await advance(200);
  assert.equal(rec.held, 1, 'held 2 s after the send of its last stored renewal');
  assert.equal(rec.lost, 0, 'held, not ended');
  await advance(3_000);
  assert.equal(rec.held, 1, 'held once, however long');
  const tried = rec.renewals.length;
  assert.ok(tried >= 8, `it keeps renewing while held (${tried} renewals sent)`);
  rec.renewFails = null;
  await advance(600);
  assert.equal(rec.resumed, 1);
  assert.deepEqual([rec.won, rec.lost, rec.claims.length], [1, 0, 1], 'the same term goes on: no step-down, no claim');
  assert.ok(a.getSnapshot().matches({ leading: { fence: 'armed' } }));
  // and the fence is armed again from the renewal that was stored
  rec.renewFails = new Error('timeout');
  await advance(2_200);
  assert.equal(rec.held, 2);
});

test('leadership - with holdAtFence, a held leader whose renewal then finds the key taken steps down', async () => {
  const { a, rec, advance } = candidate({ key: { revision: 0, lease: null }, holdAtFence: true });
  await flush();
  rec.renewFails = new Error('timeout: the bus is away');
  await advance(2_500);
  assert.equal(rec.held, 1);
  rec.renewFails = new LeaseTakenError('taken');
  rec.key = { revision: 9, lease: lease({ holder: 'standby' }) };
  await advance(600);
  assert.deepEqual([rec.lost, rec.resumed], [1, 0]);
  assert.ok(a.getSnapshot().matches('following'));
});

test('leadership - reads from a lagging copy (a lower revision) neither restart the lapse clock nor make a claim expect a stale revision', async () => {
  const { rec, advance } = candidate({ key: { revision: 20, lease: lease() } });
  await flush();
  // the leader is dead at revision 20; every other read comes from a copy stuck at revision 12
  for (let i = 0; i < 14; i++) {
    rec.key = i % 2 === 0 ? { revision: 12, lease: lease() } : { revision: 20, lease: lease() };
    await advance(250);
  }
  assert.deepEqual(rec.claims, [20], 'lapsed after 3 s on the freshest revision, and claimed expecting it');
});
