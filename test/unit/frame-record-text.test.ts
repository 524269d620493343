import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type FrameRecord, type JobDetail } from '../../protocol/index.ts';
import { describeFrame } from '../../tools/cli/frame.ts';
import { describeJob } from '../../tools/cli/job.ts';
import { countsText, paint } from '../../tools/cli/format.ts';
import { aJobSpec } from '../helpers/builders.ts';

const plain = paint({});
const T = new Date(2026, 0, 2, 10, 0, 0).getTime();

function aJob(frames: FrameRecord[], counts: JobDetail['counts']): JobDetail {
  return {
    jobId: 'j1', name: 'shot', user: 'ann', group: 'fx', project: 'fx', priority: 50, state: 'rendering', counts,
    submittedAt: T, outputDir: '/out', spec: aJobSpec(), frames,
  };
}

test('frame-record text - counts show frames in hand apart from running', () => {
  assert.equal(countsText({ total: 5, queued: 2, running: 1, done: 1, failed: 0, inHand: 1 }), '1/5 done, 1 running, 1 in hand, 2 queued, 0 failed');
  assert.equal(countsText({ total: 5, queued: 3, running: 1, done: 1, failed: 0 }), '1/5 done, 1 running, 3 queued, 0 failed');
});

test('frame-record text - renderbus job shows a frame in hand as such, waiting on its slot, and counts failed attempts', () => {
  const frames: FrameRecord[] = [
    { frame: 1, state: 'running', taskIndex: 0, attempt: 3, host: 'h1', slot: 0, handedAt: T, startedAt: T + 1000, attempts: [
      { attempt: 1, host: 'h2', slot: 1, error: 'RB_RENDER_FAILED: a', finishedAt: T - 5000 },
      { attempt: 2, host: 'h3', slot: 0, error: 'RB_RENDER_FAILED: b', startedAt: T - 3000, finishedAt: T - 1000 },
    ] },
    { frame: 2, state: 'running', taskIndex: 1, attempt: 1, host: 'h1', slot: 0, handedAt: T, inHand: true },
  ];
  const text = describeJob(aJob(frames, { total: 2, queued: 0, running: 1, done: 0, failed: 0, inHand: 1 }), plain, T + 3000);
  assert.match(text, /state\s+rendering: 0\/2 done, 1 running, 1 in hand, 0 queued, 0 failed/);
  assert.match(text, /\n1\s+running\s+h1\/0\s+3 \(2 failed\)\s+2\.0s…/);
  assert.match(text, /\n2\s+in hand\s+h1\/0\s+1\s+waiting on its slot/);
});

test('frame-record text - renderbus frame shows the hand-out, the real start, and each failed attempt in a line', () => {
  const f: FrameRecord = { frame: 7, state: 'done', taskIndex: 6, attempt: 3, host: 'h1', slot: 0, handedAt: T, startedAt: T + 2000, finishedAt: T + 5000, attempts: [
    { attempt: 1, host: 'h2', slot: 1, error: 'RB_RENDER_FAILED: Parse Error:\n  expected }', startedAt: T - 9000, finishedAt: T - 8500 },
    { attempt: 2, host: 'h3', slot: 4, error: 'RB_TIMEOUT: task killed', finishedAt: T - 1000 },
  ] };
  const text = describeFrame(aJob([f], { total: 1, queued: 0, running: 0, done: 1, failed: 0 }), f, null, null, null, plain);
  assert.match(text, /handed out\s+2026-01-02 10:00:00\n/);
  assert.match(text, /started\s+2026-01-02 10:00:02\n/);
  assert.match(text, /attempt 1\s+failed on h2\/1 \(2026-01-02 09:59:51, took 500ms\): RB_RENDER_FAILED: Parse Error: expected }\n/);
  assert.match(text, /attempt 2\s+failed on h3\/4 \(ended 2026-01-02 09:59:59\): RB_TIMEOUT: task killed\n/);
  const held: FrameRecord = { frame: 8, state: 'running', taskIndex: 7, attempt: 1, host: 'h1', slot: 0, handedAt: T, inHand: true };
  const heldText = describeFrame(aJob([held], { total: 1, queued: 0, running: 0, done: 0, failed: 0, inHand: 1 }), held, null, null, null, plain);
  assert.match(heldText, /state\s+in hand\n/);
  assert.match(heldText, /started\s+not yet: its slot holds it in hand/);
});
