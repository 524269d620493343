import { enqueueActions, setup } from 'xstate';
import type { JobEvent, JobNotify, NotifyProblem } from '../../protocol/index.ts';
import type { RetryPolicy } from './backoff.ts';
import { isEnd, lookingWatch, onJobEvent, watchFor, withPending, withSample, type JobWatch } from './job-watch.ts';
import type { DeliveryReceipt, Notification, Outcome, Sample } from './notification.ts';
import { retryingMachine, type RetryReport } from './retry-machine.ts';

/**
 * The notifier's two kinds of retried work, each a `retryingMachine` whose `task` the runtime
 * provides: `lookupJob` asks the scheduler for a job's settings (payload `{ jobId }`, output a
 * LookupResult), `deliver` sends one Notification (output a DeliveryReceipt).
 */

/** What the scheduler says about a job's settings: unknown job, or its `notify`. */
export type LookupResult = { found: false } | { found: true; notify?: JobNotify };

export interface NotifierInput {
  /** Retries of a notification. */
  retry: RetryPolicy;
  /** Retries of a settings look-up. */
  lookupRetry: RetryPolicy;
  /** On stop, how long notifications in flight may still finish, in ms. */
  stopGraceMs: number;
}

/** The part of the context that job events change. */
interface Book {
  jobs: Record<string, JobWatch>;
  /** Notifications being delivered, by the key (and actor id) of their retrying actor. */
  inFlight: Record<string, Notification>;
  seq: number;
}

export type NotifierContext = NotifierInput & Book;

export type NotifierEvent =
  /** A job was submitted (the scheduler's journal record): its settings, at once. */
  | { type: 'job.submitted'; jobId: string; notify?: JobNotify }
  | { type: 'job.event'; evt: JobEvent }
  | { type: 'frame.done'; jobId: string; sample: Sample }
  | { type: 'notifier.stop' }
  | RetryReport;

const LOOKUP = 'lookup:';
const NOTE = 'note:';
export const STOPPED_EARLY = 'the notifier stopped before the notification could be delivered';

/** A change of the book, and the notifications it starts. */
interface Step extends Book {
  start: { key: string; note: Notification }[];
}

/** One event of a known job: its notifications start; at its end the job is forgotten. */
function apply(s: Step, jobId: string, w: JobWatch, evt: JobEvent): Step {
  const { watch, notes } = onJobEvent(w, evt);
  let seq = s.seq;
  const inFlight = { ...s.inFlight };
  const start = [...s.start];
  for (const note of notes) {
    seq += 1;
    const key = `${NOTE}${seq}`;
    inFlight[key] = note;
    start.push({ key, note });
  }
  const jobs = { ...s.jobs };
  if (isEnd(evt.event)) delete jobs[jobId];
  else jobs[jobId] = watch;
  return { jobs, inFlight, seq, start };
}

/** A job's settings are known: the events that waited for them go through. */
function settled(c: Book, jobId: string, watch: JobWatch): Step {
  let s: Step = { jobs: { ...c.jobs, [jobId]: { ...watch, pending: [] } }, inFlight: c.inFlight, seq: c.seq, start: [] };
  for (const evt of watch.pending) {
    const w = s.jobs[jobId];
    if (!w) break; // it ended
    s = apply(s, jobId, w, evt);
  }
  return s;
}

/** A job forgotten (unknown to the scheduler, or its look-up failed). */
function without(c: Book, jobId: string): Step {
  const { [jobId]: _gone, ...jobs } = c.jobs;
  return { jobs, inFlight: c.inFlight, seq: c.seq, start: [] };
}

/**
 * The notifier: follows every job's events and sends the notifications its `notify` asks for.
 * A job's settings come with its submission (`job.submitted`) or, for a job first met through
 * an event, from a look-up (its events wait meanwhile). Each notification is a child actor that
 * retries with backoff and reports back; the outcome goes out as an event (`publishOutcome`).
 * On stop, notifications in flight get `stopGraceMs` to finish; the rest are reported failed.
 */
export const notifierMachine = setup({
  types: {
    context: {} as NotifierContext,
    input: {} as NotifierInput,
    events: {} as NotifierEvent,
  },
  actors: {
    lookupJob: retryingMachine,
    deliver: retryingMachine,
  },
  actions: {
    // placeholders: runtime.ts provides the real implementations
    publishOutcome: (_, _o: Outcome) => {},
    /** A job's notify settings are contradictory: said once; what can be done is done. */
    settingsProblem: (_, _p: { jobId: string; problems: NotifyProblem[] }) => {},
    /** A job's settings could not be looked up: its notifications are lost. */
    lookupFailed: (_, _p: { jobId: string; attempts: number; error: string }) => {},
  },
  guards: {
    nothingInFlight: ({ context }) => Object.keys(context.inFlight).length === 0,
  },
  delays: {
    stopGrace: ({ context }) => context.stopGraceMs,
  },
}).createMachine({
  id: 'notifier',
  context: ({ input }) => ({ ...input, jobs: {}, inFlight: {}, seq: 0 }),
  initial: 'running',
  on: {
    // a retrying child ended: a look-up brings a job's settings, a delivery its outcome. Taken
    // while stopping too, so the last deliveries report back.
    'retry.ended': {
      actions: enqueueActions(({ context, event: e, enqueue }) => {
        let s: Step | null = null;
        if (e.key.startsWith(NOTE)) {
          const note = context.inFlight[e.key];
          if (!note) return;
          const { [e.key]: _done, ...inFlight } = context.inFlight;
          enqueue.assign({ inFlight });
          const outcome: Outcome = e.ok
            ? { note, ok: true, attempts: e.attempts, receipt: (e.output ?? {}) as DeliveryReceipt }
            : { note, ok: false, attempts: e.attempts, error: e.error };
          enqueue({ type: 'publishOutcome', params: outcome });
          return;
        }
        const jobId = e.key.slice(LOOKUP.length);
        const w = context.jobs[jobId];
        if (!w?.looking) return; // its submission came meanwhile
        if (!e.ok) {
          enqueue({ type: 'lookupFailed', params: { jobId, attempts: e.attempts, error: e.error } });
          s = without(context, jobId);
        } else {
          const found = e.output as LookupResult;
          if (!found.found) {
            s = without(context, jobId);
          } else {
            const { watch, problems } = watchFor(found.notify, w.pending);
            if (problems.length > 0) enqueue({ type: 'settingsProblem', params: { jobId, problems } });
            s = settled(context, jobId, watch);
          }
        }
        for (const { key, note } of s.start) enqueue.spawnChild('deliver', { id: key, input: { key, payload: note, policy: context.retry } });
        enqueue.assign({ jobs: s.jobs, inFlight: s.inFlight, seq: s.seq });
      }),
    },
  },
  states: {
    running: {
      on: {
        'notifier.stop': 'stopping',
        'job.submitted': {
          actions: enqueueActions(({ context, event, enqueue }) => {
            const known = context.jobs[event.jobId];
            if (known && !known.looking) return; // a resubmission (the client retried): same settings
            const { watch, problems } = watchFor(event.notify, known?.pending);
            if (problems.length > 0) enqueue({ type: 'settingsProblem', params: { jobId: event.jobId, problems } });
            const s = settled(context, event.jobId, watch);
            for (const { key, note } of s.start) enqueue.spawnChild('deliver', { id: key, input: { key, payload: note, policy: context.retry } });
            enqueue.assign({ jobs: s.jobs, inFlight: s.inFlight, seq: s.seq });
          }),
        },
        'job.event': {
          actions: enqueueActions(({ context, event: { evt }, enqueue }) => {
            const w = context.jobs[evt.jobId];
            if (!w) {
              // first met through an event (the notifier started after the submission): look it up
              const key = `${LOOKUP}${evt.jobId}`;
              enqueue.spawnChild('lookupJob', { id: key, input: { key, payload: { jobId: evt.jobId }, policy: context.lookupRetry } });
              enqueue.assign({ jobs: { ...context.jobs, [evt.jobId]: lookingWatch(evt) } });
              return;
            }
            if (w.looking) {
              enqueue.assign({ jobs: { ...context.jobs, [evt.jobId]: withPending(w, evt) } });
              return;
            }
            const s = apply({ ...context, start: [] }, evt.jobId, w, evt);
            for (const { key, note } of s.start) enqueue.spawnChild('deliver', { id: key, input: { key, payload: note, policy: context.retry } });
            enqueue.assign({ jobs: s.jobs, inFlight: s.inFlight, seq: s.seq });
          }),
        },
        'frame.done': {
          actions: enqueueActions(({ context, event, enqueue }) => {
            const w = context.jobs[event.jobId];
            if (w && w.plan?.everyPercent !== undefined) enqueue.assign({ jobs: { ...context.jobs, [event.jobId]: withSample(w, event.sample) } });
          }),
        },
      },
    },
    stopping: {
      always: { guard: 'nothingInFlight', target: 'stopped' },
      after: { stopGrace: 'stopped' },
    },
    stopped: {
      type: 'final',
      entry: enqueueActions(({ context, self, enqueue }) => {
        const children = self.getSnapshot().children;
        for (const [key, note] of Object.entries(context.inFlight)) {
          const attempts = children[key]?.getSnapshot().context.attempt ?? 0;
          enqueue({ type: 'publishOutcome', params: { note, ok: false, attempts, error: STOPPED_EARLY } });
        }
        enqueue.assign({ inFlight: {} });
      }),
    },
  },
});
