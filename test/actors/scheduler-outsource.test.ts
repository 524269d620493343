import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createActor } from 'xstate';
import { FarmError, prepareJob, PROTOCOL_MAJOR, type JobSpec, type JournalRecord, type RemoteUpdate } from '../../protocol/index.ts';
import { JobBook, jobMachine, type Job } from '../../actors/scheduler/index.ts';
import { applyRemote, checkOutsource, outsource, shouldOutsource } from '../../actors/scheduler/outsource.ts';
import { applyRecord } from '../../actors/scheduler/replay.ts';
import { aJobSpec } from '../helpers/builders.ts';

const T0 = 1_700_000_000_000;

function bookWith(spec: Partial<JobSpec> = {}, id = 'j1'): { book: JobBook; job: Job } {
  const book = new JobBook();
  const s = aJobSpec({ site: 'v1', ...spec });
  const job = book.add(id, s, prepareJob(s), T0);
  if (shouldOutsource(book, job)) outsource(book, job);
  return { book, job };
}

const update = (over: Partial<RemoteUpdate> & Pick<RemoteUpdate, 'bundleId'>): RemoteUpdate => ({ v: PROTOCOL_MAJOR, jobId: 'j1', at: T0 + 1_000, ...over });
const frame = (n: number) => ({ frame: n, path: `/out/shot/frame_${String(n).padStart(4, '0')}.png` });

test('scheduler-outsource - a site that is not a linked peer is refused at submit, naming the peers', () => {
  const refused = (spec: JobSpec, peers: string[]) => {
    try {
      checkOutsource(spec, 'studio', peers);
    } catch (err) {
      assert.ok(err instanceof FarmError);
      assert.equal(err.code, 'RB_BAD_JOB');
      return err.message;
    }
    return assert.fail('not refused');
  };
  assert.match(refused(aJobSpec({ site: 'nowhere' }), ['v1', 'v2']), /site: 'nowhere' is not a linked peer of studio: the linked peers are v1, v2/);
  assert.match(refused(aJobSpec({ site: 'v1' }), []), /this site has no linked peers/);
  assert.match(refused(aJobSpec({ site: 'studio' }), ['v1']), /is this site itself/);
  assert.match(refused(aJobSpec({ site: 'v1', after: ['j0'] }), ['v1']), /^after: a job sent to v1 cannot wait for jobs of this farm/);
  checkOutsource(aJobSpec({ site: 'v1' }), 'studio', ['v1']);
  checkOutsource(aJobSpec(), 'studio', []); // no site: nothing to check
});

test('scheduler-outsource - a job naming a site leaves the local queue for the outsourced queue', () => {
  const { book, job } = bookWith();
  assert.equal(book.state(job), 'outsourced');
  assert.deepEqual([...book.queue()], [], 'never dispatched here');
  assert.equal(job.remote?.bundleId, 'job-j1');
  const s = book.summary(job);
  assert.equal(s.outsourced?.site, 'v1');
  assert.equal(s.outsourced?.state, 'sent');
  assert.equal(s.waiting, 'outsourced to v1: 0/4 frames back (its bundle waits in outgoing/v1/ or crosses the link; nothing heard yet)');
  assert.equal(s.why?.kind, 'outsourced');
  // a local job beside it is queued as ever
  const local = book.add('j2', aJobSpec(), prepareJob(aJobSpec()), T0);
  assert.deepEqual(book.queue().map((j) => j.id), [local.id]);
});

test('scheduler-outsource - the vendor\'s news moves the counts; each bundle once; every frame back ends it done', () => {
  const { book, job } = bookWith({ frames: '1-4' });
  const after = book.add('j2', aJobSpec({ after: ['j1'] }), prepareJob(aJobSpec({ after: ['j1'] })), T0);
  assert.deepEqual(book.queue().map((j) => j.id), [], 'j2 waits for the outsourced job');

  assert.deepEqual(applyRemote(book, job, update({ bundleId: 's1', state: 'accepted', remoteJob: 'jv1' }), T0 + 1), { applied: true, newFrames: [] });
  applyRemote(book, job, update({ bundleId: 's2', state: 'started', counts: { total: 4, done: 0, failed: 0, running: 2 } }), T0 + 2);
  assert.deepEqual(book.summary(job).counts, { total: 4, queued: 2, running: 2, done: 0, failed: 0 });

  const partial = applyRemote(book, job, update({ bundleId: 'p1', outputs: [frame(1), frame(2)] }), T0 + 3);
  assert.deepEqual(partial.newFrames.map((f) => f.frame), [1, 2]);
  assert.equal(partial.ended, undefined);
  assert.equal(book.state(job), 'outsourced');
  assert.equal(book.summary(job).waiting, 'outsourced to v1: 2/4 frames back, 2 rendering (rendering there)');
  const frames = book.detail(job).frames;
  assert.deepEqual(frames.map((f) => [f.frame, f.state, f.output]), [[1, 'done', frame(1).path], [2, 'done', frame(2).path], [3, 'queued', undefined], [4, 'queued', undefined]]);

  // the same bundle again (a replay) changes nothing
  assert.deepEqual(applyRemote(book, job, update({ bundleId: 'p1', outputs: [frame(1), frame(2)] }), T0 + 4), { applied: false, newFrames: [] });
  // a frame the job does not have is not counted
  applyRemote(book, job, update({ bundleId: 'p2', outputs: [{ frame: 99, path: '/out/shot/frame_0099.png' }] }), T0 + 5);
  assert.equal(job.counts.done, 2);

  const last = applyRemote(book, job, update({ bundleId: 'r1', outputs: [frame(1), frame(2), frame(3), frame(4)], final: true }), T0 + 6);
  assert.deepEqual(last.newFrames.map((f) => f.frame), [3, 4]);
  assert.equal(last.ended, 'done');
  assert.equal(book.state(job), 'done');
  assert.equal(job.finishedAt, T0 + 6);
  assert.deepEqual(book.summary(job).counts, { total: 4, queued: 0, running: 0, done: 4, failed: 0 });
  assert.deepEqual(book.queue().map((j) => j.id), [after.id], 'the job after it may start now');
});

test('scheduler-outsource - refused, failed there, or a final result short of frames: the job fails with the reason', () => {
  const cases: [RemoteUpdate, RegExp][] = [
    [update({ bundleId: 's1', state: 'rejected', reason: 'no povray here' }), /^RB_REMOTE_FAILED: outsourced to v1, refused there: no povray here$/],
    [update({ bundleId: 's1', state: 'failed', reason: 'scene error' }), /^RB_REMOTE_FAILED: outsourced to v1, failed: scene error$/],
    [update({ bundleId: 's1', state: 'cancelled' }), /cancelled there \(not by us\)/],
    [update({ bundleId: 'r1', final: true, outputs: [frame(1)] }), /its final result brought 1 of 4 frames back/],
  ];
  for (const [u, error] of cases) {
    const { book, job } = bookWith();
    assert.equal(applyRemote(book, job, u, T0 + 10).ended, 'failed');
    assert.equal(book.state(job), 'failed');
    const s = book.summary(job);
    assert.match(s.error ?? '', error);
    assert.equal(s.retryable, undefined, 'an outsourced job is sent again, not retried');
    assert.equal(s.counts.failed + s.counts.done, 4);
    assert.deepEqual(book.failures(job).map((f) => f.frame), [1, 2, 3, 4].filter((n) => !u.outputs?.some((o) => o.frame === n)));
  }
  // a done status alone ends nothing: the frames are still on their way
  const { book, job } = bookWith();
  applyRemote(book, job, update({ bundleId: 's9', state: 'done' }), T0);
  assert.equal(book.state(job), 'outsourced');
  assert.match(book.summary(job).waiting ?? '', /done there; frames on their way back/);
  // and a terminal state sticks: a late "started" does not move it back
  applyRemote(book, job, update({ bundleId: 's10', state: 'started' }), T0);
  assert.equal(job.remote?.state, 'done');
});

test('scheduler-outsource - a cancelled job records no more frames', () => {
  const { book, job } = bookWith();
  book.cancel(job, T0 + 5);
  assert.equal(book.state(job), 'cancelled');
  const late = applyRemote(book, job, update({ bundleId: 'p1', outputs: [frame(1)] }), T0 + 6);
  assert.deepEqual(late, { applied: true, newFrames: [] });
  assert.equal(book.state(job), 'cancelled');
  assert.equal(book.summary(job).outsourced?.back, 0);
});

test('scheduler-outsource - replay: the submit record outsources it, remote records bring it back where it was', () => {
  const spec = aJobSpec({ site: 'v1' });
  const rec = (r: Omit<Extract<JournalRecord, { kind: 'remote' }>, 'v' | 'kind' | 'jobId'>): JournalRecord => ({ v: PROTOCOL_MAJOR, kind: 'remote', jobId: 'j1', ...r });
  const records: JournalRecord[] = [
    { v: PROTOCOL_MAJOR, kind: 'submit', jobId: 'j1', spec, at: T0 },
    rec({ peer: 'v1', update: update({ bundleId: 's1', state: 'started' }), at: T0 + 1 }),
    rec({ peer: 'v1', update: update({ bundleId: 'p1', outputs: [frame(1), frame(2)] }), at: T0 + 2 }),
    rec({ peer: 'v2', update: update({ bundleId: 'p2', outputs: [frame(3)] }), at: T0 + 3 }), // not its peer: ignored
  ];
  const book = new JobBook();
  records.forEach((r, i) => applyRecord(book, r, i + 1));
  book.finishReplay();
  const job = book.jobs.get('j1')!;
  assert.equal(book.state(job), 'outsourced');
  assert.equal(job.remote?.state, 'started');
  assert.deepEqual([...job.remote!.back.keys()], [1, 2]);
  assert.deepEqual([...book.queue()], []);
  // the final result, after the restart, completes it
  assert.equal(applyRemote(book, job, update({ bundleId: 'r1', outputs: [1, 2, 3, 4].map(frame), final: true }), T0 + 9).ended, 'done');
});

test('scheduler-outsource - a held job goes out when released, not before', () => {
  const book = new JobBook();
  const spec = aJobSpec({ site: 'v1', hold: true });
  applyRecord(book, { v: PROTOCOL_MAJOR, kind: 'submit', jobId: 'j1', spec, at: T0 }, 1);
  const job = book.jobs.get('j1')!;
  assert.equal(book.state(job), 'held');
  assert.equal(job.remote, undefined);
  applyRecord(book, { v: PROTOCOL_MAJOR, kind: 'ctl', jobId: 'j1', action: 'release', at: T0 + 1 }, 2);
  assert.equal(book.state(job), 'outsourced');
  assert.deepEqual([...book.queue()], [], 'released, it still never runs here');
});

test('job-machine - queued → outsourced → done | failed, or cancelled; a local start does not move it', () => {
  const run = (events: Parameters<ReturnType<typeof createActor<typeof jobMachine>>['send']>[0][]) => {
    const a = createActor(jobMachine).start();
    for (const e of events) a.send(e);
    return a.getSnapshot().value;
  };
  assert.equal(run([{ type: 'job.outsource' }]), 'outsourced');
  assert.equal(run([{ type: 'job.outsource' }, { type: 'job.started' }]), 'outsourced');
  assert.equal(run([{ type: 'job.outsource' }, { type: 'job.ended', failed: false }]), 'done');
  assert.equal(run([{ type: 'job.outsource' }, { type: 'job.ended', failed: true }]), 'failed');
  assert.equal(run([{ type: 'job.outsource' }, { type: 'job.cancel' }]), 'cancelled');
  assert.equal(run([{ type: 'job.started' }, { type: 'job.outsource' }]), 'rendering', 'a job rendering here is not sent away');
});
