import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  approxDuration, FarmError, formatMoney, parseBudget, PROTOCOL_MAJOR, prepareJob,
  type JournalRecord, type PeerQuote, type Quote,
} from '../../protocol/index.ts';
import { JobBook, type Job } from '../../actors/scheduler/index.ts';
import { applyPlacement } from '../../actors/scheduler/outsource.ts';
import { queueLoad } from '../../actors/scheduler/queue-load.ts';
import { applyRecord } from '../../actors/scheduler/replay.ts';
import { chooseSite, localSide, mayOverflow, roomHere, staysHere, type LocalSide } from '../../actors/scheduler/site-choice.ts';
import { schedulerSettings } from '../../tools/cli/scheduler-flags.ts';
import { forVendor } from '../../sites/outsource/packer.ts';
import { checkSiteLinks, PeerRole, newLeafPassword } from '../../sites/links/index.ts';
import { aJobSpec, aTaskResult } from '../helpers/builders.ts';

const add = (book: JobBook, id: string, over: Parameters<typeof aJobSpec>[0] = {}, at = 1000): Job => {
  const spec = aJobSpec(over);
  return book.add(id, spec, prepareJob(spec), at);
};

/** A vendor's quote: 1 slot, 10 s a frame, 1 cent a frame unless told. */
const aQuote = (over: Partial<Quote> = {}): Quote => ({
  site: 'v1', canRender: true, freeSlots: 1, slots: 1, framesAhead: 0, frameMs: 10_000, frameFrom: 'measured',
  missingBytes: 0, missingFiles: 0, rate: { currency: 'EUR', perCoreHourMinor: 360, perGbMinor: 0, minimumMinor: 0 },
  transferMs: 0, queueMs: 0, renderMs: 100_000, finishMs: 100_000, price: { currency: 'EUR', amountMinor: 10 }, ...over,
});
const answer = (peer: string, over: Partial<Quote> = {}): PeerQuote => ({ peer, quote: aQuote({ site: peer, ...over }), ms: 12 });
/** Here: 1 slot, 40 frames ahead, 10 s a frame: 10 frames finish in 500 s. */
const here = (over: Partial<LocalSide> = {}): LocalSide => ({ site: 'studio', slots: 1, freeSlots: 0, framesAhead: 40, frameMs: 10_000, ...over });

test('site-choice - the earliest finish wins: the fast vendor over the slow one and a busy farm here, every quote said', () => {
  const c = chooseSite({
    frames: 10, project: 'show',
    local: here({ slots: 2 }),
    answers: [answer('v1', { slots: 1, finishMs: 130_000, price: { currency: 'EUR', amountMinor: 5 } }), answer('v2', { slots: 4, finishMs: 40_000, price: { currency: 'EUR', amountMinor: 12 } })],
  });
  assert.equal(c.peer, 'v2');
  assert.equal(c.text, 'placed at v2: finishes in ~40 s for 0.12 EUR; here: ~4 min 10 s (2 slots, 40 frames ahead); v1: ~2 min 10 s, 0.05 EUR');
  assert.deepEqual(c.options.map((o) => [o.site, o.here ?? false, o.finishMs, o.skipped]), [['studio', true, 250_000, undefined], ['v1', false, 130_000, undefined], ['v2', false, 40_000, undefined]]);
});

test('site-choice - a peer that cannot render it, did not answer, or is over the budget is skipped with the reason kept', () => {
  const c = chooseSite({
    frames: 10, project: 'show', budget: parseBudget('0.10 EUR'),
    local: here(),
    answers: [
      answer('v1', { finishMs: 90_000, price: { currency: 'EUR', amountMinor: 8 } }),
      answer('v2', { canRender: false, slots: 0, finishMs: 0, closest: [{ host: 'n1', missing: ['needs povray, has no povray'] }] }),
      { peer: 'v3', error: 'did not answer in 5 s', ms: 5_000 },
      answer('v4', { finishMs: 1_000, price: { currency: 'EUR', amountMinor: 11 } }),
      answer('v5', { finishMs: 1_000, price: { currency: 'USD', amountMinor: 1 } }),
    ],
  });
  assert.equal(c.peer, 'v1');
  assert.equal(c.text, [
    'placed at v1: finishes in ~1 min 30 s for 0.08 EUR',
    'here: ~8 min 20 s (1 slot, 40 frames ahead)',
    'v2: cannot render it (n1 needs povray, has no povray)',
    'v3: did not answer in 5 s',
    'v4: 0.11 EUR is over the budget of 0.10 EUR',
    'v5: priced in USD, the budget is in EUR',
  ].join('; '));
});

test('site-choice - a budget too small keeps it here; so does a tie (nothing crosses, nothing is paid)', () => {
  const small = chooseSite({ frames: 10, project: 'show', budget: parseBudget('0.01 EUR'), local: here(), answers: [answer('v2', { finishMs: 1_000 })] });
  assert.equal(small.peer, undefined);
  assert.match(small.text, /^placed here: finishes in ~8 min 20 s \(1 slot, 40 frames ahead\); v2: 0\.10 EUR is over the budget of 0\.01 EUR$/);
  const free = chooseSite({ frames: 10, project: 'show', budget: parseBudget('0.01 EUR'), local: here(), answers: [answer('v2', { finishMs: 1_000, price: { currency: 'XXX', amountMinor: 0 } })] });
  assert.equal(free.peer, 'v2', 'nothing to pay (a vendor without a rate card) fits any budget');
  const tie = chooseSite({ frames: 10, project: 'show', local: here({ framesAhead: 0 }), answers: [answer('v1', { finishMs: 100_000 })] });
  assert.equal(tie.peer, undefined);
});

test('site-choice - a project budget passed in is kept to as the job\'s is', () => {
  const asked: string[] = [];
  const c = chooseSite({
    frames: 10, project: 'show', local: here(), answers: [answer('v1', { finishMs: 1_000, price: { currency: 'EUR', amountMinor: 300 } }), answer('v2', { finishMs: 2_000, price: { currency: 'EUR', amountMinor: 200 } })],
    projectLeft: (p) => (asked.push(p), { currency: 'EUR', amountMinor: 250 }),
  });
  assert.deepEqual(asked, ['show']);
  assert.equal(c.peer, 'v2');
  assert.match(c.text, /v1: 3\.00 EUR is over what is left of project show's budget of 2\.50 EUR/);
});

test('site-choice - a project whose budget is spent sends nothing out, not even to a peer that would render it for nothing', () => {
  const c = chooseSite({
    frames: 10, project: 'show', local: here(), answers: [answer('v1', { finishMs: 1_000, price: { currency: 'XXX', amountMinor: 0 } })],
    projectLeft: () => ({ currency: 'EUR', amountMinor: -20 }),
  });
  assert.equal(c.peer, undefined);
  assert.match(c.text, /v1: project show's budget is spent: no new job of it goes out/);
});

test('site-choice - nothing can render it: it stays here and says so; no host here but a peer can: the peer', () => {
  const none = chooseSite({ frames: 4, project: 'p', local: here({ slots: 0, cannot: 'no host here can render it (n1 needs blender)' }), answers: [{ peer: 'v1', error: 'did not answer in 5 s', ms: 5_000 }] });
  assert.equal(none.peer, undefined);
  assert.equal(none.text, 'placed here: no site can render it now, so it waits here; here: no host here can render it (n1 needs blender); v1: did not answer in 5 s');
  const peer = chooseSite({ frames: 4, project: 'p', local: here({ slots: 0, cannot: 'x' }), answers: [answer('v1')] });
  assert.equal(peer.peer, 'v1');
});

test('site-choice - the local side: slots from the registry\'s matching hosts, the measured frame time, or why none', () => {
  const host = (name: string, slots: number, free: number) => ({ host: name, serverId: 's', inventory: {} as never, slots: Array.from({ length: slots }, () => ({}) as never), free });
  assert.deepEqual(localSide('studio', { hosts: [host('a', 2, 1), host('b', 4, 0)], closest: [], totalHosts: 2 }, { framesAhead: 7, frameMs: 1234, measuredFrames: 3 }), { site: 'studio', slots: 6, freeSlots: 1, framesAhead: 7, frameMs: 1234 });
  assert.equal(localSide('studio', { hosts: [], closest: [{ host: 'a', missing: ['needs blender, has no blender'] }], totalHosts: 1 }, { framesAhead: 0, measuredFrames: 0 }).cannot, 'no host here can render it (a needs blender, has no blender)');
  assert.equal(localSide('studio', undefined, { framesAhead: 0, measuredFrames: 0 }).cannot, 'the registry did not answer');
});

test('site-choice - without peers, waiting for local jobs, or from a peer, an auto job stays here without asking', () => {
  const book = new JobBook();
  const a = add(book, 'a', { site: 'auto' });
  assert.equal(staysHere(a, []), 'no linked peers');
  assert.equal(staysHere(a, ['v1']), undefined);
  const b = add(book, 'b', { site: 'auto', after: ['a'] });
  assert.match(staysHere(b, ['v1'])!, /waits for jobs of this site/);
});

test('site-choice - an auto job is not dispatched before it is placed; placed here it queues, at a peer it is outsourced; a replayed place record does the same', () => {
  const book = new JobBook();
  const a = add(book, 'a', { site: 'auto', frames: '1-4' });
  const b = add(book, 'b', { site: 'auto', frames: '1-4' });
  assert.deepEqual(book.queue(), [], 'waiting for quotes: nothing of it is dispatched');
  assert.equal(book.whyWaiting(a)?.kind, 'quotes');
  applyPlacement(book, a, { text: 'placed here: no linked peers', options: [], at: 2000 });
  assert.deepEqual(book.queue(), [a]);
  assert.equal(book.summary(a).placement?.text, 'placed here: no linked peers');
  applyPlacement(book, b, { peer: 'v2', text: 'placed at v2: finishes in ~40 s for 0.12 EUR', options: [], at: 2000 });
  assert.equal(book.state(b), 'outsourced');
  assert.match(book.whyWaiting(b)!.text, /^outsourced to v2: 0\/4 frames back .*; placed at v2: finishes in ~40 s for 0\.12 EUR$/);

  // replay: the place record applies again, so a restarted scheduler keeps the choice
  const again = new JobBook();
  const v = PROTOCOL_MAJOR;
  const records: JournalRecord[] = [
    { v, kind: 'submit', jobId: 'a', spec: a.spec, at: 1000 },
    { v, kind: 'submit', jobId: 'b', spec: b.spec, at: 1000 },
    { v, kind: 'submit', jobId: 'c', spec: aJobSpec({ site: 'auto' }), at: 1000 },
    { v, kind: 'place', jobId: 'a', text: 'placed here: no linked peers', options: [], at: 2000 },
    { v, kind: 'place', jobId: 'b', peer: 'v2', text: 'placed at v2', options: [], at: 2000 },
  ];
  records.forEach((r, i) => applyRecord(again, r, i + 1));
  again.finishReplay();
  assert.deepEqual(again.queue().map((j) => j.id), ['a']);
  assert.equal(again.jobs.get('b')!.remote?.peer, 'v2');
  assert.equal(again.jobs.get('c')!.placement, undefined, 'not placed before the restart: asked again');
});

test('site-choice - the queue\'s load: frames ahead at that priority or more urgent, the renderer\'s measured frame time', () => {
  const book = new JobBook();
  const urgent = add(book, 'u', { frames: '1-10', priority: 10 });
  add(book, 's', { frames: '1-5', priority: 50 });
  add(book, 'l', { frames: '1-100', priority: 90 });
  add(book, 'h', { frames: '1-7', priority: 10, hold: true });
  const auto = add(book, 'a', { frames: '1-3', priority: 10, site: 'auto' });
  assert.deepEqual(queueLoad(book, 'povray', 50), { framesAhead: 15, measuredFrames: 0 }, 'held and unplaced jobs take no slot');
  const t = book.lease(urgent, 'h1', 0, 2000)!;
  book.result(aTaskResult({ jobId: 'u', taskIndex: t.taskIndex, attempt: 1, stats: { wallMs: 4_000, cpuMs: 1, peakRssKb: 0, bytesWritten: 0 } as never }), 6000);
  const load = queueLoad(book, 'povray', 50, auto);
  assert.equal(load.framesAhead, 14);
  assert.equal(load.frameMs, 4_000);
  assert.equal(queueLoad(book, 'command', 50).frameMs, undefined);
});

test('budget - parsed into minor units; malformed ones refused by name', () => {
  assert.deepEqual(parseBudget('12.50 EUR'), { currency: 'EUR', amountMinor: 1250 });
  assert.deepEqual(parseBudget('40 USD'), { currency: 'USD', amountMinor: 4000 });
  assert.deepEqual(parseBudget('0.5 EUR'), { currency: 'EUR', amountMinor: 50 });
  assert.equal(formatMoney({ currency: 'EUR', amountMinor: 5 }), '0.05 EUR');
  for (const bad of ['12,50 EUR', '12.505 EUR', 'EUR 12', '12 eur', '-3 EUR', '12.50', '']) {
    assert.throws(() => parseBudget(bad), (e: unknown) => e instanceof FarmError && e.code === 'RB_BAD_JOB' && /^budget: /.test(e.message), bad);
  }
  assert.throws(() => prepareJob(aJobSpec({ site: 'auto', budget: '12,50 EUR' })), /budget: '12,50 EUR' is not an amount and a currency/);
  assert.equal(approxDuration(130_000), '~2 min 10 s');
  assert.equal(approxDuration(3 * 3_600_000 + 5 * 60_000), '~3 h 5 min');
});

test('site-choice - a peer may not be named auto (a job\'s site: auto means every peer)', () => {
  assert.throws(() => checkSiteLinks({ site: 'studio', peers: [{ name: 'auto', role: PeerRole.Leaf, password: newLeafPassword() }] }), /peer name 'auto' is reserved: a job's `site: auto` means: ask every linked peer for a quote/);
  assert.throws(() => checkSiteLinks({ site: 'auto', peers: [] }), /a site named 'auto' cannot be linked/);
});

test('site-choice - the overflow policy weighs only a job that could go: no site, not started, not held, from no peer, waiting for nothing here', () => {
  const book = new JobBook();
  const plainJob = add(book, 'p', { frames: '1-4' });
  assert.equal(mayOverflow(plainJob), true);
  assert.equal(mayOverflow(add(book, 's', { site: 'v1' })), false);
  assert.equal(mayOverflow(add(book, 'h', { hold: true })), false);
  assert.equal(mayOverflow(add(book, 'a', { after: ['p'] })), false);
  const started = add(book, 'r', { frames: '1-4' });
  book.lease(started, 'h1', 0, 2000);
  assert.equal(mayOverflow(started), false, 'a frame runs here');
  assert.equal(roomHere(here({ freeSlots: 1, framesAhead: 0 })), true);
  assert.equal(roomHere(here({ freeSlots: 1, framesAhead: 3 })), false);
  assert.equal(roomHere(here({ freeSlots: 0, framesAhead: 0 })), false);
  // while quoted, nothing of it is dispatched, and why says so; then it queues again
  book.setQuoting(plainJob, 'the farm here is busy: asking v1 for quotes');
  assert.ok(!book.queue().includes(plainJob));
  assert.deepEqual(book.whyWaiting(plainJob), { kind: 'quotes', text: 'the farm here is busy: asking v1 for quotes' });
  book.setQuoting(plainJob, undefined);
  assert.ok(book.queue().includes(plainJob));
});

test('site-choice - --outsource-overflow is checked as --outsource-unrenderable is, naming its flag', () => {
  assert.deepEqual(schedulerSettings({ outsourceOverflow: 'v1,v2' }, 'studio').outsourceOverflow, ['v1', 'v2']);
  assert.throws(() => schedulerSettings({ outsourceOverflow: 'studio' }, 'studio'), /--outsource-overflow: 'studio' is this site itself/);
  assert.throws(() => schedulerSettings({ outsourceOverflow: 'V1' }), /--outsource-overflow: 'V1' is not a site name/);
  assert.throws(() => schedulerSettings({ peers: 'v1', outsourceOverflow: 'v2' }), /--outsource-overflow: 'v2' is not one of --peers \(v1\)/);
});

test('site-choice - the vendor never sees the budget of a job placed there (nor its site: auto)', () => {
  const sent = forVendor(aJobSpec({ site: 'auto', budget: '12.50 EUR' }), '/out/shot');
  assert.equal(sent.budget, undefined);
  assert.equal(sent.site, undefined);
});
