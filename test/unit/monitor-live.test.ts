import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FarmModel, MAX_FRAME_CHANGES, type MonitorEvent } from '../../actors/monitor/index.ts';
import type { FrameEvent, HostRecord, JobState, JobSummary, LiveStats, SlotInfo } from '../../protocol/index.ts';
import { anInventory } from '../helpers/builders.ts';

// The live side of the monitor's model: what runs on each slot, the timeline of task attempts,
// and changesSince(), the web monitor's stream.

const aSummary = (jobId: string, state: JobState): JobSummary => ({
  jobId, name: jobId, user: 'ann', group: 'fx', project: 'fx', priority: 50, state,
  counts: { total: 4, queued: 4, running: 0, done: 0, failed: 0 }, submittedAt: 1_000, outputDir: '/tmp/out',
});
const jobEvt = (jobId: string, state: JobState, at: number): MonitorEvent => ({ kind: 'job', evt: { v: 1, jobId, event: state, at, job: aSummary(jobId, state) } });
const frame = (event: string, frameNo: number, at: number, over: Partial<FrameEvent> = {}): MonitorEvent => ({ kind: 'frame', evt: { v: 1, jobId: 'j1', frame: frameNo, event, at, host: 'node-a', slot: 0, attempt: 1, ...over } });
const live = (cpuPercent: number, rssKb: number): LiveStats => ({ wallMs: 2_000, cpuMs: 1_900, cpuPercent, rssKb, peakRssKb: rssKb });
const record = (host: string, slots: SlotInfo[]): HostRecord => ({ host, serverId: `${host}-1`, inventory: anInventory(), slots, registeredAt: 0, lastSeenAt: 0 });

test('monitor live - the frames of one chunk make one span, ended by the last frame with the worst outcome', () => {
  const m = new FarmModel();
  m.applyHosts([record('node-a', [{ index: 0, state: 'idle' }])], 500);
  m.apply(frame('started', 1, 1_000));
  m.apply(frame('started', 2, 1_000));
  m.apply(frame('stats', 1, 3_000, { live: live(180, 2_048) }));
  let host = m.changesSince().hosts[0]!;
  assert.deepEqual(host.slots[0]!.run?.frames, [1, 2]);
  assert.equal(host.cpuPercent, 180);
  assert.equal(host.rssKb, 2_048);
  assert.equal(host.cpus, 2);
  m.apply(frame('done', 1, 4_000, { output: '/tmp/out/f1.png' }));
  assert.equal(m.changesSince().spans[0]!.end, undefined, 'one frame of the chunk still runs');
  m.apply(frame('retrying', 2, 4_000, { error: 'RB_RENDER_FAILED: exit 1' }));
  const { spans, hosts } = m.changesSince();
  assert.equal(spans.length, 1);
  assert.deepEqual({ frames: spans[0]!.frames, start: spans[0]!.start, end: spans[0]!.end, outcome: spans[0]!.outcome }, { frames: [1, 2], start: 1_000, end: 4_000, outcome: 'retrying' });
  host = hosts[0]!;
  assert.equal(host.slots[0]!.run, undefined);
  assert.equal(host.cpuPercent, 0, 'no figures once nothing runs');
});

test('monitor live - a cancelled job, a host going down and a new task on the slot each end what ran', () => {
  const m = new FarmModel();
  m.apply(frame('started', 1, 1_000));
  m.apply(frame('started', 5, 1_000, { jobId: 'j2', slot: 1 }));
  m.apply(frame('started', 9, 1_000, { jobId: 'j3', host: 'node-b' }));
  m.apply(jobEvt('j1', 'cancelled', 2_000));
  m.apply({ kind: 'host', evt: { v: 1, host: 'node-b', event: 'down', at: 2_500 } });
  m.apply(frame('started', 6, 9_000, { jobId: 'j2', slot: 1, attempt: 2 })); // the slot's old run was never heard to end
  const outcome = Object.fromEntries(m.changesSince().spans.map((s) => [`${s.jobId}@${s.start}`, s.outcome ?? 'running']));
  assert.deepEqual(outcome, { 'j1@1000': 'cancelled', 'j2@1000': 'ended', 'j3@1000': 'lost', 'j2@9000': 'running' });
});

test('monitor live - a slot that starts its next task before the last one\'s end is heard keeps that span\'s outcome', () => {
  const m = new FarmModel();
  m.apply(frame('started', 1, 1_000));
  m.apply(frame('started', 2, 2_000)); // the task in hand started at once
  m.apply(frame('done', 1, 2_100)); // the scheduler's done for the first task comes after
  const [first, second] = m.changesSince().spans;
  assert.deepEqual([first!.frames, first!.end, first!.outcome], [[1], 2_000, 'done']);
  assert.deepEqual([second!.frames, second!.end, second!.outcome], [[2], undefined, undefined]);
  m.apply(frame('failed', 2, 3_000, { error: 'boom' }));
  assert.equal(m.changesSince().spans[1]!.outcome, 'failed');
});

test('monitor live - a registry snapshot opens runs the monitor missed and ends runs whose slot is long idle', () => {
  const m = new FarmModel();
  m.applyHosts([record('node-a', [{ index: 0, state: 'busy', jobId: 'j1', frames: [3, 4], since: 800, taskId: 'j1.1' }, { index: 1, state: 'idle' }])], 1_000);
  const run = m.changesSince().hosts[0]!.slots[0]!.run;
  assert.deepEqual(run && { jobId: run.jobId, frames: run.frames, startedAt: run.startedAt }, { jobId: 'j1', frames: [3, 4], startedAt: 800 });
  m.apply(frame('started', 7, 11_000, { slot: 1 }));
  // slot 1 just started: a snapshot saying idle may predate its events, so its run stays
  m.applyHosts([record('node-a', [{ index: 0, state: 'idle' }, { index: 1, state: 'idle' }])], 12_000);
  let slots = m.changesSince().hosts[0]!.slots;
  assert.equal(slots[0]!.run, undefined, 'began 11 s before a snapshot that shows it idle: ended');
  assert.ok(slots[1]!.run);
  m.applyHosts([record('node-a', [{ index: 0, state: 'idle' }, { index: 1, state: 'idle' }])], 30_000);
  slots = m.changesSince().hosts[0]!.slots;
  assert.equal(slots[1]!.run, undefined);
});

test('monitor live - changesSince gives what changed after a version, and everything to a client too far behind', () => {
  const m = new FarmModel();
  m.applyJobs([aSummary('j1', 'rendering'), aSummary('j2', 'queued')], 100);
  m.applyHosts([record('node-a', [{ index: 0, state: 'idle' }]), record('node-b', [{ index: 0, state: 'idle' }])], 100);
  const base = m.changesSince();
  assert.equal(base.full, true);
  assert.deepEqual(base.jobs.map((j) => j.jobId).sort(), ['j1', 'j2']);
  assert.equal(base.hosts.length, 2);

  m.apply(frame('started', 1, 1_000));
  m.applyJobs([aSummary('j1', 'rendering')], 1_100); // same summary for j1, j2 is gone
  const d = m.changesSince(base.version);
  assert.equal(d.full, false);
  assert.deepEqual(d.jobs, [], 'an unchanged summary is no news');
  assert.deepEqual(d.removedJobs, ['j2']);
  assert.deepEqual(d.hosts.map((h) => h.host), ['node-a']);
  assert.deepEqual(d.frames.map((f) => [f.jobId, f.frame, f.state, f.host, f.slot]), [['j1', 1, 'running', 'node-a', 0]]);
  assert.deepEqual(m.changesSince(d.version), { version: d.version, full: false, jobs: [], removedJobs: [], hosts: [], spans: [], frames: [] });

  for (let i = 0; i <= MAX_FRAME_CHANGES; i++) m.apply(frame('progress', 1, 2_000 + i, { percent: 50 }));
  assert.equal(m.changesSince(d.version).full, true, 'the changes it missed were forgotten');
  assert.equal(m.changesSince(m.version + 5).full, true, 'a version from another monitor process');
});

test('monitor live - the sick list sets and clears hosts sick, and counts them', () => {
  const m = new FarmModel();
  m.applyHosts([record('node-a', []), record('node-b', [])], 100);
  m.applySick([{ host: 'node-a', until: 9_000, jobs: ['j1', 'j2'] }], 200);
  assert.equal(m.figures().hostsSick, 1);
  assert.equal(m.changesSince().hosts.find((h) => h.host === 'node-a')?.sickUntil, 9_000);
  m.applySick([], 300);
  assert.equal(m.figures().hostsSick, 0);
  assert.equal(m.hosts.get('node-a')?.sick, false);
});

test('monitor live - a host drained and undrained: its idle slots are draining, then free again', () => {
  const m = new FarmModel();
  m.applyHosts([record('node-a', [{ index: 0, state: 'idle' }, { index: 1, state: 'busy', jobId: 'j1', frames: [1] }])], 100);
  m.apply({ kind: 'host', evt: { v: 1, host: 'node-a', event: 'draining', at: 200 } });
  assert.deepEqual(m.figures().slots, { busy: 1, free: 0, draining: 1 });
  m.apply({ kind: 'host', evt: { v: 1, host: 'node-a', event: 'undrained', at: 300 } });
  assert.deepEqual(m.figures().slots, { busy: 1, free: 1, draining: 0 });
});
