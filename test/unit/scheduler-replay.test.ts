import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PROTOCOL_MAJOR as v, type JournalRecord } from '../../protocol/index.ts';
import { JobBook } from '../../actors/scheduler/index.ts';
import { applyRecord } from '../../actors/scheduler/replay.ts';
import { aJobSpec, aTaskResult } from '../helpers/builders.ts';

const stats = { wallMs: 1, cpuMs: 1, peakRssKb: 1, bytesWritten: 0 };

test('scheduler replay - a failed attempt queued again counts after a restart: the next attempt is 2, a late result of attempt 1 is not taken again, maxAttempts goes on', () => {
  const book = new JobBook();
  const records: JournalRecord[] = [
    { v, kind: 'submit', jobId: 'a', spec: aJobSpec({ frames: '1', maxAttempts: 2 }), at: 1000 },
    { v, kind: 'task', jobId: 'a', taskIndex: 0, status: 'failed', attempt: 1, host: 'h1', slot: 0, outputs: [], stats, error: 'RB_RENDER_FAILED: boom', retry: true, at: 2000 },
  ];
  for (const [i, rec] of records.entries()) applyRecord(book, rec, i + 1);
  book.finishReplay();
  const job = book.jobs.get('a')!;
  assert.equal(book.summary(job).counts.queued, 1);
  const a = book.lease(job, 'h1', 0, 3000)!;
  assert.equal(a.attempt, 2, 'not attempt 1 again');
  assert.equal(book.result(aTaskResult({ jobId: 'a', taskIndex: 0, attempt: 1, host: 'h1', slot: 0, status: 'failed', error: { code: 'RB_RENDER_FAILED', message: 'boom' } }), 3001).kind, 'duplicate', 'attempt 1 was applied before the restart');
  assert.equal(book.state(job), 'rendering');
  book.result(aTaskResult({ jobId: 'a', taskIndex: 0, attempt: 2, host: 'h1', slot: 0, status: 'failed', error: { code: 'RB_RENDER_FAILED', message: 'boom' } }), 3002);
  assert.equal(book.state(job), 'failed', 'two failed attempts of two: maxAttempts did not start again from zero');
});
