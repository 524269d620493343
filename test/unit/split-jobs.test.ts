import { test } from 'node:test';
import assert from 'node:assert/strict';
import { prepareJob, PROTOCOL_MAJOR, RemoteState, type JournalRecord, type PeerQuote, type Quote } from '../../protocol/index.ts';
import { JobBook, type Job } from '../../actors/scheduler/index.ts';
import { applyRemote } from '../../actors/scheduler/outsource.ts';
import { applyRecord } from '../../actors/scheduler/replay.ts';
import { chooseSite, type LocalSide } from '../../actors/scheduler/site-choice.ts';
import { MIN_PART_FRAMES, planSplit, splitCandidates, type SplitCandidate } from '../../actors/scheduler/split-plan.ts';
import { applySplit, partsOf, splitChoice, syncParent } from '../../actors/scheduler/split-jobs.ts';
import { aJobSpec } from '../helpers/builders.ts';

const v = PROTOCOL_MAJOR;
const c = (site: string, slots: number, frameMs: number, delayMs = 0, here = false): SplitCandidate => ({ site, slots, frameMs, delayMs, ...(here ? { here: true } : {}) });
const counts = (p: ReturnType<typeof planSplit>) => p.parts.map((x) => [x.site, x.frames]);

test('split-plan - frames in proportion to each rate (slots ÷ frame time); they add up to the job', () => {
  // here 1 slot at 10 s, v2 4 slots at 10 s: 1:4
  assert.deepEqual(counts(planSplit(100, [c('studio', 1, 10_000, 0, true), c('v2', 4, 10_000)])), [['studio', 20], ['v2', 80]]);
  // the same slots, v2 twice as slow a frame: 1:2
  assert.deepEqual(counts(planSplit(30, [c('studio', 1, 10_000, 0, true), c('v2', 4, 20_000)])), [['studio', 10], ['v2', 20]]);
  // rounding: 3 equal candidates, 10 frames: 4 + 3 + 3, nothing lost
  const three = planSplit(16, [c('a', 1, 1000), c('b', 1, 1000), c('d', 1, 1000)]);
  assert.equal(three.parts.reduce((n, p) => n + p.frames, 0), 16);
  assert.deepEqual(three.parts.map((p) => p.frames).sort(), [5, 5, 6]);
});

test('split-plan - a start delay (transfer, queue ahead) gives a candidate fewer frames, so all finish together', () => {
  // both 1 slot at 1 s a frame; v2 starts 20 s later: T = (60 + 20) / 2 = 40 → here 40, v2 20
  const p = planSplit(60, [c('studio', 1, 1000, 0, true), c('v2', 1, 1000, 20_000)]);
  assert.deepEqual(counts(p), [['studio', 40], ['v2', 20]]);
  assert.deepEqual(p.parts.map((x) => x.finishMs), [40_000, 40_000]);
});

test('split-plan - a candidate that would get fewer than the minimum is dropped (said why), and the rest planned again', () => {
  assert.equal(MIN_PART_FRAMES, 5);
  // v1: 1 slot at 60 s beside 4 fast slots: its share of 40 frames is under 5
  const p = planSplit(40, [c('studio', 2, 5000, 0, true), c('v1', 1, 60_000), c('v2', 4, 5000)]);
  assert.deepEqual(counts(p), [['studio', 13], ['v2', 27]]);
  assert.deepEqual(p.dropped.map((d) => d.site), ['v1']);
  assert.match(p.dropped[0]!.why, /^its share would be [0-4] frames?, under the minimum of 5$/);
  // one that cannot start before the others finish gets nothing
  const late = planSplit(20, [c('studio', 1, 1000, 0, true), c('v2', 1, 1000), c('v9', 8, 1000, 3_600_000)]);
  assert.deepEqual(late.dropped, [{ site: 'v9', why: 'it could not start before the others finish' }]);
  // fewer than two left, or too few frames for two parts: no split
  assert.deepEqual(planSplit(40, [c('studio', 1, 1000, 0, true), c('v1', 1, 600_000)]).parts, []);
  assert.deepEqual(planSplit(9, [c('studio', 1, 1000, 0, true), c('v2', 1, 1000)]).parts, []);
  assert.equal(planSplit(10, [c('studio', 1, 1000, 0, true), c('v2', 1, 1000)]).parts.length, 2);
});

/** A vendor's quote: 10 s a frame, transfer and queue as told. */
const aQuote = (over: Partial<Quote>): Quote => ({
  site: 'v1', canRender: true, freeSlots: 1, slots: 1, framesAhead: 0, frameMs: 10_000, frameFrom: 'measured',
  missingBytes: 0, missingFiles: 0, rate: { currency: 'EUR', perCoreHourMinor: 360, perGbMinor: 0, minimumMinor: 0 },
  transferMs: 0, queueMs: 0, renderMs: 100_000, finishMs: 100_000, price: { currency: 'EUR', amountMinor: 10 }, ...over,
});
const answer = (peer: string, over: Partial<Quote> = {}): PeerQuote => ({ peer, quote: aQuote({ site: peer, ...over }), ms: 5 });
const local: LocalSide = { site: 'studio', slots: 1, freeSlots: 1, framesAhead: 0, frameMs: 10_000 };

test('split-plan - the candidates: here when a host here can, and the peers the choice did not skip (cannot render, over the budgets)', () => {
  const answers = [answer('v1', { price: { currency: 'EUR', amountMinor: 900 } }), answer('v2', { slots: 4, transferMs: 2000, queueMs: 3000 }), answer('v3', { canRender: false }), { peer: 'v4', error: 'did not answer in 5 s', ms: 5000 }];
  const choice = chooseSite({ frames: 40, project: 'show', local, answers, budget: { currency: 'EUR', amountMinor: 100 } });
  const cs = splitCandidates(local, answers, choice.options);
  assert.deepEqual(cs.map((x) => [x.site, x.slots, x.delayMs]), [['studio', 1, 0], ['v2', 4, 5000]], 'v1 over the budget, v3 cannot, v4 silent');
  assert.deepEqual(splitCandidates({ ...local, slots: 0, cannot: 'no host here can render it' }, answers, choice.options).map((x) => x.site), ['v2']);
});

const add = (book: JobBook, id: string, over: Parameters<typeof aJobSpec>[0] = {}): Job => {
  const spec = aJobSpec(over);
  return book.add(id, spec, prepareJob(spec), 1000);
};

/** A 40-frame `auto` + `split` job split between here (1 slot) and v2 (4 slots): 8 here, 32 there. */
function splitBook(): { book: JobBook; parent: Job; record: JournalRecord } {
  const book = new JobBook();
  const parent = add(book, 'p', { site: 'auto', split: true, frames: '1-40', budget: '5.00 EUR', output: { dir: '/out/shot' } });
  const answers = [answer('v2', { slots: 4 })];
  const choice = splitChoice(parent, chooseSite({ frames: 40, project: 'show', local, answers }), local, answers);
  const record: JournalRecord = { v, kind: 'place', jobId: 'p', text: choice.text, options: choice.options, parts: choice.parts!, at: 2000 };
  applySplit(book, parent, { ...choice, at: 2000 });
  return { book, parent, record };
}

test('split-jobs - the choice names the parts; each is an ordinary job with its frames and the parent\'s output folder; the parent is never dispatched', () => {
  const { book, parent } = splitBook();
  assert.match(parent.placement!.text, /^split: frames 1-8 here \(job p-p1\), 9-40 at v2 \(job p-p2\); all finish in ~1 min 20 s; weighed whole: placed at v2: /);
  const [here, there] = partsOf(book, parent);
  assert.equal(here!.spec.frames, '1-8');
  assert.equal(here!.spec.site, undefined);
  assert.equal(there!.spec.site, 'v2');
  assert.equal(there!.spec.frames, '9-40');
  for (const part of [here!, there!]) {
    assert.equal(part.prepared.outputDir, '/out/shot');
    assert.equal(part.partOf, 'p');
    assert.equal(part.spec.split, undefined, 'a part is not split again');
    assert.equal(part.spec.budget, undefined);
  }
  assert.equal(book.state(there!), 'outsourced');
  assert.deepEqual(book.queue().map((j) => j.id), ['p-p1'], 'only the local part is dispatched');
  const s = book.summary(parent);
  assert.deepEqual(s.parts!.map((p) => [p.jobId, p.site, p.here ?? false, p.frames, p.state]), [['p-p1', 'studio', true, '1-8', 'queued'], ['p-p2', 'v2', false, '9-40', 'outsourced']]);
  assert.equal(book.summary(here!).partOf, 'p');
  assert.equal(s.why?.kind, 'split');
  // without split, the same quotes place the whole job
  const plain = add(book, 'q', { site: 'auto', frames: '1-40' });
  const choice = chooseSite({ frames: 40, project: 'show', local, answers: [answer('v2', { slots: 4 })] });
  assert.equal(splitChoice(plain, choice, local, [answer('v2', { slots: 4 })]), choice);
  // too few frames: not split, and it says why
  const small = add(book, 'r', { site: 'auto', split: true, frames: '1-6' });
  assert.match(splitChoice(small, choice, local, [answer('v2', { slots: 4 })]).text, /; not split: 6 frames make no two parts of 5$/);
});

test('split-jobs - the parent counts its frames from its parts, starts with one, is done when all are, failed when one failed (its reason)', () => {
  const { book, parent } = splitBook();
  const [here, there] = partsOf(book, parent);
  applyRemote(book, there!, { v, jobId: 'p-p2', bundleId: 's1', state: RemoteState.Started, at: 3000 }, 3000);
  assert.equal(syncParent(book, parent, 3000), 'started');
  assert.equal(book.state(parent), 'rendering');
  const outputs = Array.from({ length: 32 }, (_, i) => ({ frame: 9 + i, path: `/out/shot/frame_${String(9 + i).padStart(4, '0')}.png` }));
  applyRemote(book, there!, { v, jobId: 'p-p2', bundleId: 'r1', outputs, final: true, at: 4000 }, 4000);
  assert.equal(syncParent(book, parent, 4000), undefined, 'one part done is not the job');
  assert.deepEqual(book.summary(parent).counts, { total: 40, queued: 8, running: 0, done: 32, failed: 0 });
  // the local part fails for good: so does the parent, naming it
  book.failJob(here!, 'RB_JOB_FAILED: 50 failed attempts', 5000);
  assert.equal(syncParent(book, parent, 5000), 'failed');
  assert.equal(book.state(parent), 'failed');
  assert.match(book.summary(parent).error!, /^RB_JOB_FAILED: part p-p1 \(frames 1-8 here\) failed: RB_JOB_FAILED: 50 failed attempts$/);
  // every part done: done
  const b = splitBook();
  const [h, t] = partsOf(b.book, b.parent);
  applyRemote(b.book, t!, { v, jobId: 'p-p2', bundleId: 'r1', outputs, final: true, at: 4000 }, 4000);
  for (let i = 0; i < 8; i++) b.book.restoreEnded(h!, i, 'done', { outputs: [], finishedAt: 4500, host: 'n1', slot: 0, attempt: 1 });
  b.book.finishReplay();
  assert.equal(b.book.state(h!), 'done');
  assert.equal(syncParent(b.book, b.parent, 4500), 'done');
  assert.equal(b.book.state(b.parent), 'done');
  assert.deepEqual(b.book.summary(b.parent).counts, { total: 40, queued: 0, running: 0, done: 40, failed: 0 });
  // a part cancelled on its own (not through the parent) fails it
  const c3 = splitBook();
  c3.book.cancel(partsOf(c3.book, c3.parent)[0]!, 4500);
  assert.equal(syncParent(c3.book, c3.parent, 4500), 'failed');
  assert.match(c3.book.summary(c3.parent).error!, /part p-p1 \(frames 1-8 here\) cancelled$/);
});

test('split-jobs - a replayed place record makes the same parts, each once; a part\'s own records apply to it', () => {
  const { record } = splitBook();
  const book = new JobBook();
  const spec = aJobSpec({ site: 'auto', split: true, frames: '1-40', budget: '5.00 EUR', output: { dir: '/out/shot' } });
  const recs: JournalRecord[] = [
    { v, kind: 'submit', jobId: 'p', spec, at: 1000 },
    record,
    record, // written twice (a retried write): the parts are made once
    { v, kind: 'remote', jobId: 'p-p2', peer: 'v2', update: { v, jobId: 'p-p2', bundleId: 's1', state: RemoteState.Started, at: 3000 }, at: 3000 },
  ];
  for (const [i, r] of recs.entries()) applyRecord(book, r, i + 1);
  book.finishReplay();
  const parent = book.jobs.get('p')!;
  assert.deepEqual([...book.jobs.keys()], ['p', 'p-p1', 'p-p2']);
  assert.deepEqual(parent.parts, ['p-p1', 'p-p2']);
  assert.equal(book.state(book.jobs.get('p-p2')!), 'outsourced');
  assert.equal(syncParent(book, parent, 3000), 'started');
  assert.deepEqual(book.queue().map((j) => j.id), ['p-p1']);
});
