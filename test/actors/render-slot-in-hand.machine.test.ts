import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assign, createActor, fromPromise, waitFor } from 'xstate';
import { renderSlotMachine, type PreparedTask, type RenderOutcome, type ReportOutput, type SlotResult } from '../../actors/render-slot/index.ts';
import type { TaskAssignment } from '../../protocol/index.ts';
import { aTaskAssignment } from '../helpers/builders.ts';

const PREPARED: PreparedTask = { workDir: '/out/.rb-partial/w', logFile: '/out/.rb-logs/w.log', workDirUsed: false, invocations: [] };
const DONE: RenderOutcome = { status: 'done', produced: [], usage: { wallMs: 5, cpuMs: 1, peakRssKb: 100 } };

test('render-slot - with a task in hand, delivery goes straight to that task and the result is reported in the background', async () => {
  const held: TaskAssignment[] = [aTaskAssignment({ taskId: 'j1.1', taskIndex: 1 })];
  const reported: SlotResult[] = [];
  const background: { result: SlotResult; wantNext: boolean }[] = [];
  const started: string[] = [];
  let renders = 0;
  let release: () => void = () => {};
  const machine = renderSlotMachine.provide({
    actors: {
      prepare: fromPromise<PreparedTask, TaskAssignment>(async () => PREPARED),
      // the second task (the one in hand) renders until released
      runTask: fromPromise<RenderOutcome, { task: TaskAssignment; prepared: PreparedTask }>(() => (++renders === 1 ? Promise.resolve(DONE) : new Promise((r) => (release = () => r(DONE))))),
      deliver: fromPromise<SlotResult, { task: TaskAssignment; prepared: PreparedTask | null; outcome: RenderOutcome; slot: number }>(async ({ input }) => ({
        taskId: input.task.taskId, jobId: input.task.jobId, taskIndex: input.task.taskIndex, attempt: input.task.attempt, slot: input.slot,
        status: 'done', outputs: [], stats: { ...input.outcome.usage, bytesWritten: 0 },
      })),
      report: fromPromise<ReportOutput, { result: SlotResult; wantNext: boolean; attempt: number }>(async ({ input }) => {
        reported.push(input.result);
        return { next: null, waitMs: 0 };
      }),
    },
    actions: {
      taskStarted: ({ context }) => void started.push(context.task!.taskId),
      reportInBackground: (_, params) => void background.push(params),
      takeHeld: assign({ task: () => held.shift()!, waitMs: 0 }),
    },
    guards: { taskInHand: () => held.length > 0 },
  });
  const actor = createActor(machine, { input: { index: 0 } }).start();
  actor.send({ type: 'slot.assign', task: aTaskAssignment({ taskId: 'j1.0', taskIndex: 0 }), waitMs: 0 });
  await waitFor(actor, () => started.length === 2);
  // the first task's result went in the background, asking for one more task; no report step ran
  assert.deepEqual(background.map((b) => [b.result.taskId, b.wantNext]), [['j1.0', true]]);
  assert.equal(reported.length, 0);
  assert.deepEqual(started, ['j1.0', 'j1.1']);
  assert.equal(actor.getSnapshot().context.task?.taskId, 'j1.1');
  // with nothing in hand the slot reports and waits for the reply, as before
  release();
  await waitFor(actor, (s) => s.value === 'idle');
  assert.deepEqual(reported.map((r) => r.taskId), ['j1.1']);
  assert.equal(background.length, 1);
  actor.stop();
});
