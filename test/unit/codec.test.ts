import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pack } from 'msgpackr';
import { codecs, FarmError, MAX_WIRE_MESSAGE } from '../../protocol/index.ts';

const refusal = (fn: () => unknown): FarmError => {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof FarmError, `a FarmError, not ${String(err)}`);
    return err;
  }
  assert.fail('expected a refusal');
};

test('codec - a wrong protocol major of any type is named, never a crash', () => {
  assert.match(refusal(() => codecs.listRequest.decode(pack({ v: 2 }))).message, /speaks protocol 2, this peer speaks 1/);
  const e = refusal(() => codecs.listRequest.decode(pack({ v: { toString: 'x' } })));
  assert.equal(e.code, 'RB_PROTOCOL_MISMATCH');
  assert.match(e.message, /an object \(not a number\)/);
  assert.match(refusal(() => codecs.listRequest.decode(pack({ v: 'x'.repeat(100_000) }))).message.slice(0, 80), /"x{40}…"/);
});

test('codec - an error quoting a huge field is cut on the wire, so its reply still fits in one message', () => {
  const e = new FarmError('RB_UNKNOWN_JOB', `no job '${'!'.repeat(1_000_000)}'`); // as the scheduler answers a hostile query
  const wire = e.toWire();
  assert.ok(wire.message.length <= MAX_WIRE_MESSAGE + 40, `${wire.message.length} characters`);
  assert.match(wire.message, /more characters\)$/);
  assert.equal(wire.code, e.code);
});

test('codec - the output pattern check is linear: a hostile pattern is refused at once', () => {
  const spec = { scene: '/s.pov', frames: '1', output: { pattern: `${'#'.repeat(5_000)}/` } };
  const t0 = performance.now();
  assert.equal(refusal(() => codecs.jobSpec.check(spec)).code, 'RB_SCHEMA_MISMATCH');
  assert.ok(performance.now() - t0 < 1_000, 'the old pattern took ~58 s for 4,000 #');
  for (const ok of ['f_####.png', 'a#b#.exr', '#']) codecs.jobSpec.check({ ...spec, output: { pattern: ok } });
});
