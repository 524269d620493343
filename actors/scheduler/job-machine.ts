import { setup } from 'xstate';

/** Frame counters of one job, kept by the JobBook (plain numbers: they move with every task). */
export interface JobCounts {
  total: number;
  queued: number;
  running: number;
  done: number;
  failed: number;
}

export type JobMachineEvent =
  /** Its first frames were dispatched. */
  | { type: 'job.started' }
  /** Every frame is done or failed; `failed`: some failed. */
  | { type: 'job.ended'; failed: boolean }
  /** Ended frames were queued again (`retry`). */
  | { type: 'job.retry' }
  /** Sent to a linked site (outsource.ts): its frames come back from there. */
  | { type: 'job.outsource' }
  | { type: 'job.cancel' };

/**
 * One job's lifecycle: queued → rendering → done | failed, or cancelled. A done or failed job
 * renders again when frames are retried; a cancelled one is final. A job that names a linked
 * site goes queued → outsourced → done | failed (the vendor's news, outsource.ts), or cancelled;
 * it is never retried here (it would have to be sent again). The JobBook counts the frames
 * and tells the machine only what changes the state, so the machine costs nothing per frame (at
 * thousands of frames a second an event per task was a seventh of the scheduler's time).
 */
export const jobMachine = setup({
  types: {
    events: {} as JobMachineEvent,
  },
  guards: {
    someFailed: ({ event }) => event.type === 'job.ended' && event.failed,
  },
}).createMachine({
  id: 'job',
  initial: 'queued',
  on: {
    'job.cancel': { target: '.cancelled' },
  },
  states: {
    queued: {
      on: {
        'job.started': { target: 'rendering' },
        'job.outsource': { target: 'outsourced' },
        // every frame ended without a dispatch seen (journal replay)
        'job.ended': [{ guard: 'someFailed', target: 'failed' }, { target: 'done' }],
      },
    },
    rendering: {
      on: {
        'job.ended': [{ guard: 'someFailed', target: 'failed' }, { target: 'done' }],
      },
    },
    outsourced: {
      on: {
        'job.ended': [{ guard: 'someFailed', target: 'failed' }, { target: 'done' }],
      },
    },
    done: { on: { 'job.retry': { target: 'rendering' } } },
    failed: { on: { 'job.retry': { target: 'rendering' } } },
    cancelled: { type: 'final' },
  },
});
