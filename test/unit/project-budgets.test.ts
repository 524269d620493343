import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FarmError, formatMinor, parseAmount, prepareJob, PROTOCOL_MAJOR, type BillSummary, type JournalRecord, type MatchBody } from '../../protocol/index.ts';
import { JobBook } from '../../actors/scheduler/index.ts';
import { ProjectBudgets } from '../../actors/scheduler/project-budgets.ts';
import { applyRecord } from '../../actors/scheduler/replay.ts';
import { UNRENDERABLE_SETTLE_MS, unrenderableVerdict } from '../../actors/scheduler/outsource-policy.ts';
import { aJobSpec } from '../helpers/builders.ts';

const T0 = 1_700_000_000_000;
const bill = (currency: string, amountMinor: number): BillSummary => ({ currency, amountMinor, frames: 2, wallMs: 1_000, cpuMs: 900, signed: true });

test('project-budgets - left is the budget less the bills in its currency; bills in another currency do not count', () => {
  const b = new ProjectBudgets();
  assert.equal(b.left('show-a'), undefined, 'no budget');
  b.spend('show-a', { currency: 'EUR', amountMinor: 300 });
  assert.equal(b.left('show-a'), undefined, 'a spend alone makes no budget');
  b.set('show-a', { currency: 'EUR', amountMinor: 1_000 });
  b.spend('show-a', { currency: 'USD', amountMinor: 5_000 });
  b.spend('show-a', { currency: 'EUR', amountMinor: 450 });
  assert.deepEqual(b.left('show-a'), { currency: 'EUR', amountMinor: 250 });
  assert.equal(b.spentWhy('show-a'), undefined);
  b.check('show-a', 'job'); // not spent: no throw
  assert.deepEqual(b.uses(), [{ project: 'show-a', budget: { currency: 'EUR', amountMinor: 1_000 }, leftMinor: 250, spent: [{ currency: 'EUR', amountMinor: 750, bills: 2 }, { currency: 'USD', amountMinor: 5_000, bills: 1 }] }]);
  b.spend('show-a', { currency: 'EUR', amountMinor: 250 });
  assert.deepEqual(b.left('show-a'), { currency: 'EUR', amountMinor: 0 }, 'left 0: spent');
  assert.throws(() => b.check('show-a', 'job not sent to v1'), (err: unknown) => err instanceof FarmError && err.code === 'RB_BUDGET_EXCEEDED'
    && /^job not sent to v1: project 'show-a' has spent 10\.00 EUR of its budget of 10\.00 EUR/.test(err.message));
  // other projects are untouched; a cleared budget stops nothing
  assert.equal(b.left('show-b'), undefined);
  b.set('show-a', undefined);
  assert.equal(b.left('show-a'), undefined);
  assert.equal(b.has('show-a'), false);
  b.check('show-a', 'job');
  assert.deepEqual(b.uses()[0]?.spent.map((s) => s.currency), ['EUR', 'USD'], 'the spend stays when the budget goes');
});

/** A journal as the scheduler writes it: two outsourced jobs of show-a (bills in EUR and USD), a local one, budgets set and cleared. */
function journal(): JournalRecord[] {
  const at = T0;
  const remote = (jobId: string, bundleId: string, b?: BillSummary): JournalRecord => ({ v: PROTOCOL_MAJOR, kind: 'remote', jobId, peer: 'v1', at, update: { v: PROTOCOL_MAJOR, jobId, bundleId, at, ...(b ? { bill: b } : { state: 'started' }) } });
  return [
    { v: PROTOCOL_MAJOR, kind: 'budget', project: 'show-a', currency: 'EUR', amountMinor: 500, at },
    { v: PROTOCOL_MAJOR, kind: 'budget', project: 'show-b', currency: 'EUR', amountMinor: 100, at },
    { v: PROTOCOL_MAJOR, kind: 'submit', jobId: 'j1', spec: aJobSpec({ site: 'v1', project: 'show-a' }), at },
    { v: PROTOCOL_MAJOR, kind: 'submit', jobId: 'j2', spec: aJobSpec({ site: 'v1', project: 'show-a' }), at },
    { v: PROTOCOL_MAJOR, kind: 'submit', jobId: 'j3', spec: aJobSpec({ project: 'show-a' }), at },
    remote('j1', 'started-j1'),
    remote('j1', 'bill-j1', bill('EUR', 320)),
    remote('j1', 'bill-j1', bill('EUR', 320)), // the same bundle written twice: counted once
    remote('j2', 'bill-j2', bill('USD', 900)),
    { v: PROTOCOL_MAJOR, kind: 'budget', project: 'show-b', at }, // cleared
  ];
}

test('project-budgets - a replayed journal rebuilds budgets and spend: each bill once, per currency, clears kept', () => {
  const book = new JobBook();
  journal().forEach((rec, i) => applyRecord(book, rec, i + 1));
  book.finishReplay();
  assert.deepEqual(book.budgets.left('show-a'), { currency: 'EUR', amountMinor: 180 });
  assert.equal(book.budgets.left('show-b'), undefined, 'cleared');
  assert.deepEqual(book.budgets.uses().find((u) => u.project === 'show-a')?.spent, [{ currency: 'EUR', amountMinor: 320, bills: 1 }, { currency: 'USD', amountMinor: 900, bills: 1 }]);
  // jobs leaving memory (retention) take nothing of the spend with them
  for (const id of ['j1', 'j2']) {
    const job = book.jobs.get(id)!;
    book.cancel(job, T0 + 1);
    book.evict(job);
  }
  assert.equal(book.jobs.has('j1'), false);
  assert.deepEqual(book.budgets.left('show-a'), { currency: 'EUR', amountMinor: 180 });
});

test('project-budgets - a job\'s project is its spec\'s project, else its group', () => {
  const book = new JobBook();
  const s = aJobSpec({ site: 'v1', group: 'seq-10' });
  book.add('j1', s, prepareJob(s), T0);
  applyRecord(book, { v: PROTOCOL_MAJOR, kind: 'outsource', jobId: 'j1', peer: 'v1', why: 'x', at: T0 }, 1);
  applyRecord(book, { v: PROTOCOL_MAJOR, kind: 'remote', jobId: 'j1', peer: 'v1', at: T0, update: { v: PROTOCOL_MAJOR, jobId: 'j1', bundleId: 'b', at: T0, bill: bill('EUR', 7) } }, 2);
  assert.deepEqual(book.budgets.uses().map((u) => [u.project, u.spent[0]?.amountMinor]), [['seq-10', 7]]);
});

test('money - amounts in the currency\'s minor unit, parsed and shown without floats', () => {
  assert.equal(parseAmount('500', 'EUR'), 50_000);
  assert.equal(parseAmount('499.9', 'EUR'), 49_990);
  assert.equal(parseAmount('0.07', 'EUR'), 7);
  assert.equal(parseAmount('1000', 'JPY'), 1_000);
  assert.equal(parseAmount('1.005', 'KWD'), 1_005);
  for (const [text, cur, re] of [['1.234', 'EUR', /more decimals than EUR has \(2\)/], ['-5', 'EUR', /is not an amount/], ['5e3', 'EUR', /is not an amount/], ['1.5', 'JPY', /more decimals than JPY has \(0\)/], ['5', 'eur', /not an ISO 4217 code/]] as const) {
    assert.throws(() => parseAmount(text, cur), (err: unknown) => err instanceof FarmError && err.code === 'RB_BAD_ARGUMENT' && re.test(err.message), `${text} ${cur}`);
  }
  assert.equal(formatMinor(7, 'EUR'), '0.07');
  assert.equal(formatMinor(123_456, 'USD'), '1234.56');
  assert.equal(formatMinor(-250, 'EUR'), '-2.50');
  assert.equal(formatMinor(1_000, 'JPY'), '1000');
  assert.equal(formatMinor(1_005, 'KWD'), '1.005');
});

test('project-budgets - the site\'s policy keeps a job of a project whose budget is spent here, saying why, from the first round', () => {
  const none: MatchBody = { hosts: [], closest: [{ host: 'node-a', missing: ['needs blender@*, has no blender'] }], totalHosts: 1 };
  const book = new JobBook();
  const s = aJobSpec({ project: 'show-a', requirements: { packages: ['blender@*'] } });
  const job = book.add('j1', s, prepareJob(s), T0);
  book.budgets.set('show-a', { currency: 'EUR', amountMinor: 100 });
  book.budgets.spend('show-a', { currency: 'EUR', amountMinor: 120 });
  for (const seen of [0, UNRENDERABLE_SETTLE_MS]) {
    assert.deepEqual(unrenderableVerdict(job, none, seen, ['v1'], ['v1'], book.budgets.spentWhy(job.project)), { keep: 'project \'show-a\' has spent 1.20 EUR of its budget of 1.00 EUR, so it is not sent to v1' });
  }
  // within budget: sent as before
  book.budgets.set('show-a', { currency: 'EUR', amountMinor: 500 });
  assert.deepEqual(unrenderableVerdict(job, none, UNRENDERABLE_SETTLE_MS, ['v1'], ['v1'], book.budgets.spentWhy(job.project)), { send: 'v1', why: 'no host here can render it (node-a needs blender@*, has no blender)' });
});
