import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FarmModel, type MonitorEvent } from '../../actors/monitor/index.ts';
import type { FrameEvent, HostEvent, HostRecord, JobState, JobSummary } from '../../protocol/index.ts';
import { anInventory } from '../helpers/builders.ts';

const aSummary = (jobId: string, state: JobState, over: Partial<JobSummary> = {}): JobSummary => ({
  jobId, name: jobId, user: 'ann', group: 'fx', project: 'fx', priority: 50, state,
  counts: { total: 4, queued: 4, running: 0, done: 0, failed: 0 }, submittedAt: 1_000, outputDir: '/tmp/out', ...over,
});
const jobEvt = (jobId: string, state: JobState, at: number, event: string = state): MonitorEvent => ({ kind: 'job', evt: { v: 1, jobId, event, at, job: aSummary(jobId, state) } });
const frameEvt = (event: string, over: Partial<FrameEvent> = {}): MonitorEvent => ({ kind: 'frame', evt: { v: 1, jobId: 'j1', frame: 1, event, at: 2_000, host: 'node-a', slot: 0, attempt: 1, ...over } });
const hostEvt = (host: string, event: string, at: number, over: Partial<HostEvent> = {}): MonitorEvent => ({ kind: 'host', evt: { v: 1, host, event, at, ...over } });
const aHostRecord = (host: string, states: ('idle' | 'busy' | 'draining')[], load?: number): HostRecord => ({
  host, serverId: `${host}-1`, inventory: anInventory(), slots: states.map((state, index) => ({ index, state })), registeredAt: 0, lastSeenAt: 0, ...(load !== undefined ? { load } : {}),
});

test('monitor model - job events keep the latest summary of each job, counted by state', () => {
  const m = new FarmModel();
  m.apply(jobEvt('j1', 'queued', 100, 'submitted'));
  m.apply(jobEvt('j2', 'queued', 110, 'submitted'));
  m.apply(jobEvt('j1', 'rendering', 120, 'started'));
  m.apply(jobEvt('j1', 'done', 130));
  m.apply(jobEvt('j1', 'rendering', 125, 'progress')); // late, older than what the model holds
  const f = m.figures();
  assert.equal(f.jobsByState.done, 1);
  assert.equal(f.jobsByState.queued, 1);
  assert.equal(f.jobsByState.rendering, 0);
  assert.equal(f.jobsByState.failed, 0);
});

test('monitor model - frame done, failed and retrying are counted; started feeds the latency histogram', () => {
  const m = new FarmModel();
  for (let i = 0; i < 3; i++) m.apply(frameEvt('done', { frame: i }));
  m.apply(frameEvt('failed', { error: 'boom' }));
  m.apply(frameEvt('retrying'));
  assert.deepEqual(m.apply(frameEvt('started', { waitMs: 0 })), { used: true, latencyS: 0 });
  assert.deepEqual(m.apply(frameEvt('started', { waitMs: 40 })), { used: true, latencyS: 0.04 });
  m.apply(frameEvt('started', { waitMs: 2_000 }));
  m.apply(frameEvt('started')); // no waitMs: nothing to measure
  const f = m.figures();
  assert.equal(f.framesDone, 3);
  assert.equal(f.framesFailed, 1);
  assert.equal(f.framesRetried, 1);
  assert.equal(f.latency.count, 3);
  assert.ok(Math.abs(f.latency.sum - 2.04) < 1e-9);
  const le = (b: number) => f.latency.counts[f.latency.bounds.indexOf(b)];
  assert.equal(le(0.001), 1);
  assert.equal(le(0.05), 2);
  assert.equal(le(1), 2);
  assert.equal(le(2.5), 3);
});

test('monitor model - one event about a task\'s frames counts each frame, with its own output; the task\'s wait is observed once', () => {
  const m = new FarmModel();
  assert.deepEqual(m.apply(frameEvt('started', { frame: 5, frames: [5, 6, 7], waitMs: 40 })), { used: true, latencyS: 0.04 });
  m.apply(frameEvt('done', { frame: 5, frames: [5, 6, 7], outputs: [{ frame: 5, path: '/o/f5.exr' }, { frame: 7, path: '/o/f7.exr' }] }));
  const f = m.figures();
  assert.equal(f.framesDone, 3);
  assert.equal(f.latency.count, 1, 'one task, one wait');
  const done = m.changesSince(0).frames.filter((c) => c.event === 'done');
  assert.deepEqual(done.map((c) => [c.frame, c.output]), [[5, '/o/f5.exr'], [6, undefined], [7, '/o/f7.exr']]);
});

test('monitor model - hosts: snapshot gives slots and load, slot and up/down events move them', () => {
  const m = new FarmModel();
  m.applyHosts([aHostRecord('node-a', ['idle', 'busy'], 1.5), aHostRecord('node-b', ['idle'], 0.25)], 1_000);
  let f = m.figures();
  assert.equal(f.hostsUp, 2);
  assert.deepEqual(f.slots, { busy: 1, free: 2, draining: 0 });
  assert.deepEqual(f.hostLoad, [{ host: 'node-a', load: 1.5 }, { host: 'node-b', load: 0.25 }]);

  m.apply(hostEvt('node-a', 'slot', 1_100, { slot: { index: 0, state: 'busy' } }));
  m.apply(hostEvt('node-b', 'down', 1_200, { reason: 'missed heartbeats' }));
  f = m.figures();
  assert.equal(f.hostsUp, 1);
  assert.deepEqual(f.slots, { busy: 2, free: 0, draining: 0 });
  assert.deepEqual(f.hostLoad, [{ host: 'node-a', load: 1.5 }]);

  // an older snapshot answered late does not undo the newer slot event; hosts it lacks go down
  m.applyHosts([aHostRecord('node-a', ['idle', 'idle'], 2)], 1_050);
  f = m.figures();
  assert.deepEqual(f.slots, { busy: 2, free: 0, draining: 0 });
  assert.deepEqual(f.hostLoad, [{ host: 'node-a', load: 2 }]);
  m.applyHosts([], 2_000);
  assert.equal(m.figures().hostsUp, 0);
  assert.deepEqual(m.figures().slots, { busy: 0, free: 0, draining: 0 });

  m.apply(hostEvt('node-c', 'up', 2_100));
  m.apply(hostEvt('node-c', 'sick', 2_200, { reason: 'failed frames' }));
  assert.equal(m.figures().hostsUp, 1);
  assert.equal(m.hosts.get('node-c')?.sick, true);
});

test('monitor model - the jobs snapshot replaces what it covers, not news that came after it was asked for', () => {
  const m = new FarmModel();
  m.apply(jobEvt('j1', 'rendering', 500));
  m.apply(jobEvt('gone', 'queued', 600));
  m.apply(jobEvt('j2', 'done', 1_500)); // heard after the snapshot below was asked for
  m.applyJobs([aSummary('j1', 'done'), aSummary('j3', 'failed')], 1_000);
  const f = m.figures();
  assert.equal(f.jobsByState.done, 2); // j1 from the snapshot, j2 from its event
  assert.equal(f.jobsByState.failed, 1);
  assert.equal(f.jobsByState.queued, 0); // 'gone' is no longer the scheduler's
  assert.equal(m.jobsSnapshotAt, 1_000);
});

test('monitor model - bad and unknown events are ignored and counted', () => {
  const m = new FarmModel();
  const before = JSON.stringify(m.figures());
  assert.equal(m.apply(frameEvt('exploded')).used, false);
  assert.equal(m.apply(frameEvt('started', { waitMs: -5 })).used, false);
  assert.equal(m.apply(frameEvt('started', { waitMs: Number.NaN })).used, false);
  assert.equal(m.apply(hostEvt('node-a', 'teleported', 10)).used, false);
  assert.equal(m.apply(hostEvt('node-a', 'slot', 10)).used, false); // a slot event without its slot
  assert.equal(m.apply(hostEvt('node-a', 'slot', 10, { slot: { index: 0, state: 'melting' as 'idle' } })).used, false);
  const mismatched = jobEvt('j1', 'done', 10);
  if (mismatched.kind === 'job') mismatched.evt.jobId = 'other';
  assert.equal(m.apply(mismatched).used, false);
  assert.equal(m.apply({ kind: 'job', evt: { v: 1, jobId: 'j1', event: 'done', at: 10, job: aSummary('j1', 'vanished' as JobState) } }).used, false);
  assert.equal(m.apply({ kind: 'notify', evt: {} } as unknown as MonitorEvent).used, false);
  assert.equal(m.ignored, 9);
  assert.equal(JSON.stringify(m.figures()), before);
  assert.equal(m.hosts.size, 0);
});
