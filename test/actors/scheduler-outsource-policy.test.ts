import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FarmError, prepareJob, PROTOCOL_MAJOR, type JobSpec, type JournalRecord, type MatchBody } from '../../protocol/index.ts';
import { JobBook, type Job } from '../../actors/scheduler/index.ts';
import { outsource } from '../../actors/scheduler/outsource.ts';
import { checkPolicy, noLocalHost, UNRENDERABLE_SETTLE_MS, unrenderableVerdict, withPolicyNote } from '../../actors/scheduler/outsource-policy.ts';
import { applyRecord } from '../../actors/scheduler/replay.ts';
import { schedulerSettings } from '../../tools/cli/scheduler-flags.ts';
import { aJobSpec } from '../helpers/builders.ts';

const T0 = 1_700_000_000_000;

/** The registry's answer on a farm whose only host has POV-Ray, for a job that needs Blender. */
const NONE: MatchBody = { hosts: [], closest: [{ host: 'node-a', missing: ['needs blender@*, has no blender'] }], totalHosts: 1 };
/** …and for a job it can render (its one slot busy: freeOnly leaves it out, and names no closest host). */
const BUSY: MatchBody = { hosts: [], closest: [], totalHosts: 1 };
const EMPTY: MatchBody = { hosts: [], closest: [], totalHosts: 0 };
/** The registry has said so for long enough. */
const S = UNRENDERABLE_SETTLE_MS;

function bookWith(spec: Partial<JobSpec> = {}, id = 'j1'): { book: JobBook; job: Job } {
  const book = new JobBook();
  const s = aJobSpec({ requirements: { packages: ['blender@*'] }, ...spec });
  return { book, job: book.add(id, s, prepareJob(s), T0) };
}

test('outsource-policy - only a registry that knows hosts and matches none says no local host can render', () => {
  assert.equal(noLocalHost(NONE), true);
  assert.equal(noLocalHost(BUSY), false, 'a matching host that is busy: the job waits for it');
  assert.equal(noLocalHost(EMPTY), false, 'no host registered yet (a farm starting up)');
  assert.equal(noLocalHost(undefined), false, 'the registry did not answer');
});

test('outsource-policy - a job no local host can render goes to the first linked peer of the policy', () => {
  const { job } = bookWith();
  assert.equal(unrenderableVerdict(job, NONE, S, [], ['v1']), undefined, 'no policy: nothing changes');
  assert.equal(unrenderableVerdict(job, BUSY, S, ['v1'], ['v1']), undefined, 'a local host can render it');
  assert.deepEqual(unrenderableVerdict(job, NONE, S, ['v1', 'v2'], ['v1', 'v2']), { send: 'v1', why: 'no host here can render it (node-a needs blender@*, has no blender)' });
  assert.equal((unrenderableVerdict(job, NONE, S, ['v1', 'v2'], ['v2']) as { send: string }).send, 'v2', 'v1 is not linked: the next one');
  const none = unrenderableVerdict(job, NONE, S, ['v1', 'v3'], ['v2']);
  assert.deepEqual(none, { keep: 'v1, v3 are not linked peers (linked: v2)' });
  assert.deepEqual(unrenderableVerdict(job, NONE, S, ['v1'], []), { keep: 'v1 is not a linked peer (no peers are linked)' });
  // not before the registry said so for a while: one that restarted hears its hosts again over a few seconds
  assert.deepEqual(unrenderableVerdict(job, NONE, 0, ['v1'], ['v1']), { keep: 'it goes to v1 in 5 s unless a host that can render it registers' });
  assert.deepEqual(unrenderableVerdict(job, NONE, S - 1, ['v1'], ['v1']), { keep: 'it goes to v1 in 1 s unless a host that can render it registers' });
});

test('outsource-policy - a job that names a site, came from a peer, started here or waits for local jobs is not sent by it', () => {
  assert.equal(unrenderableVerdict(bookWith({ site: 'v2' }).job, NONE, S, ['v1'], ['v1', 'v2']), undefined, 'its own site decides');
  const fromPeer = bookWith().job;
  fromPeer.origin = { site: 'v2', job: 'x1' };
  assert.match((unrenderableVerdict(fromPeer, NONE, S, ['v1'], ['v1']) as { keep: string }).keep, /came from v2/);
  const started = bookWith().job;
  started.startedAt = T0 + 1;
  assert.match((unrenderableVerdict(started, NONE, S, ['v1'], ['v1']) as { keep: string }).keep, /started here/);
  const after = bookWith({ after: ['j0'] }).job;
  assert.match((unrenderableVerdict(after, NONE, S, ['v1'], ['v1']) as { keep: string }).keep, /waits for jobs of this site/);
  const sent = bookWith();
  outsource(sent.book, sent.job, { peer: 'v1', why: 'w' });
  assert.equal(unrenderableVerdict(sent.job, NONE, S, ['v1'], ['v1']), undefined, 'once sent, it stays sent');
  const note = withPolicyNote({ kind: 'no-match', closest: NONE.closest, text: 'no host matches the requirements (node-a …)' }, 'v1 is not a linked peer');
  assert.equal(note.text, "no host matches the requirements (node-a …); not outsourced by the site's policy: v1 is not a linked peer");
});

test('outsource-policy - a job sent by the policy leaves the queue and says why, in its summary and its wait reason', () => {
  const { book, job } = bookWith();
  assert.deepEqual(book.queue(), [job]);
  outsource(book, job, { peer: 'v1', why: 'no host here can render it (node-a …)' });
  assert.deepEqual(book.queue(), [], 'never dispatched here');
  assert.equal(book.state(job), 'outsourced');
  const s = book.summary(job);
  assert.equal(s.outsourced?.site, 'v1');
  assert.equal(s.outsourced?.why, 'no host here can render it (node-a …)');
  assert.match(s.waiting ?? '', /^outsourced to v1: 0\/4 frames back \(.*\); sent by the site's policy: no host here can render it/);
  // a job that said `site` has no policy word
  const named = bookWith({ site: 'v1' }, 'j2');
  outsource(named.book, named.job, { peer: 'v2', why: 'ignored' });
  assert.equal(named.job.remote?.peer, 'v1');
  assert.equal(named.book.summary(named.job).outsourced?.why, undefined);
});

test('outsource-policy - a replayed outsource record sends the job again, unless it ended first', () => {
  const spec = aJobSpec({ requirements: { packages: ['blender@*'] } });
  const submit = (jobId: string): JournalRecord => ({ v: PROTOCOL_MAJOR, kind: 'submit', jobId, spec, at: T0 });
  const sent = (jobId: string): JournalRecord => ({ v: PROTOCOL_MAJOR, kind: 'outsource', jobId, peer: 'v1', why: 'no host here can render it', at: T0 + 10 });
  const book = new JobBook();
  let seq = 0;
  for (const rec of [submit('j1'), sent('j1'), submit('j2'), { v: PROTOCOL_MAJOR, kind: 'cancel', jobId: 'j2', at: T0 + 5 } as JournalRecord, sent('j2')]) applyRecord(book, rec, ++seq);
  book.finishReplay();
  const j1 = book.jobs.get('j1')!;
  assert.equal(book.state(j1), 'outsourced');
  assert.equal(j1.remote?.peer, 'v1');
  assert.equal(book.summary(j1).outsourced?.why, 'no host here can render it');
  assert.equal(book.state(book.jobs.get('j2')!), 'cancelled');
  assert.equal(book.jobs.get('j2')!.remote, undefined);
  assert.deepEqual(book.queue(), [], 'neither is dispatched here');
  // news from v1 moves it as for any outsourced job
  applyRecord(book, { v: PROTOCOL_MAJOR, kind: 'remote', jobId: 'j1', peer: 'v1', update: { v: PROTOCOL_MAJOR, jobId: 'j1', bundleId: 'b1', state: 'rejected', reason: 'no blender here either', at: T0 + 20 }, at: T0 + 20 }, ++seq);
  assert.equal(book.state(j1), 'failed');
  assert.match(j1.errors.failure ?? '', /^RB_REMOTE_FAILED: outsourced to v1, refused there: no blender here either/);
});

test('outsource-policy - bad policies are refused, naming what is wrong', () => {
  const refused = (f: () => void) => {
    try {
      f();
    } catch (err) {
      return (err as Error).message;
    }
    return assert.fail('not refused');
  };
  assert.throws(() => checkPolicy(['studio'], 'studio'), (e: unknown) => e instanceof FarmError && e.code === 'RB_BAD_ARGUMENT' && /this site itself/.test(e.message));
  assert.throws(() => checkPolicy(['v1', 'v1'], 'studio'), /named twice/);
  checkPolicy(['v1', 'v2'], 'studio');
  // the flag (renderbus up / scheduler)
  assert.deepEqual(schedulerSettings({ outsourceUnrenderable: 'v1, v2' }, 'studio').outsourceUnrenderable, ['v1', 'v2']);
  assert.equal(schedulerSettings({}).outsourceUnrenderable, undefined);
  assert.match(refused(() => schedulerSettings({ outsourceUnrenderable: 'V 1' })), /^--outsource-unrenderable: 'V 1' is not a site name/);
  assert.match(refused(() => schedulerSettings({ outsourceUnrenderable: ',' })), /^--outsource-unrenderable: name at least one peer/);
  assert.match(refused(() => schedulerSettings({ outsourceUnrenderable: 'v1,v1' })), /^--outsource-unrenderable: 'v1' is named twice/);
  assert.match(refused(() => schedulerSettings({ outsourceUnrenderable: 'studio' }, 'studio')), /^--outsource-unrenderable: 'studio' is this site itself/);
  assert.match(refused(() => schedulerSettings({ outsourceUnrenderable: 'v2', peers: 'v1' })), /^--outsource-unrenderable: 'v2' is not one of --peers \(v1\)/);
});
