import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AckBook, type Ackable } from '../../actors/notifier/index.ts';
import type { NotifierContext } from '../../actors/notifier/machine.ts';
import type { Notification } from '../../actors/notifier/index.ts';

// The notifier acknowledges a stored job event only once nothing of its job is left to do.

class Msg implements Ackable {
  said: string[] = [];
  ack() { this.said.push('ack'); }
  nak() { this.said.push('nak'); }
  working() { this.said.push('working'); }
}
type Ctx = Pick<NotifierContext, 'jobs' | 'inFlight'>;
const note = (jobId: string) => ({ event: { jobId } }) as unknown as Notification;
const watch = (looking: boolean) => ({ plan: null, looking, pending: [], lastStep: 0 });

test('notify acks - an event is acknowledged once its job has no notification in flight and its settings are known', () => {
  const acks = new AckBook<Msg>();
  const [a1, a2, b1] = [new Msg(), new Msg(), new Msg()];
  acks.add('ja', a1);
  acks.add('ja', a2);
  acks.add('jb', b1);
  const busy: Ctx = { jobs: { ja: watch(false), jb: watch(true) }, inFlight: { 'note:1': note('ja') } };
  assert.equal(acks.settle(busy), 0, 'ja delivers, jb is being looked up');
  acks.working();
  assert.deepEqual([a1.said, b1.said], [['working'], ['working']]);
  assert.equal(acks.settle({ jobs: { ja: watch(false), jb: watch(true) }, inFlight: {} }), 2);
  assert.deepEqual([a1.said, a2.said], [['working', 'ack'], ['working', 'ack']]);
  assert.equal(acks.settle({ jobs: {}, inFlight: {} }), 1, 'jb forgotten (ended, or unknown to the scheduler): nothing left to do');
  assert.deepEqual(b1.said, ['working', 'ack']);
  assert.equal(acks.pending, 0);
});

test('notify acks - events of a job whose notification the stop cut short go back, never acknowledged', () => {
  const acks = new AckBook<Msg>();
  const [a, b] = [new Msg(), new Msg()];
  acks.add('ja', a);
  acks.add('jb', b);
  acks.stoppedEarly('ja');
  assert.equal(acks.settle({ jobs: {}, inFlight: {} }), 1);
  assert.equal(acks.giveBack(), 1);
  assert.deepEqual([a.said, b.said], [['nak'], ['ack']]);
});
