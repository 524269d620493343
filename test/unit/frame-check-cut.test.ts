import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { frameProblem } from '../../actors/render-slot/frame-check.ts';
import { tinyExr } from '../helpers/tiny-image.ts';

/* Formats read by their headers only (not decoded) are still told apart when cut short. */

const bmp = (w: number, h: number) => {
  const row = Math.ceil((24 * w) / 32) * 4;
  const b = Buffer.alloc(54 + row * h);
  b.write('BM', 0, 'latin1');
  b.writeUInt32LE(b.length, 2);
  b.writeUInt32LE(54, 10);
  b.writeUInt32LE(40, 14);
  b.writeInt32LE(w, 18);
  b.writeInt32LE(h, 22);
  b.writeUInt16LE(1, 26);
  b.writeUInt16LE(24, 28); // BI_RGB (0) at 30
  return b;
};
const tga = (w: number, h: number) => {
  const b = Buffer.alloc(18 + w * h * 4);
  b[2] = 2; // uncompressed true colour
  b.writeUInt16LE(w, 12);
  b.writeUInt16LE(h, 14);
  b[16] = 32;
  return b;
};
const ppm = (w: number, h: number) => Buffer.concat([Buffer.from(`P6\n# made here\n${w} ${h}\n255\n`, 'latin1'), Buffer.alloc(w * h * 3, 90)]);

test('frame check - an OpenEXR, BMP, uncompressed Targa or PPM shorter than its header says is cut short; whole ones pass', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'rb-frame-cut-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const size = { width: 40, height: 30 };
  for (const [ext, whole] of [['exr', tinyExr(40, 30)], ['bmp', bmp(40, 30)], ['tga', tga(40, 30)], ['ppm', ppm(40, 30)]] as const) {
    const good = join(dir, `whole.${ext}`);
    await writeFile(good, whole);
    assert.equal(await frameProblem(good, { size }), undefined, ext);
    const cut = join(dir, `cut.${ext}`);
    await writeFile(cut, whole.subarray(0, whole.length - 3));
    assert.equal(await frameProblem(cut, { size }), `${cut} is cut short: its header says ${whole.length} bytes, it has ${whole.length - 3}`, ext);
  }
  // an OpenEXR cut inside its offset table
  const exr = tinyExr(40, 30);
  const early = join(dir, 'early.exr');
  await writeFile(early, exr.subarray(0, exr.indexOf(0, exr.indexOf('screenWindowWidth') + 30) + 10));
  assert.match((await frameProblem(early, { size }))!, /early\.exr is cut short/);
});
