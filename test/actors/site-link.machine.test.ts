import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createActor, SimulatedClock } from 'xstate';
import { LinkState } from '../../protocol/index.ts';
import { HELLO_EVERY_MS, HELLOS_MISSED, linkMachine, reportedState, STALL_AFTER_MS, type PeerHello } from '../../sites/links/link-machine.ts';

function start() {
  const clock = new SimulatedClock();
  const calls = { hellos: 0, keys: [] as string[], recreates: 0, resets: 0 };
  const machine = linkMachine.provide({
    actions: {
      sendHello: () => void calls.hellos++,
      peerKey: (_, key) => void calls.keys.push(key),
      recreateSource: () => void calls.recreates++,
      resetInbox: () => void calls.resets++,
    },
  });
  const link = createActor(machine, { clock, input: { peer: 'v1', now: 0 } }).start();
  const hello = (h: Partial<PeerHello> = {}) => link.send({ type: 'hello', hello: { instance: 'i1', outSeq: 0, publicKey: 'k1', ...h }, at: clock.now() });
  const state = () => reportedState(link.getSnapshot());
  return { clock, calls, link, hello, state };
}

test('site-link - says hello every period, up or down', () => {
  const { clock, calls } = start();
  assert.equal(calls.hellos, 1);
  for (let i = 0; i < 5; i++) clock.increment(HELLO_EVERY_MS);
  assert.equal(calls.hellos, 6);
});

test('site-link - a hello connects; three missed hellos disconnect', () => {
  const { clock, hello, state, link } = start();
  assert.equal(state(), LinkState.Down);
  hello();
  assert.equal(state(), LinkState.Up);
  for (let i = 0; i < 5; i++) {
    clock.increment(HELLO_EVERY_MS);
    hello(); // each hello restarts the wait
  }
  assert.equal(state(), LinkState.Up);
  clock.increment(HELLO_EVERY_MS * HELLOS_MISSED - 1);
  assert.equal(state(), LinkState.Up);
  clock.increment(1);
  assert.equal(state(), LinkState.Down);
  assert.equal(link.getSnapshot().context.since, HELLO_EVERY_MS * 5 + HELLO_EVERY_MS * HELLOS_MISSED);
  hello();
  assert.equal(state(), LinkState.Up);
});

test('site-link - transferring while bundles are in flight', () => {
  const { hello, link } = start();
  hello();
  link.send({ type: 'work', active: 2 });
  assert.ok(link.getSnapshot().matches({ conn: { connected: 'transferring' } }));
  link.send({ type: 'work', active: 0 });
  assert.ok(link.getSnapshot().matches({ conn: { connected: 'idle' } }));
});

test('site-link - tells the peer key when first seen and when it changes, not on every hello', () => {
  const { hello, calls } = start();
  hello({ publicKey: 'k1' });
  hello({ publicKey: 'k1' });
  hello({ publicKey: 'k2' });
  assert.deepEqual(calls.keys, ['k1', 'k2']);
});

test('site-link - stalled when the peer has sent more and the inbox stands still for 30 s; the source is recreated', () => {
  const { clock, hello, link, state, calls } = start();
  hello({ outSeq: 10 }); // the baseline: what was sent before we looked
  link.send({ type: 'inbox.taken', seq: 4, at: clock.now() });
  const beat = (outSeq: number) => {
    clock.increment(HELLO_EVERY_MS);
    hello({ outSeq });
  };
  beat(12); // the peer sent two more
  for (let t = HELLO_EVERY_MS; t < STALL_AFTER_MS; t += HELLO_EVERY_MS) beat(12);
  assert.equal(state(), LinkState.Up, 'not before 30 s');
  beat(12);
  assert.equal(state(), LinkState.Stalled);
  assert.equal(calls.recreates, 1);
  link.send({ type: 'inbox.taken', seq: 6, at: clock.now() }); // the new source brings something
  assert.equal(state(), LinkState.Up);
});

test('site-link - a recreated source that brings nothing either quarantines the link (a poison message)', () => {
  const { clock, hello, link, state, calls } = start();
  hello({ outSeq: 10 });
  for (let t = 0; t <= STALL_AFTER_MS; t += HELLO_EVERY_MS) {
    clock.increment(HELLO_EVERY_MS);
    hello({ outSeq: 11 });
  }
  assert.equal(state(), LinkState.Stalled);
  for (let t = HELLO_EVERY_MS; t < STALL_AFTER_MS; t += HELLO_EVERY_MS) {
    clock.increment(HELLO_EVERY_MS);
    hello({ outSeq: 11 });
  }
  assert.equal(state(), LinkState.Stalled, 'not before another 30 s');
  clock.increment(HELLO_EVERY_MS);
  assert.equal(state(), LinkState.Quarantined);
  assert.equal(calls.recreates, 1);
  assert.match(link.getSnapshot().context.reason ?? '', /max_payload/);
  link.send({ type: 'quarantine.clear', at: clock.now() });
  assert.equal(calls.resets, 1);
  assert.equal(state(), LinkState.Up);
});

test('site-link - an inbox that keeps moving is never stalled, nor an idle one', () => {
  const { clock, hello, link, state, calls } = start();
  hello({ outSeq: 0 });
  for (let i = 1; i <= 40; i++) {
    clock.increment(HELLO_EVERY_MS);
    hello({ outSeq: i * 10 });
    link.send({ type: 'inbox.taken', seq: i * 10, at: clock.now() });
  }
  for (let i = 0; i < 40; i++) {
    clock.increment(HELLO_EVERY_MS);
    hello({ outSeq: 400 });
  }
  assert.equal(state(), LinkState.Up);
  assert.equal(calls.recreates, 0);
});

test('site-link - a source error quarantines until an operator clears it; the inbox is then reset', () => {
  const { clock, hello, link, state, calls } = start();
  hello();
  link.send({ type: 'source.error', reason: 'maximum payload exceeded', at: clock.now() });
  assert.equal(state(), LinkState.Quarantined);
  assert.equal(link.getSnapshot().context.reason, 'maximum payload exceeded');
  clock.increment(STALL_AFTER_MS * 3);
  hello();
  assert.equal(state(), LinkState.Quarantined, 'hellos do not clear it');
  link.send({ type: 'quarantine.clear', at: clock.now() });
  assert.equal(state(), LinkState.Up);
  assert.equal(calls.resets, 1);
});

test('site-link - a hello ahead of what the inbox has brought for a moment is no stall; a restart is no stall either', () => {
  const { clock, hello, link, state, calls } = start();
  hello({ outSeq: 500 }); // a restarted link: what the peer sent before counts as taken
  clock.increment(HELLO_EVERY_MS);
  hello({ outSeq: 501 }); // the peer sent one more…
  link.send({ type: 'inbox.taken', seq: 501, at: clock.now() }); // …and it came
  for (let t = 0; t < STALL_AFTER_MS * 2; t += HELLO_EVERY_MS) {
    clock.increment(HELLO_EVERY_MS);
    hello({ outSeq: 501 });
    link.send({ type: 'inbox.taken', seq: 501, at: clock.now() });
  }
  assert.equal(state(), LinkState.Up);
  assert.equal(calls.recreates, 0);
});
