import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HostHealth, SICK_AFTER_JOBS, SICK_FOR_MS, SICK_WINDOW_MS } from '../../actors/scheduler/host-health.ts';

test('host health - a host that fails frames of several different jobs goes sick; many failures of one job do not', () => {
  const h = new HostHealth();
  for (let i = 0; i < 10; i++) assert.equal(h.failed('h1', 'j1', i), undefined, 'one job alone: that is the job\'s problem');
  assert.equal(h.isSick('h1', 10), false);
  for (let j = 2; j < SICK_AFTER_JOBS; j++) h.failed('h1', `j${j}`, 20);
  const sick = h.failed('h1', 'jlast', 30);
  assert.deepEqual(sick, { host: 'h1', until: 30 + SICK_FOR_MS, jobs: ['j1', ...Array.from({ length: SICK_AFTER_JOBS - 2 }, (_, i) => `j${i + 2}`), 'jlast'] });
  assert.equal(h.isSick('h1', 31), true);
  assert.deepEqual(h.list(31).map((s) => s.host), ['h1']);
  assert.equal(h.isSick('h1', 30 + SICK_FOR_MS), false, 'well again after its time');
});

test('host health - only failures within the window count, and an operator can clear a sick host', () => {
  const h = new HostHealth();
  h.failed('h1', 'a', 0);
  h.failed('h1', 'b', 1);
  h.failed('h1', 'c', SICK_WINDOW_MS + 10);
  assert.equal(h.isSick('h1', SICK_WINDOW_MS + 10), false, 'a and b are too old');
  for (const j of ['d', 'e']) h.failed('h2', j, 0);
  h.failed('h2', 'f', 0);
  assert.equal(h.isSick('h2', 1), true);
  assert.equal(h.clear('h2'), true);
  assert.equal(h.isSick('h2', 1), false);
  assert.equal(h.clear('h2'), false, 'not sick any more');
});
