import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_REPORT_EVERY_MS, HostLiveness, LEASE_TTL_PERIODS } from '../../actors/scheduler/liveness.ts';

test('liveness - a host whose reports stop is overdue after its lease period; one that reports is not', () => {
  const l = new HostLiveness();
  l.report('h1', 's1', 1_000, 0);
  l.report('h2', 's2', 1_000, 0);
  const ttl = LEASE_TTL_PERIODS * 1_000;
  assert.deepEqual(l.overdue(['h1', 'h2'], ttl), []);
  l.report('h2', 's2', 1_000, ttl);
  assert.deepEqual(l.overdue(['h1', 'h2'], ttl + 1), ['h1']);
});

test('liveness - a host leased before its first report gets a full period from the first look', () => {
  const l = new HostLiveness();
  assert.deepEqual(l.overdue(['h1'], 100), []);
  assert.deepEqual(l.overdue(['h1'], 100 + LEASE_TTL_PERIODS * DEFAULT_REPORT_EVERY_MS), []);
  assert.deepEqual(l.overdue(['h1'], 101 + LEASE_TTL_PERIODS * DEFAULT_REPORT_EVERY_MS), ['h1']);
});

test('liveness - while the scheduler is off the bus nobody is overdue, and everyone gets a full period once it is back', () => {
  const l = new HostLiveness();
  l.report('h1', 's1', 1_000, 0);
  l.pause();
  assert.deepEqual(l.overdue(['h1'], 60_000), [], 'a 60 s outage of our own');
  l.resume(60_000);
  assert.deepEqual(l.overdue(['h1'], 60_000 + LEASE_TTL_PERIODS * 1_000), []);
  assert.deepEqual(l.overdue(['h1'], 60_001 + LEASE_TTL_PERIODS * 1_000), ['h1']);
});

test('liveness - a report from a new instance of a host says it restarted', () => {
  const l = new HostLiveness();
  assert.equal(l.report('h1', 's1', 1_000, 0), false);
  assert.equal(l.report('h1', 's1', 1_000, 1), false);
  assert.equal(l.report('h1', 's2', 1_000, 2), true);
});
