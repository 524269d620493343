import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FailureStreak, STREAK_FIRST_REPORT } from '../../actors/render-server/index.ts';

test('failure-streak - a host failing task after task is summed up at 5, 10, 20 failures in a row, not at every one', () => {
  const s = new FailureStreak();
  const reports: number[] = [];
  for (let i = 1; i <= 40; i++) {
    const r = s.failed({ jobId: i <= 3 ? 'j1' : 'j2', code: i % 2 ? 'RB_SCENE_ERROR' : 'RB_INPUT_NOT_FOUND', frames: 2 }, 1_000 + i);
    if (r) reports.push(r.tasks);
    if (i === STREAK_FIRST_REPORT) assert.deepEqual(r, { tasks: 5, frames: 10, codes: { RB_SCENE_ERROR: 3, RB_INPUT_NOT_FOUND: 2 }, jobs: ['j1', 'j2'], since: 1_001 });
  }
  assert.deepEqual(reports, [5, 10, 20, 40]);
  // a success ends the streak, and says how long it was
  assert.equal(s.succeeded()?.tasks, 40);
  assert.equal(s.failed({ jobId: 'j3', code: 'RB_RENDER_FAILED', frames: 1 }, 9_000), null);
});

test('failure-streak - a success before the first summary ends the streak quietly', () => {
  const s = new FailureStreak();
  for (let i = 0; i < STREAK_FIRST_REPORT - 1; i++) assert.equal(s.failed({ jobId: 'j1', code: 'RB_RENDER_FAILED', frames: 1 }, i), null);
  assert.equal(s.succeeded(), null);
  for (let i = 0; i < STREAK_FIRST_REPORT - 1; i++) assert.equal(s.failed({ jobId: 'j1', code: 'RB_RENDER_FAILED', frames: 1 }, i), null);
  assert.equal(s.failed({ jobId: 'j1', code: 'RB_RENDER_FAILED', frames: 1 }, 99)?.tasks, STREAK_FIRST_REPORT);
});
