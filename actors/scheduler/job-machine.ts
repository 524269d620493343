import { assign, setup } from 'xstate';

/** Frame counters of one job; the machine's state is the job's state. */
export interface JobCounts {
  total: number;
  queued: number;
  running: number;
  done: number;
  failed: number;
}

export type JobMachineEvent =
  | { type: 'frames.dispatched'; n: number }
  | { type: 'frames.requeued'; n: number }
  | { type: 'frames.done'; n: number; fromQueue?: boolean }
  | { type: 'frames.failed'; n: number; fromQueue?: boolean }
  | { type: 'job.cancel' }
  /** Ended frames queued again (`retry`): `done` and `failed` say how many of each. */
  | { type: 'frames.retry'; done: number; failed: number };

const allEnded = (c: JobCounts) => c.done + c.failed === c.total;

/**
 * One job's lifecycle: queued → rendering → done | failed, or cancelled. Counts move with
 * each task; the job ends when every frame is done or failed. `fromQueue` marks frames that
 * end without a running lease (journal replay after a restart). A done or failed job renders
 * again when frames are retried; a cancelled one is final.
 */
export const jobMachine = setup({
  types: {
    context: {} as JobCounts,
    input: {} as { total: number },
    events: {} as JobMachineEvent,
  },
  actions: {
    retried: assign(({ context, event }) => {
      const e = event as Extract<JobMachineEvent, { type: 'frames.retry' }>;
      return { done: context.done - e.done, failed: context.failed - e.failed, queued: context.queued + e.done + e.failed };
    }),
  },
  guards: {
    ended: ({ context }) => allEnded(context),
    endedClean: ({ context }) => allEnded(context) && context.failed === 0,
  },
}).createMachine({
  id: 'job',
  context: ({ input }) => ({ total: input.total, queued: input.total, running: 0, done: 0, failed: 0 }),
  initial: 'queued',
  on: {
    'frames.done': {
      actions: assign(({ context, event }) => ({
        done: context.done + event.n,
        ...(event.fromQueue ? { queued: context.queued - event.n } : { running: context.running - event.n }),
      })),
      target: '.settling',
    },
    'frames.failed': {
      actions: assign(({ context, event }) => ({
        failed: context.failed + event.n,
        ...(event.fromQueue ? { queued: context.queued - event.n } : { running: context.running - event.n }),
      })),
      target: '.settling',
    },
    'frames.requeued': {
      actions: assign(({ context, event }) => ({ running: context.running - event.n, queued: context.queued + event.n })),
    },
    // a cancelled job's unfinished frames are neither queued nor running any more
    'job.cancel': { target: '.cancelled', actions: assign({ queued: 0, running: 0 }) },
  },
  states: {
    queued: {
      on: {
        'frames.dispatched': {
          target: 'rendering',
          actions: assign(({ context, event }) => ({ queued: context.queued - event.n, running: context.running + event.n })),
        },
      },
    },
    rendering: {
      on: {
        'frames.retry': { actions: 'retried' },
        'frames.dispatched': {
          actions: assign(({ context, event }) => ({ queued: context.queued - event.n, running: context.running + event.n })),
        },
      },
    },
    // transient: decides where a job stands after frames ended
    settling: {
      always: [
        { guard: 'endedClean', target: 'done' },
        { guard: 'ended', target: 'failed' },
        { target: 'rendering' },
      ],
    },
    done: { on: { 'frames.retry': { target: 'rendering', actions: 'retried' } } },
    failed: { on: { 'frames.retry': { target: 'rendering', actions: 'retried' } } },
    cancelled: { type: 'final' },
  },
});
