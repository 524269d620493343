import { assign, fromPromise, sendParent, setup } from 'xstate';
import { backoffMs, type RetryPolicy } from './backoff.ts';

export interface RetryInput {
  /** Names this piece of work in the report to the parent. */
  key: string;
  /** The task's input. */
  payload: unknown;
  policy: RetryPolicy;
}

/** What a retrying actor tells its parent when it ends. */
export type RetryReport =
  | { type: 'retry.ended'; ok: true; key: string; attempts: number; output: unknown }
  | { type: 'retry.ended'; ok: false; key: string; attempts: number; error: string };

/** An error worth another attempt: it says so (`retryable: true`, as FarmError and DeliveryError do). */
export function isRetryable(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { retryable?: unknown }).retryable === true;
}

type RetryContext = RetryInput & { attempt: number; error: string; output: unknown };

const describe = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/**
 * One piece of work (`task`, provided by the runtime) tried until it succeeds, fails for good
 * (an error that is not retryable) or has used its attempts, waiting `backoffMs` between
 * attempts. It reports to its parent once (`retry.ended`), then ends.
 */
export const retryingMachine = setup({
  types: {
    input: {} as RetryInput,
    context: {} as RetryInput & { attempt: number; error: string; output: unknown },
  },
  actors: {
    task: fromPromise<unknown, unknown>(() => Promise.reject(new Error('task not provided'))),
  },
  guards: {
    // on an attempt's error: is another attempt worth it, and allowed?
    mayRetry: ({ context, event }) => isRetryable((event as { error?: unknown }).error) && context.attempt < context.policy.attempts,
  },
  delays: {
    backoff: ({ context }) => backoffMs(context.policy, context.attempt),
  },
}).createMachine({
  id: 'retrying',
  context: ({ input }) => ({ ...input, attempt: 1, error: '', output: undefined }),
  initial: 'trying',
  states: {
    trying: {
      invoke: {
        src: 'task',
        input: ({ context }: { context: RetryContext }) => context.payload,
        onDone: { target: 'succeeded', actions: assign({ output: ({ event }) => event.output }) },
        onError: [
          {
            guard: 'mayRetry',
            target: 'waiting',
            actions: assign({ error: ({ event }) => describe(event.error) }),
          },
          { target: 'gaveUp', actions: assign({ error: ({ event }) => describe(event.error) }) },
        ],
      },
    },
    waiting: {
      after: { backoff: { target: 'trying', actions: assign({ attempt: ({ context }) => context.attempt + 1 }) } },
    },
    succeeded: {
      type: 'final',
      entry: sendParent(({ context }): RetryReport => ({ type: 'retry.ended', ok: true, key: context.key, attempts: context.attempt, output: context.output })),
    },
    gaveUp: {
      type: 'final',
      entry: sendParent(({ context }): RetryReport => ({ type: 'retry.ended', ok: false, key: context.key, attempts: context.attempt, error: context.error })),
    },
  },
});
