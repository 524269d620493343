import { assign, fromPromise, setup } from 'xstate';
import type { Resolution, TaskAssignment, TaskStats } from '../../protocol/index.ts';
import type { Invocation } from './adapters/types.ts';

/** A task made ready to run: its private directories and the processes to run. */
export interface PreparedTask {
  workDir: string;
  logFile: string;
  /** False when no process writes into the work dir, which then was not created. */
  workDirUsed: boolean;
  invocations: Invocation[];
  /** A sandboxed task's read-only binds (sandbox.ts): its inputs, at the paths it knows them by. */
  sandboxInputs?: { from: string; to: string }[];
  /** How its frames are checked (RenderAdapter.frameCheck): decoded, and of this size when given. Absent: non-empty files. */
  frameCheck?: { size?: Resolution };
}

/** What rendering a task came to, before its files are moved into place. */
export interface RenderOutcome {
  status: 'done' | 'failed';
  /** Frames the renderer finished, with their files in the work dir. */
  produced: { frame: number; file: string }[];
  error?: { code: string; message: string };
  /** Summed over the task's processes; bytesWritten is known only after delivery. */
  usage: { wallMs: number; cpuMs: number; peakRssKb: number };
}

/** A task's result as the slot reports it (TaskResult without the envelope, host and wantNext). */
export interface SlotResult {
  taskId: string;
  jobId: string;
  taskIndex: number;
  attempt: number;
  slot: number;
  /** `returned`: stopped unfinished because the server drains; the scheduler gives it to another slot. */
  status: 'done' | 'failed' | 'returned';
  outputs: { frame: number; path: string }[];
  error?: { code: string; message: string };
  stats: TaskStats;
}

export interface ReportOutput {
  next: TaskAssignment | null;
  /** How long the slot stood idle before `next` reached it (ms). */
  waitMs: number;
}

export interface RenderSlotContext {
  index: number;
  task: TaskAssignment | null;
  /** Idle time before the current task reached the slot (ms). */
  waitMs: number;
  prepared: PreparedTask | null;
  outcome: RenderOutcome | null;
  result: SlotResult | null;
  draining: boolean;
  cancelRequested: { code: string; reason: string } | null;
  reportAttempts: number;
}

export type RenderSlotEvent =
  | { type: 'slot.assign'; task: TaskAssignment; waitMs: number }
  | { type: 'slot.cancel'; reason: string; code?: string }
  | { type: 'slot.drain' }
  /** The server takes work again: the next result asks for a next task. */
  | { type: 'slot.undrain' }
  /** The scheduler is back (its hello, or our connection returned): a result waiting out its backoff goes now. */
  | { type: 'slot.retryNow' };

export const SLOT_RESULT_RETRY_BASE_MS = 250;
export const SLOT_RESULT_RETRY_MAX_MS = 5_000;
/** How long a killed renderer may take to go away (SIGKILL comes after 5 s) before the slot moves on. */
export const SLOT_REAP_TIMEOUT_MS = 15_000;

const ZERO_USAGE = { wallMs: 0, cpuMs: 0, peakRssKb: 0 };

/** Any thrown value as a wire error: keeps a FarmError's code, else RB_RENDER_FAILED. */
export function wireError(err: unknown, fallback = 'RB_RENDER_FAILED'): { code: string; message: string } {
  if (err !== null && typeof err === 'object' && 'message' in err) {
    const code = 'code' in err && typeof err.code === 'string' && err.code.startsWith('RB_') ? err.code : fallback;
    return { code, message: String(err.message) };
  }
  return { code: fallback, message: String(err) };
}

function isRetryable(err: unknown): boolean {
  return err !== null && typeof err === 'object' && 'retryable' in err && err.retryable === true;
}

/** The result of a task that produced nothing (used when delivery itself broke). */
export function failedResult(ctx: RenderSlotContext, error: { code: string; message: string }): SlotResult {
  const t = ctx.task!;
  const u = ctx.outcome?.usage ?? ZERO_USAGE;
  return {
    taskId: t.taskId,
    jobId: t.jobId,
    taskIndex: t.taskIndex,
    attempt: t.attempt,
    slot: ctx.index,
    status: 'failed',
    outputs: [],
    error,
    stats: { ...u, bytesWritten: 0 },
  };
}

/**
 * One render slot: idle → preparing → rendering → delivering → idle, with failed and killed
 * paths that deliver a failed result. Delivery stores the files (`deliver`), then reports
 * (`report`), retrying with backoff while the scheduler is away; a `next` task in the reply
 * goes straight to preparing. Effects are placeholders here; the runtime provides them.
 */
export const renderSlotMachine = setup({
  types: {
    context: {} as RenderSlotContext,
    input: {} as { index: number },
    events: {} as RenderSlotEvent,
  },
  actors: {
    prepare: fromPromise<PreparedTask, TaskAssignment>(async () => {
      throw new Error('prepare not provided');
    }),
    runTask: fromPromise<RenderOutcome, { task: TaskAssignment; prepared: PreparedTask }>(async () => {
      throw new Error('runTask not provided');
    }),
    /** Waits for a cancelled render to end; resolves with what it did. */
    reap: fromPromise<RenderOutcome, { task: TaskAssignment }>(async () => {
      throw new Error('reap not provided');
    }),
    deliver: fromPromise<SlotResult, { task: TaskAssignment; prepared: PreparedTask | null; outcome: RenderOutcome; slot: number }>(async () => {
      throw new Error('deliver not provided');
    }),
    report: fromPromise<ReportOutput, { result: SlotResult; wantNext: boolean; attempt: number }>(async () => {
      throw new Error('report not provided');
    }),
  },
  actions: {
    /** The slot became idle (publish the slot event). */
    slotIdle: () => {},
    /** A task reached the slot (publish slot busy and frame started events). */
    taskStarted: () => {},
    /** The scheduler refused the result for good (log it). */
    resultDropped: (_: unknown, _params: { error: unknown }) => {},
    /** Send this result in the background, retried until taken (the slot goes on to its task in hand). */
    reportInBackground: (_: unknown, _params: { result: SlotResult; wantNext: boolean }) => {},
    /** Make the task in hand the slot's task (an assign the runtime provides: it keeps the tasks in hand). */
    takeHeld: () => {},
  },
  guards: {
    cancelRequested: ({ context }) => context.cancelRequested !== null,
    /** The slot holds a task in hand (the runtime knows). */
    taskInHand: () => false,
  },
  delays: {
    resultRetry: ({ context }) => Math.min(SLOT_RESULT_RETRY_BASE_MS * 2 ** Math.max(0, context.reportAttempts - 1), SLOT_RESULT_RETRY_MAX_MS),
    reapTimeout: SLOT_REAP_TIMEOUT_MS,
  },
}).createMachine({
  id: 'slot',
  context: ({ input }) => ({
    index: input.index,
    task: null,
    waitMs: 0,
    prepared: null,
    outcome: null,
    result: null,
    draining: false,
    cancelRequested: null,
    reportAttempts: 0,
  }),
  initial: 'idle',
  on: {
    'slot.drain': { actions: assign({ draining: true }) },
    'slot.undrain': { actions: assign({ draining: false }) },
  },
  states: {
    idle: {
      entry: [assign({ task: null, prepared: null, outcome: null, result: null, cancelRequested: null }), 'slotIdle'],
      on: {
        'slot.assign': {
          target: 'preparing',
          actions: assign({ task: ({ event }) => event.task, waitMs: ({ event }) => event.waitMs }),
        },
      },
    },
    preparing: {
      entry: [assign({ prepared: null, outcome: null, result: null, cancelRequested: null }), 'taskStarted'],
      invoke: {
        src: 'prepare',
        input: ({ context }) => context.task!,
        onDone: [
          { guard: 'cancelRequested', target: 'killed', actions: assign({ prepared: ({ event }) => event.output, outcome: null }) },
          { target: 'rendering', actions: assign({ prepared: ({ event }) => event.output }) },
        ],
        onError: { target: 'failed', actions: assign({ outcome: ({ event }) => failure(wireError(event.error, 'RB_BAD_JOB')) }) },
      },
      on: {
        // the work dir is being made: let that finish, then deliver the kill
        'slot.cancel': { actions: assign({ cancelRequested: ({ event }) => ({ code: event.code ?? 'RB_RENDER_FAILED', reason: event.reason }) }) },
      },
    },
    rendering: {
      invoke: {
        src: 'runTask',
        input: ({ context }) => ({ task: context.task!, prepared: context.prepared! }),
        onDone: { target: 'delivering', actions: assign({ outcome: ({ event }) => event.output }) },
        onError: { target: 'failed', actions: assign({ outcome: ({ event }) => failure(wireError(event.error)) }) },
      },
      on: {
        // leaving the state stops runTask, whose abort signal cancels the process
        'slot.cancel': {
          target: 'killing',
          actions: assign({ cancelRequested: ({ event }) => ({ code: event.code ?? 'RB_RENDER_FAILED', reason: event.reason }) }),
        },
      },
    },
    killing: {
      invoke: {
        src: 'reap',
        input: ({ context }) => ({ task: context.task! }),
        onDone: { target: 'killed', actions: assign({ outcome: ({ event }) => event.output }) },
        onError: 'killed',
      },
      after: { reapTimeout: 'killed' },
    },
    killed: {
      entry: assign({
        outcome: ({ context }) => ({
          ...failure({ code: context.cancelRequested?.code ?? 'RB_RENDER_FAILED', message: `task killed: ${context.cancelRequested?.reason ?? 'cancelled'}` }),
          produced: context.outcome?.produced ?? [],
          usage: context.outcome?.usage ?? ZERO_USAGE,
        }),
      }),
      always: 'delivering',
    },
    failed: {
      always: 'delivering',
    },
    delivering: {
      initial: 'storing',
      states: {
        storing: {
          entry: assign({ reportAttempts: 0 }),
          invoke: {
            src: 'deliver',
            input: ({ context }) => ({ task: context.task!, prepared: context.prepared, outcome: context.outcome!, slot: context.index }),
            onDone: [
              {
                // a task in hand starts at once and this result goes meanwhile: no report step, no
                // invoked actor, a transition fewer per task (docs/benchmarks.md, "Farm throughput")
                guard: 'taskInHand',
                target: '#slot.preparing',
                actions: [{ type: 'reportInBackground', params: ({ context, event }) => ({ result: event.output, wantNext: !context.draining }) }, 'takeHeld'],
              },
              { target: 'reporting', actions: assign({ result: ({ event }) => event.output }) },
            ],
            onError: {
              target: 'reporting',
              actions: assign({ result: ({ context, event }) => failedResult(context, wireError(event.error, 'RB_OUTPUT_FAILED')) }),
            },
          },
        },
        reporting: {
          invoke: {
            src: 'report',
            input: ({ context }) => ({ result: context.result!, wantNext: !context.draining, attempt: context.reportAttempts }),
            onDone: [
              {
                // a draining slot still runs a task it is handed, rather than lose the lease
                guard: ({ event }) => event.output.next !== null,
                target: '#slot.preparing',
                actions: assign({ task: ({ event }) => event.output.next, waitMs: ({ event }) => event.output.waitMs }),
              },
              { target: '#slot.idle' },
            ],
            onError: [
              { guard: ({ event }) => isRetryable(event.error), target: 'retrying' },
              { target: '#slot.idle', actions: { type: 'resultDropped', params: ({ event }) => ({ error: event.error }) } },
            ],
          },
        },
        retrying: {
          entry: assign({ reportAttempts: ({ context }) => context.reportAttempts + 1 }),
          after: { resultRetry: 'reporting' },
          on: { 'slot.retryNow': 'reporting' },
        },
      },
    },
  },
});

function failure(error: { code: string; message: string }): RenderOutcome {
  return { status: 'failed', produced: [], error, usage: ZERO_USAGE };
}

export type RenderSlotMachine = typeof renderSlotMachine;
