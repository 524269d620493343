import { assign, fromCallback, fromPromise, setup, type EventObject } from 'xstate';
import type { HostInventory } from '../../protocol/index.ts';

export interface RenderServerContext {
  host: string;
  heartbeatMs: number;
  inventory: HostInventory | null;
  /** The registry that acknowledged us last; null until registered. */
  registryId: string | null;
  draining: boolean;
  /** Heartbeats in a row that got no answer. */
  missed: number;
  /** Why probing failed, when it did. */
  error: string | null;
}

export type RenderServerEvent =
  | { type: 'registry.hello'; registryId: string }
  | { type: 'server.drain' }
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

/**
 * One render server: probing → locating (registering with the registry) → registered →
 * draining → stopped. All along, it reports the leases it holds to the scheduler. It registers again whenever the registry forgets it (a heartbeat
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
      on: { 'server.drain': { actions: [assign({ draining: true }), 'drainSlots'] } },
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
      on: { 'server.drain': { actions: [assign({ draining: true }), 'drainSlots'] } },
    },
    registered: {
      ...heartbeating,
      on: {
        ...heartbeating.on,
        'server.drain': { target: 'draining', actions: [assign({ draining: true }), 'drainSlots'] },
      },
    },
    draining: {
      ...heartbeating,
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
