import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FarmModel, type MonitorEvent } from '../../actors/monitor/index.ts';
import type { FrameEvent } from '../../protocol/index.ts';

const frameEvt = (event: string, over: Partial<FrameEvent> = {}): MonitorEvent => ({ kind: 'frame', evt: { v: 1, jobId: 'j1', frame: 1, event, at: 2_000, host: 'node-a', slot: 0, attempt: 1, ...over } });

test('monitor model - a dispatched frame is running in hand until its slot\'s started event; the live stream says which', () => {
  const m = new FarmModel();
  m.apply(frameEvt('dispatched'));
  m.apply(frameEvt('started', { waitMs: 0 }));
  m.apply(frameEvt('done'));
  const frames = m.changesSince(0).frames.map((c) => [c.event, c.state, c.inHand]);
  assert.deepEqual(frames, [['dispatched', 'running', true], ['started', 'running', false], ['done', 'done', undefined]]);
});
