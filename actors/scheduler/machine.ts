import { assign, fromPromise, setup } from 'xstate';

export type SchedulerEvent =
  | { type: 'dispatch.wanted' }
  /** Every render server known to be alive has reported since serving began (a standby's takeover). */
  | { type: 'adopt.done' }
  /** The lease was not renewed for its fence (actors/leadership): stop acting until it is. */
  | { type: 'lease.held' }
  /** A renewal was stored again, nobody having claimed the lease: act again. */
  | { type: 'lease.resumed' }
  | { type: 'scheduler.stop' };

/**
 * How long a restarted scheduler listens to lease reports before it dispatches anything: render
 * servers answer its hello at once, and those that missed it (reconnecting) report within their
 * period anyway (2 s by default), so this covers one period and a margin.
 */
export const ADOPT_WINDOW_MS = 2_500;
/** How often leases of silent hosts are looked for. */
export const LEASE_CHECK_MS = 1_000;

/**
 * The scheduler's lifecycle: starting (open the durable store) → recovering (replay the
 * journal) → serving → stopped. Requests are answered only while serving. Serving starts by
 * adopting: render servers, asked by a hello, report the tasks they hold, and nothing is
 * dispatched until they had the time to, so no running frame is given out twice. Then a
 * dispatch round runs whenever work or slots change, one at a time, and again at once if
 * something changed during the round; a slow tick catches anything missed. A standby that takes
 * over knows which render servers are alive (it heard their reports while it stood by): it stops
 * adopting as soon as each of them has reported (`adopt.done`). Alongside, leases
 * of hosts that went silent are taken back every LEASE_CHECK_MS.
 *
 * A leader whose lease renewals are held up (a cluster member died and the leaders bucket elects
 * a new leader) is `held`: it dispatches nothing, writes nothing and answers requests with a
 * retryable refusal, keeping its whole state. When a renewal is stored again nobody else led in
 * between, so it goes back to dispatching at once, with nothing to replay or adopt; when the
 * renewal finds the lease taken, the leadership ends the term instead.
 */
export const schedulerMachine = setup({
  types: {
    context: {} as { again: boolean; openFailures: number; leaseHeld: boolean },
    events: {} as SchedulerEvent,
  },
  actors: {
    openStore: fromPromise<void>(() => Promise.reject(new Error('openStore not provided'))),
    recover: fromPromise<number>(() => Promise.reject(new Error('recover not provided'))),
    dispatchRound: fromPromise<void>(() => Promise.reject(new Error('dispatchRound not provided'))),
  },
  actions: {
    // provided by the runtime; each reads `event.error` or `event.output` of the invoke
    reportOpenFailure: () => {},
    reportRecovered: () => {},
    reportDispatchFailure: () => {},
    /** Ask render servers for their lease reports (sched.hello). */
    announce: () => {},
    /** Take back the leases of hosts whose reports stopped. */
    expireLeases: () => {},
    /** Stop the hosts' report clocks while held (no report is read), and restart them after. */
    pauseClocks: () => {},
    resumeClocks: () => {},
  },
  delays: {
    retryOpen: ({ context }) => Math.min(10_000, 500 * 2 ** Math.min(context.openFailures, 5)),
    dispatchTick: 2_000,
    adoptWindow: ADOPT_WINDOW_MS,
    leaseCheck: LEASE_CHECK_MS,
  },
  guards: {
    again: ({ context }) => context.again,
    leaseHeld: ({ context }) => context.leaseHeld,
  },
}).createMachine({
  id: 'scheduler',
  context: { again: false, openFailures: 0, leaseHeld: false },
  initial: 'starting',
  on: {
    'scheduler.stop': '.stopped',
    // before serving (the term is still replaying) it is only remembered
    'lease.held': { actions: assign({ leaseHeld: true }) },
    'lease.resumed': { actions: assign({ leaseHeld: false }) },
  },
  states: {
    starting: {
      invoke: {
        src: 'openStore',
        onDone: { target: 'recovering', actions: assign({ openFailures: 0 }) },
        onError: {
          target: 'waitingForStore',
          actions: ['reportOpenFailure', assign({ openFailures: ({ context }) => context.openFailures + 1 })],
        },
      },
    },
    waitingForStore: { after: { retryOpen: 'starting' } },
    recovering: {
      invoke: {
        src: 'recover',
        onDone: [{ guard: 'leaseHeld', target: 'held', actions: 'reportRecovered' }, { target: 'serving', actions: 'reportRecovered' }],
        onError: {
          target: 'waitingForStore',
          actions: ['reportOpenFailure', assign({ openFailures: ({ context }) => context.openFailures + 1 })],
        },
      },
    },
    serving: {
      type: 'parallel',
      entry: 'announce',
      on: { 'lease.held': { target: 'held', actions: assign({ leaseHeld: true }) } },
      states: {
        dispatch: {
          initial: 'adopting',
          states: {
            adopting: { after: { adoptWindow: 'dispatching' }, on: { 'adopt.done': 'dispatching' } },
            idle: {
              on: { 'dispatch.wanted': 'dispatching' },
              after: { dispatchTick: 'dispatching' },
            },
            dispatching: {
              entry: assign({ again: false }),
              invoke: {
                src: 'dispatchRound',
                onDone: [{ guard: 'again', target: 'dispatching', reenter: true }, { target: 'idle' }],
                onError: { target: 'idle', actions: 'reportDispatchFailure' },
              },
              on: { 'dispatch.wanted': { actions: assign({ again: true }) } },
            },
          },
        },
        leases: {
          initial: 'watching',
          states: {
            watching: { after: { leaseCheck: { target: 'watching', reenter: true, actions: 'expireLeases' } } },
          },
        },
      },
    },
    held: {
      entry: 'pauseClocks',
      // the book is whole and every lease in it still stands: no adoption window
      on: { 'lease.resumed': { target: '#scheduler.serving.dispatch.dispatching', actions: [assign({ leaseHeld: false }), 'resumeClocks'] } },
    },
    stopped: { type: 'final' },
  },
});
