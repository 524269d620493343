import { enqueueActions, setup, type SnapshotFrom } from 'xstate';
import type { HostBye, HostHeartbeat, HostRegister, SlotInfo } from '../../protocol/index.ts';
import {
  applyHeartbeat,
  applySlotEvent,
  emptyDatabase,
  graceAll,
  registerHost,
  removeHost,
  sweepSilent,
  type RegistryDatabase,
} from './database.ts';

export interface RegistryInput {
  registryId: string;
  /** How often hello repeats, in ms. */
  announceMs: number;
  /** A host is dropped after this many of its heartbeat periods without one. */
  missedBeats: number;
  /** How often silent hosts are looked for, in ms: the precision of a drop. */
  sweepMs: number;
  /** How long after start the database counts as rebuilding, in ms. */
  rebuildMs: number;
  /** The clock, injected: Date.now in the runtime, a SimulatedClock in tests. */
  now: () => number;
}

export interface RegistryContext extends RegistryInput {
  db: RegistryDatabase;
}

export type RegistryEvent =
  | { type: 'registry.started' }
  | { type: 'registry.stop' }
  /** The registry's own connection to NATS dropped, or came back. */
  | { type: 'bus.down' }
  | { type: 'bus.up' }
  | { type: 'host.register'; msg: HostRegister }
  | { type: 'host.heartbeat'; msg: HostHeartbeat }
  | { type: 'host.bye'; msg: HostBye }
  | { type: 'host.slot'; host: string; serverId: string; slot: SlotInfo };

/** A host event the registry announces on `evt.host.<host>.<event>`. */
export interface HostEventOut {
  event: 'up' | 'down';
  host: string;
  serverId: string;
  at: number;
  reason?: string;
}

/**
 * The resource registry: starting → rebuilding → serving → stopped. The database lives in the
 * context; while live, three regions run side by side: the phase (rebuilding for a while after
 * start, render servers re-registering, then serving), the hello announcer and the sweep that
 * drops silent hosts. The sweep stops while the registry itself is off the bus (no heartbeat can
 * reach it then) and gives every host a fresh start when it is back. Requests change the database through events; the runtime answers queries
 * from the snapshot.
 */
export const registryMachine = setup({
  types: {
    context: {} as RegistryContext,
    input: {} as RegistryInput,
    events: {} as RegistryEvent,
  },
  actions: {
    // placeholders: runtime.ts provides the real implementations
    announce: () => {},
    publishHostEvent: (_, _evt: HostEventOut) => {},
  },
  delays: {
    rebuildWindow: ({ context }) => context.rebuildMs,
    announceEvery: ({ context }) => context.announceMs,
    sweepEvery: ({ context }) => context.sweepMs,
  },
}).createMachine({
  id: 'registry',
  context: ({ input }) => ({ ...input, db: emptyDatabase() }),
  initial: 'starting',
  // accepted in every state until stopped: requests may arrive while the runtime still starts
  on: {
    'host.register': {
      actions: enqueueActions(({ context, event, enqueue }) => {
        const now = context.now();
        const r = registerHost(context.db, event.msg, now);
        enqueue.assign({ db: r.db });
        const { host, serverId } = event.msg;
        if (r.replaced) {
          const old = r.replaced.record.serverId;
          const reason = 'server restarted';
          const down: HostEventOut = { event: 'down', host, serverId: old, at: now, reason };
          enqueue({ type: 'publishHostEvent', params: down });
        }
        if (r.isNew) {
          enqueue({ type: 'publishHostEvent', params: { event: 'up', host, serverId, at: now } });
        }
      }),
    },
    'host.heartbeat': {
      actions: enqueueActions(({ context, event, enqueue }) => {
        const r = applyHeartbeat(context.db, event.msg, context.now());
        if (r.known) enqueue.assign({ db: r.db });
      }),
    },
    'host.bye': {
      actions: enqueueActions(({ context, event, enqueue }) => {
        const r = removeHost(context.db, event.msg);
        if (!r.removed) return;
        enqueue.assign({ db: r.db });
        const down: HostEventOut = { event: 'down', ...r.removed, at: context.now() };
        enqueue({ type: 'publishHostEvent', params: down });
      }),
    },
    'host.slot': {
      actions: enqueueActions(({ context, event, enqueue }) => {
        const r = applySlotEvent(context.db, event.host, event.serverId, event.slot);
        if (r.applied) enqueue.assign({ db: r.db });
      }),
    },
    'registry.stop': '.stopped',
  },
  states: {
    // the runtime is subscribing; hello waits until requests can be answered
    starting: {
      on: { 'registry.started': 'live' },
    },
    live: {
      type: 'parallel',
      states: {
        phase: {
          initial: 'rebuilding',
          states: {
            // render servers see the new registryId and register again
            rebuilding: { after: { rebuildWindow: 'serving' } },
            serving: {},
          },
        },
        announcer: {
          initial: 'announcing',
          states: {
            announcing: {
              entry: 'announce',
              after: { announceEvery: { target: 'announcing', reenter: true } },
            },
          },
        },
        sweeper: {
          initial: 'waiting',
          states: {
            offBus: {
              on: {
                'bus.up': { target: 'waiting', actions: enqueueActions(({ context, enqueue }) => enqueue.assign({ db: graceAll(context.db, context.now()) })) },
              },
            },
            waiting: {
              on: { 'bus.down': 'offBus' },
              after: {
                sweepEvery: {
                  target: 'waiting',
                  reenter: true,
                  actions: enqueueActions(({ context, enqueue }) => {
                    const now = context.now();
                    const r = sweepSilent(context.db, now, context.missedBeats);
                    if (r.dropped.length === 0) return;
                    enqueue.assign({ db: r.db });
                    for (const d of r.dropped) {
                      const down: HostEventOut = { event: 'down', ...d, at: now };
                      enqueue({ type: 'publishHostEvent', params: down });
                    }
                  }),
                },
              },
            },
          },
        },
      },
    },
    stopped: { type: 'final' },
  },
});

export type RegistrySnapshot = SnapshotFrom<typeof registryMachine>;
export type RegistryPhase = 'starting' | 'rebuilding' | 'serving' | 'stopped';

/** The lifecycle phase of a snapshot, flattened from the parallel `live` state. */
export function registryPhase(s: RegistrySnapshot): RegistryPhase {
  if (s.matches('starting')) return 'starting';
  if (s.matches({ live: { phase: 'rebuilding' } })) return 'rebuilding';
  if (s.matches({ live: { phase: 'serving' } })) return 'serving';
  return 'stopped';
}
