import { assign, fromPromise, setup } from 'xstate';

export type SchedulerEvent =
  | { type: 'dispatch.wanted' }
  | { type: 'scheduler.stop' };

/**
 * The scheduler's lifecycle: starting (open the durable store) → recovering (replay the
 * journal) → serving (idle ⇄ dispatching) → stopped. Requests are answered only while
 * serving; a dispatch round runs whenever work or slots change, one at a time, and again
 * at once if something changed during the round. A slow tick catches anything missed.
 */
export const schedulerMachine = setup({
  types: {
    context: {} as { again: boolean; openFailures: number },
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
  },
  delays: {
    retryOpen: ({ context }) => Math.min(10_000, 500 * 2 ** Math.min(context.openFailures, 5)),
    dispatchTick: 2_000,
  },
  guards: {
    again: ({ context }) => context.again,
  },
}).createMachine({
  id: 'scheduler',
  context: { again: false, openFailures: 0 },
  initial: 'starting',
  on: { 'scheduler.stop': '.stopped' },
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
        onDone: { target: 'serving', actions: 'reportRecovered' },
        onError: {
          target: 'waitingForStore',
          actions: ['reportOpenFailure', assign({ openFailures: ({ context }) => context.openFailures + 1 })],
        },
      },
    },
    serving: {
      initial: 'dispatching',
      states: {
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
    stopped: { type: 'final' },
  },
});
