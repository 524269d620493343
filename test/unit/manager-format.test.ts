import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { HostRecord, JobSummary } from '../../protocol/index.ts';
import { paint } from '../../tools/cli/format.ts';
import {
  describeHost, describeHosts, describeQueue, framesText, hostViews, queueEntries, waitText, type HostTurn, type UpHost,
} from '../../tools/cli/manager-format.ts';

const plain = paint({ isTTY: false });
const NOW = 1_800_000_000_000;

function aHost(over: Partial<HostRecord> = {}): HostRecord {
  return {
    host: 'node-a',
    serverId: 's1',
    inventory: {
      machine: { family: 'x86_64', type: 'pc' },
      os: { family: 'unix', type: 'linux', version: '6.1.0', distro: 'debian 12' },
      cpu: { count: 8, family: 'intel', type: 'xeon', speedMhz: 2400 },
      ramMb: 16_000,
      swapMb: 2_048,
      packages: [{ name: 'povray', version: '3.7.0.10', path: '/usr/bin/povray' }, { name: 'blender', version: '4.1' }],
      licenses: ['arnold'],
    },
    slots: [
      { index: 0, state: 'busy', taskId: 'j1-t0', jobId: 'j1', frames: [1, 2, 3, 7], since: NOW - 5_000 },
      { index: 1, state: 'idle', since: NOW - 60_000 },
    ],
    registeredAt: NOW - 3_600_000,
    lastSeenAt: NOW - 1_000,
    load: 1.5,
    draining: false,
    ...over,
  };
}

function aJob(over: Partial<JobSummary> = {}): JobSummary {
  return {
    jobId: 'j1', name: 'shot010', user: 'ann', group: 'fx', project: 'feature', priority: 50, state: 'queued',
    counts: { total: 10, queued: 10, running: 0, done: 0, failed: 0 }, submittedAt: NOW - 1_000, outputDir: '/out', ...over,
  };
}

test('manager-format - hosts in the registry are up with busy and free slots; a draining host has no free slot', () => {
  const [a, b] = hostViews([aHost(), aHost({ host: 'node-b', draining: true, slots: [{ index: 0, state: 'draining' }] })], [], []);
  assert.equal(a!.state, 'up');
  assert.deepEqual([a!.state === 'up' && a!.slotsBusy, a!.state === 'up' && a!.slotsFree, a!.sick], [1, 1, false]);
  assert.deepEqual([b!.state === 'up' && b!.draining, b!.state === 'up' && b!.slotsFree], [true, 0]);
  assert.match(describeHosts([a!, b!], plain, NOW), /^node-b +up, draining +0 busy \/ 0 free +1\.50 /m);
});

test('manager-format - a host whose last event is down, and is not in the registry, is down with the reason', () => {
  const turns: HostTurn[] = [
    { host: 'node-a', event: 'down', at: NOW - 10_000, reason: 'missed 3 heartbeats' },
    { host: 'node-c', event: 'up', at: NOW - 90_000 },
    { host: 'node-c', event: 'down', at: NOW - 60_000, reason: 'stopped' },
    { host: 'node-d', event: 'up', at: NOW - 30_000 },
  ];
  const views = hostViews([aHost()], turns, []);
  assert.deepEqual(views.map((v) => [v.host, v.state, v.state === 'down' ? v.reason : '']), [
    ['node-a', 'up', ''], // back in the registry: up, whatever its last event said
    ['node-c', 'down', 'stopped'],
    ['node-d', 'down', 'no longer in the registry'],
  ]);
  assert.match(describeHosts(views, plain, NOW), /^node-c +down +- +- .*1m00s ago: stopped$/m);
});

test('manager-format - sick hosts are named with until when; with no scheduler, sickness is unknown', () => {
  const sick = hostViews([aHost()], [], [{ host: 'node-a', until: NOW + 60_000, jobs: ['j1', 'j2'] }]);
  assert.deepEqual([sick[0]!.sick, sick[0]!.sickJobs], [true, ['j1', 'j2']]);
  const text = describeHosts(sick, plain, NOW);
  assert.match(text, /^node-a +up, sick /m);
  assert.match(text, /node-a is sick until .* \(failed frames of j1, j2\): renderbus sick node-a --clear/);

  const unknown = hostViews([aHost()], [], null);
  assert.equal(unknown[0]!.sick, null);
  assert.match(describeHosts(unknown, plain, NOW, 'scheduler unavailable'), /^sickness and hosts that left unknown: scheduler unavailable$/m);
});

test('manager-format - one host: inventory, packages with versions, licenses, and each slot with its task and since when', () => {
  const h = hostViews([aHost()], [], null)[0] as UpHost;
  const text = describeHost(h, plain, NOW, 'scheduler unavailable');
  for (const re of [
    /^state +up; sickness unknown: scheduler unavailable$/m,
    /^slots +2: 1 busy, 1 free$/m,
    /^machine +x86_64\/pc$/m,
    /^os +unix\/linux 6\.1\.0 \(debian 12\)$/m,
    /^cpu +8× intel\/xeon, 2400 MHz$/m,
    /^ram +16 GB$/m,
    /^swap +2\.0 GB$/m,
    /^licenses +arnold$/m,
    /^povray +3\.7\.0\.10 +- +\/usr\/bin\/povray$/m,
    /^blender +4\.1 +- +-$/m,
    /^0 +busy +j1-t0 +j1 +1-3,7 +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(5\.0s ago\)$/m,
    /^1 +idle +- +- +- /m,
  ]) assert.match(text, re);
});

test('manager-format - frames as ranges', () => {
  assert.equal(framesText([7, 1, 3, 2]), '1-3,7');
  assert.equal(framesText([5]), '5');
  assert.equal(framesText([1, 3, 5]), '1,3,5');
});

test('manager-format - the queue: ended jobs left out, positions in the scheduler\'s order, why each waits', () => {
  const jobs = [
    aJob({ jobId: 'j2', priority: 10, state: 'held', project: 'ads', why: { kind: 'held', text: 'held: renderbus release j2 starts it' }, waiting: 'old text' }),
    aJob({ jobId: 'j1', state: 'rendering', counts: { total: 10, queued: 5, running: 2, done: 2, failed: 1 } }),
    aJob({ jobId: 'j0', state: 'done' }),
  ];
  const entries = queueEntries(jobs);
  assert.deepEqual(entries.map((e) => [e.position, e.jobId]), [[1, 'j2'], [2, 'j1']]);
  assert.equal(waitText(jobs[0]!), 'held: renderbus release j2 starts it', 'why.text before waiting');
  assert.equal(waitText(aJob({ waiting: 'only the old field' })), 'only the old field');
  const text = describeQueue(entries, { enabled: false, projects: [] }, plain, 'studio');
  assert.match(text, /^# +JOB +NAME +PROJECT +PRI +STATE +QUEUED +RUNNING +DONE +WAITING$/m);
  assert.match(text, /^1 +j2 +shot010 +ads +10 +held +10 +0 +0\/10 +held: renderbus release j2 starts it$/m);
  assert.match(text, /^2 +j1 +shot010 +feature +50 +rendering +5 +2 +2\/10 \(1 failed\)$/m);
  assert.doesNotMatch(text, /fair share/);
});

test('manager-format - with fair share on, the projects\' shares come above the queue', () => {
  const shares = {
    enabled: true,
    projects: [
      { project: 'feature', weight: 3, set: true, share: 0.75, running: 3, queued: 12 },
      { project: 'ads', weight: 1, set: false, share: 0.25, running: 1, queued: 0 },
    ],
  };
  const text = describeQueue(queueEntries([aJob()]), shares, plain, 'studio');
  const lines = text.split('\n');
  assert.equal(lines[0], 'fair share is on: busy projects split the slots by weight');
  assert.match(lines[2]!, /^feature +3 +75% +3 +12$/);
  assert.match(lines[3]!, /^ads +1 \(default\) +25% +1 +0$/);
  assert.ok(text.indexOf('feature  ') < text.indexOf('# '), 'shares first');
  assert.match(describeQueue([], shares, plain, 'studio'), /the queue of site studio is empty/);
});
