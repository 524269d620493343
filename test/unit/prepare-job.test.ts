import { test } from 'node:test';
import assert from 'node:assert/strict';
import { codecs, expandRuns, FarmError, prepareJob } from '../../protocol/index.ts';
import { aJobSpec } from '../helpers/builders.ts';

const refuses = (spec: Parameters<typeof prepareJob>[0], field: RegExp) =>
  assert.throws(() => prepareJob(spec), (e: unknown) => e instanceof FarmError && field.test(e.message), JSON.stringify(spec));

test('prepare-job - expands frames into chunked tasks and implies the renderer package', () => {
  const p = prepareJob(aJobSpec({ frames: '1-5', chunk: 2, resolution: '320x240', priority: 10 }));
  assert.equal(p.renderer, 'povray');
  assert.deepEqual(expandRuns(p.frames), [1, 2, 3, 4, 5]);
  assert.deepEqual([p.chunk, p.taskCount], [2, 3]);
  assert.deepEqual(p.resolution, { width: 320, height: 240 });
  assert.equal(p.priority, 10);
  assert.deepEqual(p.requirements.packages, ['povray']);
  assert.equal(p.outputPattern, 'frame_####.png');
});

test('prepare-job - keeps an explicit povray requirement and defaults priority to 50', () => {
  const p = prepareJob(aJobSpec({ requirements: { packages: ['povray@3.7.*'] } }));
  assert.deepEqual(p.requirements.packages, ['povray@3.7.*']);
  assert.equal(p.priority, 50);
});

test('prepare-job - refuses bad fields, naming each', () => {
  refuses(aJobSpec({ frames: '10-1' }), /^frames: .*ends before it starts/);
  refuses(aJobSpec({ scene: 'rel/shot.pov' }), /^scene: .*absolute/);
  refuses(aJobSpec({ output: {} }), /^output\.dir: is required/);
  refuses(aJobSpec({ renderer: 'command' }), /^command: renderer 'command' needs a command template/);
  refuses(aJobSpec({ scene: '/s/x.max' }), /^renderer: cannot tell the renderer of '\/s\/x\.max': name one \(povray, blender, command\)/);
  refuses(aJobSpec({ requirements: { packages: ['povray@3.x.*y'] } }), /requirements\.packages\[0\]/);
  refuses(aJobSpec({ output: { dir: '/o', pattern: 'nohash.png' } }), /needs a run of '#'/);
});

test('prepare-job - the job file schema names unknown and mistyped fields', () => {
  assert.throws(() => codecs.jobSpec.check({ ...aJobSpec(), priority: 'high' }), /\/priority: Expected integer/);
  assert.throws(() => codecs.jobSpec.check({ ...aJobSpec(), colour: 'red' }), /Unexpected property/);
  assert.throws(() => codecs.jobSpec.check({ ...aJobSpec(), renderer: 'maya' }), /\/renderer/);
  assert.throws(() => codecs.jobSpec.check({ frames: '1' }), /\/scene/);
});
