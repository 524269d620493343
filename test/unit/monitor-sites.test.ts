import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FarmModel } from '../../actors/monitor/model.ts';
import type { LinkStatus } from '../../protocol/index.ts';

const T0 = 1_700_000_000_000;
const link = (peer: string, over: Partial<LinkStatus> = {}): LinkStatus => ({ peer, state: 'up', since: T0, rttMs: 3, outgoing: { bundles: 0, bytes: 0 }, incoming: { bundles: 0, bytes: 0 }, bytesOut: 0, bytesIn: 0, ...over });

test('monitor-sites - the links the link service gave go to the live stream when they change, and stay (unanswered) when it stops answering', () => {
  const m = new FarmModel();
  m.applyLinks(null, T0);
  assert.equal(m.changesSince().sites, undefined, 'no link service: a farm that is no linked site shows no Sites panel');
  m.applyLinks([link('v2'), link('v1')], T0 + 1);
  const first = m.changesSince();
  assert.deepEqual(first.sites, { answered: true, links: [link('v1'), link('v2')], at: T0 + 1 });
  m.applyLinks([link('v1'), link('v2')], T0 + 2);
  assert.equal(m.version, first.version, 'the same answer is no news');
  assert.equal(m.changesSince(first.version).sites, undefined);
  m.applyLinks([link('v1', { state: 'down' }), link('v2')], T0 + 3);
  assert.equal(m.changesSince(first.version).sites?.links[0]?.state, 'down');
  const v = m.version;
  m.applyLinks(null, T0 + 4);
  const gone = m.changesSince(v).sites;
  assert.equal(gone?.answered, false);
  assert.equal(gone?.links.length, 2, 'the links as it last said them');
  m.applyLinks(null, T0 + 5);
  assert.equal(m.changesSince(v + 1).sites, undefined, 'still no answer: no news');
  assert.ok(m.changesSince().sites, 'a full answer carries them');
});
