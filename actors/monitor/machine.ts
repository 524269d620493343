import { assign, enqueueActions, fromCallback, fromPromise, setup } from 'xstate';
import type { HostRecord, JobSummary, LinkStatus, SickHost } from '../../protocol/index.ts';
import { FarmModel, type MonitorEvent } from './model.ts';

/** What one round of snapshots brought back; a part that did not answer is absent. */
export interface Snapshot {
  /** When the requests went out (runtime's clock). */
  at: number;
  jobs?: JobSummary[];
  hosts?: HostRecord[];
  /** The scheduler's sick hosts. */
  sick?: SickHost[];
  /** The site's links (`link.status`); null when the link service did not answer (a farm that is no linked site has none). */
  links?: LinkStatus[] | null;
  /** Which parts failed, and why (for the log). */
  errors: { from: 'scheduler' | 'registry'; error: string }[];
}

export interface MonitorInput {
  /** Time between two rounds of snapshots, ms. */
  snapshotMs: number;
}

/**
 * The monitor: starting (first snapshot) → running { waiting ⇄ polling } → stopped. Events from
 * the bus (the runtime's `events` callback actor) update the model from the start until stopped.
 * Snapshots that fail leave the model as it was; the next round tries again.
 */
export const monitorMachine = setup({
  types: {
    context: {} as { model: FarmModel; snapshotMs: number; snapshots: number; failedSnapshots: number },
    input: {} as MonitorInput,
    events: {} as { type: 'bus.event'; event: MonitorEvent } | { type: 'monitor.stop' },
  },
  actors: {
    // placeholders: runtime.ts provides the real ones
    events: fromCallback<{ type: 'monitor.stop' }>(() => () => {}),
    snapshot: fromPromise<Snapshot>(() => Promise.reject(new Error('not provided'))),
  },
  actions: {
    latencyObserved: (_, _seconds: number) => {},
    /** Parts of a snapshot that did not answer (called with an empty list when all did). */
    snapshotProblems: (_, _errors: Snapshot['errors']) => {},
    takeSnapshot: enqueueActions(({ context, event, enqueue }) => {
      const s = (event as unknown as { output: Snapshot }).output;
      if (s.jobs) context.model.applyJobs(s.jobs, s.at);
      if (s.hosts) context.model.applyHosts(s.hosts, s.at);
      if (s.sick) context.model.applySick(s.sick, s.at); // after the hosts: it marks the hosts it knows
      if (s.links !== undefined) context.model.applyLinks(s.links, s.at);
      enqueue.assign({ snapshots: context.snapshots + 1, failedSnapshots: context.failedSnapshots + (s.errors.length > 0 ? 1 : 0) });
    }),
    snapshotFailed: assign({ failedSnapshots: ({ context }) => context.failedSnapshots + 1 }),
  },
  delays: { snapshotEvery: ({ context }) => context.snapshotMs },
}).createMachine({
  id: 'monitor',
  context: ({ input }) => ({ model: new FarmModel(), snapshotMs: input.snapshotMs, snapshots: 0, failedSnapshots: 0 }),
  invoke: { src: 'events' },
  on: {
    'bus.event': {
      actions: enqueueActions(({ context, event, enqueue }) => {
        const r = context.model.apply(event.event);
        if (r.latencyS !== undefined) enqueue({ type: 'latencyObserved', params: r.latencyS });
      }),
    },
    'monitor.stop': '.stopped',
  },
  initial: 'starting',
  states: {
    // the first snapshot, at once; whatever it brings (even nothing), the monitor runs
    starting: { invoke: { src: 'snapshot', onDone: { target: 'running', actions: ['takeSnapshot', { type: 'snapshotProblems', params: ({ event }) => event.output.errors }] }, onError: { target: 'running', actions: ['snapshotFailed', { type: 'snapshotProblems', params: ({ event }) => [{ from: 'scheduler' as const, error: String(event.error) }] }] } } },
    running: {
      initial: 'waiting',
      states: {
        waiting: { after: { snapshotEvery: 'polling' } },
        polling: { invoke: { src: 'snapshot', onDone: { target: 'waiting', actions: ['takeSnapshot', { type: 'snapshotProblems', params: ({ event }) => event.output.errors }] }, onError: { target: 'waiting', actions: ['snapshotFailed', { type: 'snapshotProblems', params: ({ event }) => [{ from: 'scheduler' as const, error: String(event.error) }] }] } } },
      },
    },
    stopped: { type: 'final' },
  },
});
