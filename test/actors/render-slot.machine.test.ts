import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createActor, fromPromise, SimulatedClock, waitFor } from 'xstate';
import {
  renderSlotMachine, SLOT_REAP_TIMEOUT_MS,
  type PreparedTask, type RenderOutcome, type ReportOutput, type SlotResult,
} from '../../actors/render-slot/index.ts';
import { FarmError, type TaskAssignment } from '../../protocol/index.ts';
import { aTaskAssignment } from '../helpers/builders.ts';

const aTask = (o: Partial<TaskAssignment> = {}): TaskAssignment =>
  aTaskAssignment({ taskIndex: 0, frames: [1, 2], renderer: 'povray', scene: '/s/scene.pov', outputDir: '/out', outputPattern: 'f_##.png', ...o });
const PREPARED: PreparedTask = { workDir: '/out/.rb-partial/j1.0-a1', logFile: '/out/.rb-logs/j1.0-a1.log', workDirUsed: true, invocations: [] };
const DONE: RenderOutcome = {
  status: 'done',
  produced: [{ frame: 1, file: '/w/f1.png' }, { frame: 2, file: '/w/f2.png' }],
  usage: { wallMs: 900, cpuMs: 800, peakRssKb: 20_000 },
};
const never = <T>() => new Promise<T>(() => {});
const flush = () => new Promise((r) => setImmediate(r));

interface Record {
  prepared: TaskAssignment[];
  delivered: { task: TaskAssignment; outcome: RenderOutcome }[];
  reported: { result: SlotResult; wantNext: boolean; attempt: number }[];
  idle: number;
  started: { taskId: string; waitMs: number }[];
  dropped: unknown[];
  aborted: boolean;
}

/** The slot machine with fake effects; each may be replaced. */
function aSlot(o: {
  prepare?: (t: TaskAssignment) => Promise<PreparedTask>;
  runTask?: (i: { task: TaskAssignment }, signal: AbortSignal) => Promise<RenderOutcome>;
  reap?: () => Promise<RenderOutcome>;
  report?: (i: { result: SlotResult; wantNext: boolean; attempt: number }, n: number) => Promise<ReportOutput>;
} = {}) {
  const rec: Record = { prepared: [], delivered: [], reported: [], idle: 0, started: [], dropped: [], aborted: false };
  const clock = new SimulatedClock();
  const machine = renderSlotMachine.provide({
    actors: {
      prepare: fromPromise<PreparedTask, TaskAssignment>(async ({ input }) => {
        rec.prepared.push(input);
        return o.prepare ? o.prepare(input) : PREPARED;
      }),
      runTask: fromPromise<RenderOutcome, { task: TaskAssignment; prepared: PreparedTask }>(async ({ input, signal }) => {
        signal.addEventListener('abort', () => (rec.aborted = true));
        return o.runTask ? o.runTask(input, signal) : DONE;
      }),
      reap: fromPromise<RenderOutcome, { task: TaskAssignment }>(async () => (o.reap ? o.reap() : DONE)),
      deliver: fromPromise<SlotResult, { task: TaskAssignment; prepared: PreparedTask | null; outcome: RenderOutcome; slot: number }>(async ({ input }) => {
        rec.delivered.push({ task: input.task, outcome: input.outcome });
        const t = input.task;
        return {
          taskId: t.taskId, jobId: t.jobId, taskIndex: t.taskIndex, attempt: t.attempt, slot: input.slot,
          status: input.outcome.status,
          outputs: input.outcome.produced.map((p) => ({ frame: p.frame, path: `/out/f_${p.frame}.png` })),
          ...(input.outcome.error ? { error: input.outcome.error } : {}),
          stats: { ...input.outcome.usage, bytesWritten: 10 },
        };
      }),
      report: fromPromise<ReportOutput, { result: SlotResult; wantNext: boolean; attempt: number }>(async ({ input }) => {
        rec.reported.push(input);
        return o.report ? o.report(input, rec.reported.length) : { next: null, waitMs: 1 };
      }),
    },
    actions: {
      slotIdle: () => void rec.idle++,
      taskStarted: ({ context }) => void rec.started.push({ taskId: context.task!.taskId, waitMs: context.waitMs }),
      resultDropped: (_, params) => void rec.dropped.push(params.error),
    },
  });
  const actor = createActor(machine, { clock, input: { index: 3 } }).start();
  return { actor, clock, rec };
}

test('render-slot - renders a task, delivers it, reports it and goes back to idle', async () => {
  const { actor, rec } = aSlot();
  assert.equal(actor.getSnapshot().value, 'idle');
  assert.equal(rec.idle, 1);
  actor.send({ type: 'slot.assign', task: aTask(), waitMs: 12.5 });
  assert.equal(actor.getSnapshot().value, 'preparing');
  assert.deepEqual(rec.started, [{ taskId: 'j1.0', waitMs: 12.5 }]);
  await waitFor(actor, (s) => s.value === 'idle');
  assert.equal(rec.delivered.length, 1);
  assert.equal(rec.delivered[0]!.outcome, DONE);
  assert.equal(rec.reported.length, 1);
  assert.equal(rec.reported[0]!.wantNext, true);
  assert.equal(rec.reported[0]!.result.slot, 3);
  assert.equal(rec.reported[0]!.result.status, 'done');
  assert.deepEqual(rec.reported[0]!.result.outputs, [{ frame: 1, path: '/out/f_1.png' }, { frame: 2, path: '/out/f_2.png' }]);
  assert.equal(rec.idle, 2);
  assert.equal(actor.getSnapshot().context.task, null);
});

test('render-slot - a next task in the result reply goes straight to preparing, never idle', async () => {
  const next = aTask({ taskId: 'j1.1', taskIndex: 1, frames: [3, 4] });
  const states: string[] = [];
  const { actor, rec } = aSlot({ report: async (_i, n) => ({ next: n === 1 ? next : null, waitMs: n === 1 ? 0.4 : 1 }) });
  actor.subscribe((s) => states.push(JSON.stringify(s.value)));
  actor.send({ type: 'slot.assign', task: aTask(), waitMs: 3 });
  await waitFor(actor, (s) => s.value === 'idle' && rec.reported.length === 2);
  assert.deepEqual(rec.prepared.map((t) => t.taskId), ['j1.0', 'j1.1']);
  assert.deepEqual(rec.started, [{ taskId: 'j1.0', waitMs: 3 }, { taskId: 'j1.1', waitMs: 0.4 }]);
  const between = states.slice(states.indexOf('{"delivering":"reporting"}'), states.lastIndexOf('"preparing"') + 1);
  assert.deepEqual(between, ['{"delivering":"reporting"}', '"preparing"']);
  assert.equal(rec.idle, 2); // at start and after the second task only
});

test('render-slot - a busy slot ignores another assignment', async () => {
  const { actor, rec } = aSlot({ runTask: () => never() });
  actor.send({ type: 'slot.assign', task: aTask(), waitMs: 0 });
  await waitFor(actor, (s) => s.value === 'rendering');
  actor.send({ type: 'slot.assign', task: aTask({ taskId: 'j9.0' }), waitMs: 0 });
  assert.equal(actor.getSnapshot().context.task!.taskId, 'j1.0');
  assert.equal(rec.prepared.length, 1);
});

test('render-slot - a renderer that throws delivers a failed result with its error', async () => {
  const { actor, rec } = aSlot({ runTask: async () => { throw new FarmError('RB_RENDERER_MISSING', "'povray' is not installed on this host"); } });
  actor.send({ type: 'slot.assign', task: aTask(), waitMs: 0 });
  await waitFor(actor, (s) => s.value === 'idle' && rec.reported.length === 1);
  const r = rec.reported[0]!.result;
  assert.equal(r.status, 'failed');
  assert.deepEqual(r.error, { code: 'RB_RENDERER_MISSING', message: "'povray' is not installed on this host" });
  assert.deepEqual(r.outputs, []);
});

test('render-slot - a task that cannot be prepared fails as a bad job without rendering', async () => {
  let rendered = false;
  const { actor, rec } = aSlot({
    prepare: async () => { throw new Error('output pattern has no #'); },
    runTask: async () => { rendered = true; return DONE; },
  });
  actor.send({ type: 'slot.assign', task: aTask(), waitMs: 0 });
  await waitFor(actor, (s) => s.value === 'idle' && rec.reported.length === 1);
  assert.equal(rendered, false);
  assert.deepEqual(rec.reported[0]!.result.error, { code: 'RB_BAD_JOB', message: 'output pattern has no #' });
});

test('render-slot - cancel kills the render, waits for it to end and reports it as killed', async () => {
  let finish!: (o: RenderOutcome) => void;
  const ended = new Promise<RenderOutcome>((r) => (finish = r));
  const { actor, rec } = aSlot({ runTask: () => never(), reap: () => ended });
  actor.send({ type: 'slot.assign', task: aTask(), waitMs: 0 });
  await waitFor(actor, (s) => s.value === 'rendering');
  actor.send({ type: 'slot.cancel', reason: 'killed on request' });
  assert.equal(actor.getSnapshot().value, 'killing');
  assert.equal(rec.aborted, true);
  await flush();
  assert.equal(actor.getSnapshot().value, 'killing'); // still waiting for the process to go
  finish({ status: 'failed', produced: [{ frame: 1, file: '/w/f1.png' }], error: { code: 'RB_RENDER_FAILED', message: 'task cancelled' }, usage: { wallMs: 50, cpuMs: 40, peakRssKb: 9 } });
  await waitFor(actor, (s) => s.value === 'idle');
  const r = rec.reported[0]!.result;
  assert.equal(r.status, 'failed');
  assert.deepEqual(r.error, { code: 'RB_RENDER_FAILED', message: 'task killed: killed on request' });
  assert.deepEqual(r.outputs, [{ frame: 1, path: '/out/f_1.png' }]); // the frame it finished is kept
  assert.equal(r.stats.cpuMs, 40);
});

test('render-slot - a renderer that will not die is given up after the reap timeout', async () => {
  const { actor, clock, rec } = aSlot({ runTask: () => never(), reap: () => never() });
  actor.send({ type: 'slot.assign', task: aTask(), waitMs: 0 });
  await waitFor(actor, (s) => s.value === 'rendering');
  actor.send({ type: 'slot.cancel', reason: 'server stopping', code: 'RB_DRAINING' });
  clock.increment(SLOT_REAP_TIMEOUT_MS - 1);
  assert.equal(actor.getSnapshot().value, 'killing');
  clock.increment(1);
  await waitFor(actor, (s) => s.value === 'idle');
  assert.deepEqual(rec.reported[0]!.result.error, { code: 'RB_DRAINING', message: 'task killed: server stopping' });
});

test('render-slot - cancel while preparing lets the work dir be made, then delivers the kill', async () => {
  let ready!: (p: PreparedTask) => void;
  let rendered = false;
  const { actor, rec } = aSlot({ prepare: () => new Promise((r) => (ready = r)), runTask: async () => { rendered = true; return DONE; } });
  actor.send({ type: 'slot.assign', task: aTask(), waitMs: 0 });
  actor.send({ type: 'slot.cancel', reason: 'job cancelled' });
  assert.equal(actor.getSnapshot().value, 'preparing');
  ready(PREPARED);
  await waitFor(actor, (s) => s.value === 'idle');
  assert.equal(rendered, false);
  assert.equal(rec.delivered[0]!.outcome.status, 'failed');
  assert.match(rec.reported[0]!.result.error!.message, /job cancelled/);
});

test('render-slot - holds a result and retries with growing backoff while the scheduler is away', async () => {
  const away = new FarmError('RB_SCHEDULER_UNAVAILABLE', 'no answer', { retryable: true });
  const { actor, clock, rec } = aSlot({ report: async (_i, n) => { if (n <= 3) throw away; return { next: null, waitMs: 0 }; } });
  actor.send({ type: 'slot.assign', task: aTask(), waitMs: 0 });
  const retrying = (attempt: number) => waitFor(actor, (s) => s.matches({ delivering: 'retrying' }) && s.context.reportAttempts === attempt);
  await retrying(1);
  clock.increment(249);
  assert.equal(rec.reported.length, 1);
  clock.increment(1);
  await retrying(2);
  assert.equal(rec.reported.length, 2);
  clock.increment(499);
  assert.equal(rec.reported.length, 2);
  clock.increment(1);
  await retrying(3);
  clock.increment(1000);
  await waitFor(actor, (s) => s.value === 'idle');
  assert.equal(rec.reported.length, 4);
  assert.ok(rec.reported.every((r) => r.result.taskId === 'j1.0'));
  assert.deepEqual(rec.reported.map((r) => r.attempt), [0, 1, 2, 3], 'each send knows its attempt: the later ones wait longer for a reply');
  assert.equal(rec.delivered.length, 1); // the files were stored once
});

test('render-slot - a result waiting out its backoff goes at once when the scheduler is back', async () => {
  const away = new FarmError('RB_SCHEDULER_UNAVAILABLE', 'no answer', { retryable: true });
  const { actor, rec } = aSlot({ report: async (_i, n) => { if (n <= 4) throw away; return { next: null, waitMs: 0 }; } });
  actor.send({ type: 'slot.assign', task: aTask(), waitMs: 0 });
  for (let attempt = 1; attempt <= 4; attempt++) {
    await waitFor(actor, (s) => s.matches({ delivering: 'retrying' }) && s.context.reportAttempts === attempt);
    actor.send({ type: 'slot.retryNow' }); // no clock moves: only the nudge sends it again
  }
  await waitFor(actor, (s) => s.value === 'idle');
  assert.equal(rec.reported.length, 5);
});

test('render-slot - a result the scheduler refuses for good is dropped, not retried', async () => {
  const { actor, rec } = aSlot({ report: async () => { throw new FarmError('RB_UNKNOWN_JOB', 'no such job j1'); } });
  actor.send({ type: 'slot.assign', task: aTask(), waitMs: 0 });
  await waitFor(actor, (s) => s.value === 'idle' && rec.reported.length === 1);
  assert.equal(rec.dropped.length, 1);
  assert.equal((rec.dropped[0] as FarmError).code, 'RB_UNKNOWN_JOB');
});

test('render-slot - a draining slot asks for no next task', async () => {
  const { actor, rec } = aSlot();
  actor.send({ type: 'slot.drain' });
  actor.send({ type: 'slot.assign', task: aTask(), waitMs: 0 });
  await waitFor(actor, (s) => s.value === 'idle' && rec.reported.length === 1);
  assert.equal(rec.reported[0]!.wantNext, false);
});

test('render-slot - an undrained slot asks for its next task again', async () => {
  const { actor, rec } = aSlot();
  actor.send({ type: 'slot.drain' });
  actor.send({ type: 'slot.undrain' });
  assert.equal(actor.getSnapshot().context.draining, false);
  actor.send({ type: 'slot.assign', task: aTask(), waitMs: 0 });
  await waitFor(actor, (s) => s.value === 'idle' && rec.reported.length === 1);
  assert.equal(rec.reported[0]!.wantNext, true);
});
