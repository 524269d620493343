import { assign, fromPromise, raise, setup } from 'xstate';
import type { Leadership } from '../../protocol/index.ts';

/**
 * The lease's clock, in ms. A leader renews every `renewMs` and steps down when no renewal it
 * sent in the last `fenceMs` was stored; a standby takes over once the key's revision stayed the
 * same for `lapseMs` on its own clock. `lapseMs - fenceMs` is the margin that keeps two leaders
 * from overlapping: the old one has stopped before a standby may start (docs/cluster.md).
 */
export interface LeadershipTiming {
  renewMs: number;
  fenceMs: number;
  lapseMs: number;
  /** How often a standby reads the key. */
  pollMs: number;
}

export const DEFAULT_LEADERSHIP_TIMING: LeadershipTiming = { renewMs: 250, fenceMs: 3_000, lapseMs: 4_000, pollMs: 250 };

/** A read of the key: its revision (0: never written) and the lease it holds (none: never taken, or released). */
export interface KeyState {
  revision: number;
  lease: Leadership | null;
  /** A value that does not decode: held by somebody, and lapses like any lease. */
  unreadable?: boolean;
}

/** A claim or renewal that lost the race: another candidate wrote the key first. */
export class LeaseTakenError extends Error {
  readonly leaseTaken = true;
}

export function isLeaseTaken(err: unknown): boolean {
  return (err as { leaseTaken?: unknown } | null)?.leaseTaken === true;
}

export interface LeadershipInput {
  /** This candidate's instance id, as its lease records it. */
  holder: string;
  timing: LeadershipTiming;
  now: () => number;
  /** The holder is a process of this machine that is gone: a restart takes over at once. */
  deadHere: (lease: Leadership) => boolean;
  /**
   * At the fence, hold the term (`held`) instead of ending it, until a renewal is stored again
   * (`resumed`) or finds the key taken (`lost`). For a term whose state is costly to rebuild (the
   * scheduler replays its journal); a term without state steps down as before.
   */
  holdAtFence?: boolean;
}

interface LeadershipContext extends LeadershipInput {
  /** The key's revision as last read, and since when it has not changed (our clock). */
  seen: { revision: number; since: number } | null;
  /** No read has been made yet: only then is a dead predecessor on this machine taken over at once. */
  first: boolean;
  /** The revision a claim expects the key at (0: never written). */
  claimFrom: number;
  /** The leader's last stored revision, and when the renewal that stored it was sent. */
  revision: number;
  renewedSentAt: number;
}

export type LeadershipEvent = { type: 'leadership.release' } | { type: 'leadership.stop' } | { type: 'renewed' };

/**
 * One candidate for a site's leadership (scheduler or registry): opening the bucket →
 * following (reading the key until it is free or has lapsed) → claiming (a write that expects
 * the revision it read, so of two standbys one wins) → leading (renewing; stepping down when a
 * renewal finds the key taken, or when none was stored for `fenceMs`: with `holdAtFence` it holds
 * its term there instead, until a renewal is stored or finds the key taken) → back to following.
 * `won` and `lost` tell the runtime to start and stop its term. Released (the process stops):
 * the key is deleted, so a standby takes over at its next read rather than after the lapse.
 */
export const leadershipMachine = setup({
  types: {
    context: {} as LeadershipContext,
    input: {} as LeadershipInput,
    events: {} as LeadershipEvent,
  },
  actors: {
    open: fromPromise<void>(() => Promise.reject(new Error('open not provided'))),
    read: fromPromise<KeyState>(() => Promise.reject(new Error('read not provided'))),
    claim: fromPromise<{ revision: number; sentAt: number }, { expect: number }>(() => Promise.reject(new Error('claim not provided'))),
    renew: fromPromise<{ revision: number; sentAt: number }, { revision: number }>(() => Promise.reject(new Error('renew not provided'))),
    release: fromPromise<void, { revision: number }>(() => Promise.reject(new Error('release not provided'))),
  },
  actions: {
    won: () => {},
    lost: () => {},
    /** No renewal stored for fenceMs: the term must stop acting (it may resume). */
    held: () => {},
    /** A renewal was stored again while held: nobody claimed the key meanwhile, the term goes on. */
    resumed: () => {},
    reportOpenFailure: () => {},
  },
  delays: {
    poll: ({ context }) => context.timing.pollMs,
    renewEvery: ({ context }) => context.timing.renewMs,
    retryOpen: 1_000,
    // from the send of the last stored renewal: a renewal stored late still proves nothing later
    fence: ({ context }) => Math.max(0, context.renewedSentAt + context.timing.fenceMs - context.now()),
  },
  guards: {
    free: ({ event }) => {
      const k = (event as unknown as { output: KeyState }).output;
      return k.lease === null && k.unreadable !== true;
    },
    predecessorDead: ({ context, event }) => {
      const k = (event as unknown as { output: KeyState }).output;
      return context.first && k.lease !== null && context.deadHere(k.lease);
    },
    // its own lease, still in the key after it stepped down (renewals held up, nobody claimed): it
    // takes it back at once, the write expecting what it read, rather than wait out its own lapse
    ours: ({ context, event }) => {
      const k = (event as unknown as { output: KeyState }).output;
      return k.lease !== null && k.lease.holder === context.holder;
    },
    lapsed: ({ context, event }) => {
      const k = (event as unknown as { output: KeyState }).output;
      return context.seen !== null && context.seen.revision === k.revision && context.now() - context.seen.since >= context.timing.lapseMs;
    },
    // A revision below one already seen comes from a copy of the bucket that lags (a direct get is
    // answered by any replica, e.g. a member catching up after a restart): it tells nothing, and
    // must not restart the lapse clock, or reads alternating between copies would never let it lapse.
    stale: ({ context, event }) => {
      const k = (event as unknown as { output: KeyState }).output;
      return context.seen !== null && k.revision < context.seen.revision;
    },
    taken: ({ event }) => isLeaseTaken((event as { error?: unknown }).error),
    holdAtFence: ({ context }) => context.holdAtFence === true,
  },
}).createMachine({
  id: 'leadership',
  context: ({ input }) => ({ ...input, seen: null, first: true, claimFrom: 0, revision: 0, renewedSentAt: 0 }),
  initial: 'opening',
  on: { 'leadership.stop': '.released' },
  states: {
    opening: {
      invoke: {
        src: 'open',
        onDone: 'following',
        onError: { target: 'waitingForStore', actions: 'reportOpenFailure' },
      },
    },
    waitingForStore: { after: { retryOpen: 'opening' } },
    following: {
      initial: 'reading',
      states: {
        reading: {
          invoke: {
            src: 'read',
            onDone: [
              { guard: 'stale', target: 'waiting', actions: assign({ first: false }) },
              { guard: 'free', target: '#leadership.claiming', actions: assign({ claimFrom: ({ event }) => event.output.revision, first: false }) },
              { guard: 'predecessorDead', target: '#leadership.claiming', actions: assign({ claimFrom: ({ event }) => event.output.revision, first: false }) },
              { guard: 'ours', target: '#leadership.claiming', actions: assign({ claimFrom: ({ event }) => event.output.revision, first: false }) },
              { guard: 'lapsed', target: '#leadership.claiming', actions: assign({ claimFrom: ({ event }) => event.output.revision, first: false }) },
              {
                target: 'waiting',
                actions: assign({
                  first: false,
                  seen: ({ context, event }) => (context.seen?.revision === event.output.revision ? context.seen : { revision: event.output.revision, since: context.now() }),
                }),
              },
            ],
            // the bus or the store is away: nothing to learn, and a claim could not be stored either
            onError: { target: 'waiting', actions: assign({ first: false }) },
          },
        },
        waiting: { after: { poll: 'reading' } },
      },
    },
    claiming: {
      invoke: {
        src: 'claim',
        input: ({ context }) => ({ expect: context.claimFrom }),
        onDone: { target: 'leading', actions: assign({ revision: ({ event }) => event.output.revision, renewedSentAt: ({ event }) => event.output.sentAt }) },
        // another standby won, or the store refused: follow the new holder's renewals
        onError: { target: 'following', actions: assign({ seen: null }) },
      },
    },
    leading: {
      type: 'parallel',
      entry: 'won',
      on: { 'leadership.release': '#leadership.releasing' },
      states: {
        renewal: {
          initial: 'waiting',
          states: {
            waiting: { after: { renewEvery: 'renewing' } },
            renewing: {
              invoke: {
                src: 'renew',
                input: ({ context }) => ({ revision: context.revision }),
                onDone: {
                  target: 'waiting',
                  actions: [assign({ revision: ({ event }) => event.output.revision, renewedSentAt: ({ event }) => event.output.sentAt }), raise({ type: 'renewed' })],
                },
                onError: [{ guard: 'taken', target: '#leadership.steppingDown' }, { target: 'waiting' }],
              },
            },
          },
        },
        fence: {
          initial: 'armed',
          states: {
            armed: {
              after: { fence: [{ guard: 'holdAtFence', target: 'held' }, { target: '#leadership.steppingDown' }] },
              on: { renewed: { target: 'armed', reenter: true } },
            },
            // A renewal stored now expected the revision this leader wrote last, so nobody claimed
            // the key in between: no other term ran, and this one may go on where it stopped.
            held: {
              entry: 'held',
              on: { renewed: { target: 'armed', actions: 'resumed' } },
            },
          },
        },
      },
    },
    steppingDown: {
      entry: 'lost',
      always: { target: 'following', actions: assign({ seen: null }) },
    },
    releasing: {
      invoke: {
        src: 'release',
        input: ({ context }) => ({ revision: context.revision }),
        onDone: 'released',
        onError: 'released',
      },
    },
    released: { type: 'final' },
  },
});
