import { test } from 'node:test';
import assert from 'node:assert/strict';
import { aboutFrames, chunkFrames, codecs, encodeAny, eventFrames, FarmError, formatFrames, parseFrames, frameFileName, PROTOCOL_MAJOR } from '../../protocol/index.ts';

test('frames - parses ranges, steps and lists in order without duplicates', () => {
  assert.deepEqual(parseFrames('1-5'), [1, 2, 3, 4, 5]);
  assert.deepEqual(parseFrames('1-10x3'), [1, 4, 7, 10]);
  assert.deepEqual(parseFrames('10-12, 1,5,11'), [1, 5, 10, 11, 12]);
  assert.deepEqual(parseFrames('0'), [0]);
});

test('frames - refuses reversed, malformed, empty and oversized ranges with a message naming the part', () => {
  const cases: [string, RegExp][] = [
    ['10-1', /'10-1' ends before it starts/],
    ['abc', /'abc' is not a frame/],
    ['', /empty/],
    ['1-5x0', /step/],
    ['1--3', /'1--3'/],
    ['0-2000000', /more than/],
  ];
  for (const [text, re] of cases) {
    assert.throws(() => parseFrames(text), (e: unknown) => e instanceof FarmError && e.code === 'RB_BAD_FRAMES' && re.test(e.message), text);
  }
});

test('frames - chunks hold only consecutive frames', () => {
  assert.deepEqual(chunkFrames([1, 2, 3, 4, 5], 2), [[1, 2], [3, 4], [5]]);
  assert.deepEqual(chunkFrames([1, 2, 5, 6, 7], 3), [[1, 2], [5, 6, 7]]);
  assert.equal(formatFrames([1, 2, 3, 7, 9, 10]), '1-3,7,9-10');
});

test('frames - output names pad the frame number to the run of #', () => {
  assert.equal(frameFileName('shot_####.png', 7), 'shot_0007.png');
  assert.equal(frameFileName('f#.exr', 123), 'f123.exr');
  assert.throws(() => frameFileName('shot.png', 1), /needs a run of '#'/);
  assert.throws(() => frameFileName('a/#.png', 1), /no '\/'/);
});

test('frames - a list naming too many frames is refused before any part is expanded', () => {
  const t0 = performance.now();
  assert.throws(() => parseFrames('1-900000,1000000-1900000'), /names more than 1000000 frames/);
  assert.ok(performance.now() - t0 < 200, 'refused without building 900,000 frames first (that took ~430 ms)');
});

test('frames - a frame event about a task names its first frame, lists them all, and reads back frame by frame', () => {
  const outputs = [{ frame: 3, path: '/o/3.exr' }, { frame: 4, path: '/o/4.exr' }, { frame: 9, path: '/o/9.exr' }];
  assert.deepEqual(aboutFrames([7], outputs), { frame: 7 }, 'one frame, no output of its own');
  assert.deepEqual(aboutFrames([3], outputs), { frame: 3, output: '/o/3.exr' });
  const about = aboutFrames([3, 4, 5], outputs);
  assert.deepEqual(about, { frame: 3, frames: [3, 4, 5], outputs: [{ frame: 3, path: '/o/3.exr' }, { frame: 4, path: '/o/4.exr' }] }, 'frame 9 is not the task\'s');
  const evt = codecs.frameEvent.decode(codecs.frameEvent.encode({ v: PROTOCOL_MAJOR, jobId: 'j1', ...about, event: 'done', at: 1 }));
  assert.deepEqual(eventFrames(evt), [{ frame: 3, output: '/o/3.exr' }, { frame: 4, output: '/o/4.exr' }, { frame: 5 }]);
  assert.deepEqual(eventFrames({ v: PROTOCOL_MAJOR, jobId: 'j1', frame: 8, output: '/o/8.exr', event: 'done', at: 1 }), [{ frame: 8, output: '/o/8.exr' }]);
  assert.throws(() => codecs.frameEvent.decode(codecs.frameEvent.encode({ v: PROTOCOL_MAJOR, jobId: 'j1', frame: 1, frames: [], event: 'done', at: 1 } as never)), /frames/);
  assert.throws(() => codecs.frameEvent.decode(encodeAny({ v: PROTOCOL_MAJOR, jobId: 'j1', frame: 1, frames: [1, -2], event: 'done', at: 1 })), /frames/);
});
