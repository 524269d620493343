import { assign, fromCallback, fromPromise, setup, type EventObject, type SnapshotFrom } from 'xstate';
import type { HostInventory } from '../../protocol/index.ts';

export interface RenderServerContext {
  host: string;
  heartbeatMs: number;
  inventory: HostInventory | null;
  /** The registry that acknowledged us last; null until registered. */
  registryId: string | null;
  draining: boolean;
  /** Draining on its way out (a stop with a grace period): it cannot be undrained. */
  leaving: boolean;
  /** Heartbeats in a row that got no answer. */
  missed: number;
  /** Why probing failed, when it did. */
  error: string | null;
}

export type RenderServerEvent =
  | { type: 'registry.hello'; registryId: string }
  | { type: 'server.drain' }
  /** Take work again after a drain; ignored when not draining, refused (no transition) when leaving. */
  | { type: 'server.undrain' }
  /** Drain to stop: running tasks get their grace period, then `server.stop` follows. */
  | { type: 'server.leave' }
  | { type: 'server.stop' };

/** Heartbeats in a row without an answer before the server looks for a registry again. */
export const MAX_MISSED_HEARTBEATS = 3;
/** Longest pause between registration attempts while no registry answers. */
export const REGISTER_RETRY_MAX_MS = 3_000;

/** Heartbeat loop shared by `registered` and `draining`: beat every heartbeatMs, re-register when forgotten. */
const heartbeating = {
  initial: 'waiting',
  states: {
    waiting: { after: { heartbeat: 'beating' } },
    beating: {
      invoke: {
        src: 'heartbeat',
        input: ({ context }: { context: RenderServerContext }) => ({ draining: context.draining }),
        onDone: [
          { guard: 'forgotten', target: '#server.locating' },
          { target: 'waiting', actions: 'beatAnswered' },
        ],
        onError: [
          { guard: 'registryGone', target: '#server.locating' },
          { target: 'waiting', actions: 'beatMissed' },
        ],
      },
    },
  },
  on: {
    'registry.hello': { guard: 'newRegistry', target: '#server.locating' },
  },
} as const;

/** Before it registered, draining is only remembered (and told to the slots); the same for undraining. */
const drainFlags = {
  'server.drain': { actions: ['markDraining', 'drainSlots'] },
  'server.leave': { actions: ['markLeaving', 'drainSlots'] },
  'server.undrain': { guard: 'undrainable', actions: ['markUndrained', 'undrainSlots'] },
} as const;

/**
 * One render server: probing → locating (registering with the registry) → registered ⇄
 * draining → stopping → stopped. All along, it reports the leases it holds to the scheduler. It registers again whenever the registry forgets it (a heartbeat
 * answered `known: false`), a hello shows a new registry instance, or heartbeats go
 * unanswered. Effects are placeholders here; runtime.ts provides them.
 */
export const renderServerMachine = setup({
  types: {
    context: {} as RenderServerContext,
    input: {} as { host: string; heartbeatMs: number },
    events: {} as RenderServerEvent,
  },
  actors: {
    probe: fromPromise<HostInventory>(async () => {
      throw new Error('probe not provided');
    }),
    register: fromPromise<{ registryId: string }, { inventory: HostInventory }>(async () => {
      throw new Error('register not provided');
    }),
    heartbeat: fromPromise<{ known: boolean; registryId: string }, { draining: boolean }>(async () => {
      throw new Error('heartbeat not provided');
    }),
    /**
     * Reports the server's leases to the scheduler every `everyMs`, and at once when a scheduler
     * says hello; runs for the server's whole life, whatever the registry does.
     */
    reportLeases: fromCallback<EventObject, { everyMs: number }>(() => () => {}),
    /** Cancels running tasks, says bye, lets go of subscriptions. */
    shutdown: fromPromise<void, { registered: boolean }>(async () => {
      throw new Error('shutdown not provided');
    }),
  },
  actions: {
    /** Tell every slot to finish its task and take no next one. */
    drainSlots: () => {},
    /** Tell every slot to take work again. */
    undrainSlots: () => {},
    markDraining: assign({ draining: true }),
    markLeaving: assign({ draining: true, leaving: true }),
    markUndrained: assign({ draining: false }),
    /** Registered (or registered again) with a registry (log it). */
    registered: (_: unknown, _params: { registryId: string }) => {},
    beatAnswered: assign({
      missed: 0,
      registryId: ({ context, event }) => ('output' in event ? (event.output as { registryId: string }).registryId : context.registryId),
    }),
    beatMissed: assign({ missed: ({ context }) => context.missed + 1 }),
  },
  guards: {
    forgotten: ({ event }) => 'output' in event && (event.output as { known: boolean }).known === false,
    registryGone: ({ context }) => context.missed + 1 >= MAX_MISSED_HEARTBEATS,
    newRegistry: ({ context, event }) => event.type === 'registry.hello' && event.registryId !== context.registryId,
    draining: ({ context }) => context.draining,
    /** Draining, and not on its way out: a stop is not taken back. */
    undrainable: ({ context }) => context.draining && !context.leaving,
  },
  delays: {
    heartbeat: ({ context }) => context.heartbeatMs,
    registerRetry: ({ context }) => Math.min(REGISTER_RETRY_MAX_MS, context.heartbeatMs),
  },
}).createMachine({
  id: 'server',
  context: ({ input }) => ({
    host: input.host,
    heartbeatMs: input.heartbeatMs,
    inventory: null,
    registryId: null,
    draining: false,
    leaving: false,
    missed: 0,
    error: null,
  }),
  initial: 'probing',
  invoke: { src: 'reportLeases', input: ({ context }) => ({ everyMs: context.heartbeatMs }) },
  on: {
    'server.stop': '.stopping',
  },
  states: {
    probing: {
      invoke: {
        src: 'probe',
        onDone: { target: 'locating', actions: assign({ inventory: ({ event }) => event.output }) },
        onError: { target: 'stopped', actions: assign({ error: ({ event }) => String((event.error as Error)?.message ?? event.error) }) },
      },
      on: drainFlags,
    },
    locating: {
      entry: assign({ registryId: null, missed: 0 }),
      initial: 'registering',
      states: {
        registering: {
          invoke: {
            src: 'register',
            input: ({ context }) => ({ inventory: context.inventory! }),
            onDone: [
              {
                guard: 'draining',
                target: '#server.draining',
                actions: [assign({ registryId: ({ event }) => event.output.registryId }), { type: 'registered', params: ({ event }) => event.output }],
              },
              {
                target: '#server.registered',
                actions: [assign({ registryId: ({ event }) => event.output.registryId }), { type: 'registered', params: ({ event }) => event.output }],
              },
            ],
            onError: 'waiting',
          },
        },
        waiting: {
          after: { registerRetry: 'registering' },
          on: { 'registry.hello': 'registering' },
        },
      },
      on: drainFlags,
    },
    registered: {
      ...heartbeating,
      on: {
        ...heartbeating.on,
        'server.drain': { target: 'draining', actions: ['markDraining', 'drainSlots'] },
        'server.leave': { target: 'draining', actions: ['markLeaving', 'drainSlots'] },
      },
    },
    draining: {
      ...heartbeating,
      on: {
        ...heartbeating.on,
        'server.leave': { actions: 'markLeaving' },
        // a heartbeat at once, so the registry stops marking the host draining (and the
        // scheduler finds its slots free) without waiting a heartbeat period
        'server.undrain': { guard: 'undrainable', target: '#server.registered.beating', actions: ['markUndrained', 'undrainSlots'] },
      },
    },
    stopping: {
      invoke: {
        src: 'shutdown',
        input: ({ context }) => ({ registered: context.registryId !== null }),
        onDone: 'stopped',
        onError: 'stopped',
      },
      on: { 'server.stop': {} },
    },
    stopped: {
      type: 'final',
    },
  },
});

export type RenderServerMachine = typeof renderServerMachine;

/**
 * Why the server refuses to be undrained, or null when it may be (undraining one that does not
 * drain changes nothing): once a stop began, it goes through with it.
 */
export function undrainRefusal(s: SnapshotFrom<RenderServerMachine>): string | null {
  if (s.status !== 'active' || s.matches('stopping') || s.context.leaving) return 'is stopping: a server that is stopping cannot be undrained';
  return null;
}
