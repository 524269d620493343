import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ResultTimeout } from '../../actors/render-slot/index.ts';

test('result timeout - starts at its minimum; a result sent again waits twice as long as the send before, up to the maximum', () => {
  const rt = new ResultTimeout(5_000, 60_000);
  assert.deepEqual([0, 1, 2, 3, 4, 9].map((a) => rt.forAttempt(a)), [5_000, 10_000, 20_000, 40_000, 60_000, 60_000]);
});

test('result timeout - follows the measured round trip: fast replies keep the minimum, slow ones raise it, and it comes back down', () => {
  const rt = new ResultTimeout(5_000, 60_000);
  for (let i = 0; i < 20; i++) rt.answered(20);
  assert.equal(rt.currentMs, 5_000, 'a fast scheduler: never under the minimum');
  for (let i = 0; i < 20; i++) rt.answered(4_000); // an overloaded scheduler answers in 4 s
  assert.ok(rt.currentMs > 4_000 && rt.currentMs < 12_000, `${rt.currentMs}`);
  const loaded = rt.currentMs;
  rt.answered(9_000);
  assert.ok(rt.currentMs > loaded, 'a slower reply raises it at once');
  for (let i = 0; i < 60; i++) rt.answered(30);
  assert.equal(rt.currentMs, 5_000, 'back to the minimum once the scheduler is fast again');
  for (let i = 0; i < 20; i++) rt.answered(500_000);
  assert.equal(rt.currentMs, 60_000, 'never over the maximum');
});

test('result timeout - a timeout doubles the wait once for the sends made with it, not once per slot', () => {
  const rt = new ResultTimeout(5_000, 60_000);
  for (let slot = 0; slot < 16; slot++) rt.timedOut(5_000); // sixteen slots timed out together
  assert.equal(rt.currentMs, 10_000);
  rt.timedOut(10_000);
  assert.equal(rt.currentMs, 20_000);
  rt.timedOut(5_000); // a late one, sent before the wait grew: says nothing new
  assert.equal(rt.currentMs, 20_000);
  for (let i = 0; i < 5; i++) rt.timedOut(rt.currentMs);
  assert.equal(rt.currentMs, 60_000);
  rt.answered(7_000); // a reply measured again: the wait follows the round trip from there
  assert.ok(rt.currentMs >= 7_000 && rt.currentMs < 60_000, `${rt.currentMs}`);
});

test('result timeout - bad bounds and bad measures are refused or ignored', () => {
  assert.throws(() => new ResultTimeout(0, 10), /0 < min ≤ max/);
  assert.throws(() => new ResultTimeout(10, 5), /0 < min ≤ max/);
  const rt = new ResultTimeout(100, 1_000);
  rt.answered(Number.NaN);
  rt.answered(-5);
  rt.answered(Number.POSITIVE_INFINITY);
  assert.equal(rt.currentMs, 100);
});

test('result timeout - send gives each attempt its wait, learns from first sends only, and only a timeout backs it off', async () => {
  const rt = new ResultTimeout(5_000, 60_000);
  const waits: number[] = [];
  const noReply = () => Object.assign(new Error('no answer'), { cause: Object.assign(new Error('timeout'), { name: 'TimeoutError' }) });
  const refused = new Error('RB_UNKNOWN_JOB');
  await assert.rejects(rt.send(0, async (ms) => { waits.push(ms); throw refused; }), /RB_UNKNOWN_JOB/);
  assert.equal(rt.currentMs, 5_000, 'an error reply is an answer in time: nothing to back off');
  await assert.rejects(rt.send(0, async (ms) => { waits.push(ms); throw noReply(); }), /no answer/);
  assert.equal(rt.currentMs, 10_000);
  await assert.rejects(rt.send(2, async (ms) => { waits.push(ms); throw noReply(); }), /no answer/);
  assert.equal(rt.currentMs, 10_000, 'a send made again backs off its own wait, not the next first sends\'');
  assert.equal(await rt.send(1, async (ms) => { waits.push(ms); return 'taken'; }), 'taken');
  assert.equal(rt.currentMs, 10_000, 'a reply to a send made again is not measured');
  assert.deepEqual(waits, [5_000, 5_000, 40_000, 20_000]);
  await rt.send(0, async () => 'taken');
  assert.equal(rt.currentMs, 5_000, 'a fast first-send reply brings it back');
});
