import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createActor, fromPromise, SimulatedClock } from 'xstate';
import { notifierMachine, retryingMachine, DeliveryError, STOPPED_EARLY, type LookupResult, type Notification, type Outcome } from '../../actors/notifier/index.ts';
import { PROTOCOL_MAJOR, type JobEvent, type JobNotify, type NotifyProblem } from '../../protocol/index.ts';

const flush = async () => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
};

/** A job event with counts; the rest defaulted. */
function aJobEvent(jobId: string, event: string, counts: { total?: number; done?: number; failed?: number } = {}, at = 1_000): JobEvent {
  const total = counts.total ?? 10;
  const done = counts.done ?? 0;
  const failed = counts.failed ?? 0;
  return {
    v: PROTOCOL_MAJOR,
    jobId,
    event,
    at,
    job: {
      jobId, name: 'shot', user: 'ann', group: 'fx', project: 'fx', priority: 50, state: 'rendering', submittedAt: 0, outputDir: '/out/shot',
      counts: { total, done, failed, queued: total - done - failed, running: 0 },
    },
  };
}

interface Rig {
  actor: ReturnType<typeof createActor<typeof notifierMachine>>;
  clock: SimulatedClock;
  sent: Notification[];
  outcomes: Outcome[];
  problems: { jobId: string; problems: NotifyProblem[] }[];
  lookups: string[];
}

/**
 * The notifier with fake collaborators: `deliver` decides each attempt (default: success),
 * `lookup` answers look-ups (default: unknown job).
 */
function rig(o: {
  deliver?: (n: Notification, attempt: number) => Promise<unknown>;
  lookup?: (jobId: string) => Promise<LookupResult>;
  attempts?: number;
} = {}): Rig {
  const sent: Notification[] = [];
  const outcomes: Outcome[] = [];
  const problems: Rig['problems'] = [];
  const lookups: string[] = [];
  const tries = new Map<string, number>();
  const machine = notifierMachine.provide({
    actors: {
      deliver: retryingMachine.provide({
        actors: {
          task: fromPromise<unknown, unknown>(async ({ input }) => {
            const n = input as Notification;
            const k = `${n.id}/${n.to.join(',')}`;
            const attempt = (tries.get(k) ?? 0) + 1;
            tries.set(k, attempt);
            sent.push(n);
            return o.deliver ? o.deliver(n, attempt) : {};
          }),
        },
      }),
      lookupJob: retryingMachine.provide({
        actors: {
          task: fromPromise<unknown, unknown>(async ({ input }) => {
            const { jobId } = input as { jobId: string };
            lookups.push(jobId);
            return o.lookup ? o.lookup(jobId) : { found: false };
          }),
        },
      }),
    },
    actions: {
      publishOutcome: (_, out: Outcome) => void outcomes.push(out),
      settingsProblem: (_, p) => void problems.push(p),
    },
  });
  const clock = new SimulatedClock();
  const actor = createActor(machine, {
    clock,
    input: {
      retry: { attempts: o.attempts ?? 3, firstDelayMs: 1_000, maxDelayMs: 60_000 },
      lookupRetry: { attempts: 2, firstDelayMs: 500, maxDelayMs: 500 },
      stopGraceMs: 5_000,
    },
  }).start();
  return { actor, clock, sent, outcomes, problems, lookups };
}

const submit = (r: Rig, jobId: string, notify?: JobNotify) => r.actor.send({ type: 'job.submitted', jobId, ...(notify !== undefined ? { notify } : {}) });
const evt = (r: Rig, e: JobEvent) => r.actor.send({ type: 'job.event', evt: e });

test('notifier - at the end of a job, one notification per webhook and one email to every address, sharing an id', async () => {
  const r = rig();
  submit(r, 'j1', { webhooks: ['http://a.example/h', 'http://b.example/h'], email: ['ann@studio.example', 'bob@studio.example'] });
  evt(r, aJobEvent('j1', 'started'));
  evt(r, aJobEvent('j1', 'progress', { done: 5 }));
  await flush();
  assert.equal(r.sent.length, 0, 'nothing before the end without everyPercent');
  evt(r, aJobEvent('j1', 'done', { done: 10 }, 2_000));
  await flush();
  assert.deepEqual(r.sent.map((n) => [n.channel, n.to]), [
    ['webhook', ['http://a.example/h']],
    ['webhook', ['http://b.example/h']],
    ['email', ['ann@studio.example', 'bob@studio.example']],
  ]);
  assert.deepEqual(new Set(r.sent.map((n) => n.id)), new Set(['j1.done.2000']));
  assert.deepEqual(r.outcomes.map((o) => [o.note.channel, o.ok, o.attempts]), [['webhook', true, 1], ['webhook', true, 1], ['email', true, 1]]);
  assert.deepEqual(r.actor.getSnapshot().context.jobs, {}, 'an ended job is forgotten');
});

test('notifier - retries a retryable failure with backoff (1 s, 2 s), then reports it sent', async () => {
  const r = rig({ deliver: async (_n, attempt) => (attempt < 3 ? Promise.reject(new DeliveryError('HTTP 500', true)) : {}) });
  submit(r, 'j1', { webhooks: ['http://a.example/h'] });
  evt(r, aJobEvent('j1', 'failed', { failed: 10 }));
  await flush();
  assert.equal(r.sent.length, 1);
  r.clock.increment(999);
  await flush();
  assert.equal(r.sent.length, 1, 'the first retry waits 1 s');
  r.clock.increment(1);
  await flush();
  assert.equal(r.sent.length, 2);
  r.clock.increment(1_999);
  await flush();
  assert.equal(r.sent.length, 2, 'the second waits 2 s');
  r.clock.increment(1);
  await flush();
  assert.equal(r.sent.length, 3);
  assert.deepEqual(r.outcomes.map((o) => [o.ok, o.attempts, o.note.trigger]), [[true, 3, 'failed']]);
});

test('notifier - gives up after its attempts, and at once on an error that is not retryable', async () => {
  const r = rig({
    attempts: 2,
    deliver: async (n) => Promise.reject(n.channel === 'email' ? new DeliveryError('550 no such user', false) : new DeliveryError('ECONNREFUSED', true)),
  });
  submit(r, 'j1', { webhooks: ['http://down.example/h'], email: ['nobody@studio.example'] });
  evt(r, aJobEvent('j1', 'cancelled'));
  await flush();
  assert.deepEqual(r.outcomes.map((o) => [o.note.channel, o.ok, o.attempts, o.error]), [['email', false, 1, '550 no such user']]);
  r.clock.increment(1_000);
  await flush();
  assert.deepEqual(r.outcomes.map((o) => [o.note.channel, o.ok, o.attempts, o.error]), [
    ['email', false, 1, '550 no such user'],
    ['webhook', false, 2, 'ECONNREFUSED'],
  ]);
  r.clock.increment(60_000);
  await flush();
  assert.equal(r.sent.length, 3, 'nothing after giving up');
});

test('notifier - progress every N%: once per step, the highest step passed, with the latest sample frame; the end still goes', async () => {
  const r = rig();
  submit(r, 'j1', { email: ['ann@studio.example'], everyPercent: 25 });
  const frame = (n: number) => r.actor.send({ type: 'frame.done', jobId: 'j1', sample: { frame: n, output: `/out/shot/f_${n}.png` } });
  frame(1);
  frame(2);
  evt(r, aJobEvent('j1', 'progress', { done: 2 })); // 20 %: below the first step
  frame(3);
  evt(r, aJobEvent('j1', 'progress', { done: 3 })); // 30 %
  evt(r, aJobEvent('j1', 'progress', { done: 3, failed: 1 })); // 40 %: same step
  frame(7);
  evt(r, aJobEvent('j1', 'progress', { done: 7, failed: 1 })); // 80 %: passes 50 and 75, tells 75 only
  evt(r, aJobEvent('j1', 'progress', { done: 9, failed: 1 })); // 100 %: the end tells it
  evt(r, aJobEvent('j1', 'failed', { done: 9, failed: 1 }));
  await flush();
  assert.deepEqual(r.sent.map((n) => [n.trigger, n.percent, n.sample?.frame]), [
    ['progress', 25, 3],
    ['progress', 75, 7],
    ['failed', undefined, undefined],
  ]);
});

test('notifier - a job first met through an event is looked up; its events wait for the answer', async () => {
  let answer!: (r: LookupResult) => void;
  const r = rig({ lookup: () => new Promise<LookupResult>((res) => (answer = res)) });
  evt(r, aJobEvent('j9', 'progress', { done: 3 }));
  evt(r, aJobEvent('j9', 'progress', { done: 6 }));
  evt(r, aJobEvent('j9', 'done', { done: 10 }));
  await flush();
  assert.deepEqual(r.lookups, ['j9'], 'one look-up, however many events');
  assert.equal(r.sent.length, 0);
  answer({ found: true, notify: { webhooks: ['http://a.example/h'], everyPercent: 50 } });
  await flush();
  assert.deepEqual(r.sent.map((n) => [n.trigger, n.percent]), [['progress', 50], ['done', undefined]], 'only the latest progress waited');
  assert.deepEqual(r.actor.getSnapshot().context.jobs, {});
});

test('notifier - a job submitted without notify needs no look-up and sends nothing; one the scheduler does not know is forgotten', async () => {
  const r = rig();
  submit(r, 'quiet');
  evt(r, aJobEvent('quiet', 'progress', { done: 5 }));
  evt(r, aJobEvent('ghost', 'progress', { done: 5 }));
  await flush();
  assert.deepEqual(r.lookups, ['ghost']);
  evt(r, aJobEvent('quiet', 'done', { done: 10 }));
  await flush();
  assert.equal(r.sent.length, 0);
  assert.deepEqual(Object.keys(r.actor.getSnapshot().context.jobs), [], 'both forgotten');
});

test('notifier - the original array form: a POST to each URL when the job ends, no progress', async () => {
  const r = rig();
  submit(r, 'j1', ['http://a.example/h']);
  evt(r, aJobEvent('j1', 'progress', { done: 5 }));
  evt(r, aJobEvent('j1', 'done', { done: 10 }));
  await flush();
  assert.deepEqual(r.sent.map((n) => [n.channel, n.trigger, n.to]), [['webhook', 'done', ['http://a.example/h']]]);
});

test('notifier - contradictory settings are reported once; what they allow is still sent', async () => {
  const r = rig();
  submit(r, 'j1', { webhooks: ['http://a.example/h'], on: ['done', 'progress'] }); // progress without everyPercent
  evt(r, aJobEvent('j1', 'progress', { done: 5 }));
  evt(r, aJobEvent('j1', 'done', { done: 10 }));
  await flush();
  assert.equal(r.problems.length, 1);
  assert.equal(r.problems[0]!.problems[0]!.field, 'notify.on');
  assert.deepEqual(r.sent.map((n) => n.trigger), ['done']);
});

test('notifier - on stop, deliveries in flight may finish within the grace period; the rest are reported failed', async () => {
  const r = rig({ deliver: async (n) => (n.channel === 'email' ? new Promise(() => {}) : {}) });
  submit(r, 'j1', { webhooks: ['http://a.example/h'], email: ['ann@studio.example'] });
  evt(r, aJobEvent('j1', 'done', { done: 10 }));
  await flush();
  r.actor.send({ type: 'notifier.stop' });
  await flush();
  assert.equal(r.actor.getSnapshot().value, 'stopping');
  evt(r, aJobEvent('j2', 'done'));
  await flush();
  assert.deepEqual(r.lookups, [], 'no new work while stopping');
  r.clock.increment(5_000);
  await flush();
  assert.equal(r.actor.getSnapshot().status, 'done');
  assert.deepEqual(r.outcomes.map((o) => [o.note.channel, o.ok, o.attempts, o.error]), [['webhook', true, 1, undefined], ['email', false, 1, STOPPED_EARLY]]);
});

test('notifier - stops at once when nothing is in flight', async () => {
  const r = rig();
  r.actor.send({ type: 'notifier.stop' });
  await flush();
  assert.equal(r.actor.getSnapshot().status, 'done');
});
