import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { TestFarm } from '../helpers/farm.ts';

const README = resolve(import.meta.dirname, '../../README.md');

test('readme - the POV-Ray scene the README shows, with its #include, renders on a farm', { timeout: 120_000 }, async (t) => {
  const scenes = [...(await readFile(README, 'utf8')).matchAll(/```pov\n([\s\S]*?)```/g)].map((m) => m[1]!);
  assert.equal(scenes.length, 1, 'the README shows one scene');
  const text = scenes[0]!;
  assert.match(text, /^#include "colors\.inc"$/m, 'it uses a standard include file');

  const farm = await TestFarm.start();
  t.after(() => farm.stop());
  await farm.registry();
  await farm.scheduler();
  await farm.renderServer('readme', 1);
  const scene = await farm.writeScene('ball.pov', text);
  const out = join(farm.dir, 'out');
  const jobId = await farm.submit({ name: 'ball', scene, renderer: 'povray', frames: '1-2', resolution: '64x48', output: { dir: out, pattern: 'ball_####.png' } });
  await farm.waitJob(jobId, 'done', 90_000).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}\n${farm.logs()}`);
  });
  assert.deepEqual((await readdir(out)).filter((n) => n.endsWith('.png')).sort(), ['ball_0001.png', 'ball_0002.png']);
});
