import assert from 'node:assert/strict';
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import sharp from 'sharp';
import { bmpSize, checkFrames, exrSize, frameProblem, hdrSize, pnmSize, tgaSize } from '../../actors/render-slot/frame-check.ts';

async function scratch(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'rb-frame-check-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const png = (width: number, height: number) => sharp({ create: { width, height, channels: 3, background: { r: 10, g: 200, b: 30 } } }).png().toBuffer();
const SIZE = { size: { width: 64, height: 48 } };

test('frame check - a decoded frame of the size asked passes; empty, text, cut short, another format or another size is named', async (t) => {
  const dir = await scratch(t);
  const good = join(dir, 'f_0001.png');
  await writeFile(good, await png(64, 48));
  assert.equal(await frameProblem(good, SIZE), undefined);
  assert.equal(await frameProblem(good, {}), undefined, 'no size asked: any size');

  const empty = join(dir, 'f_0002.png');
  await writeFile(empty, '');
  assert.equal(await frameProblem(empty, SIZE), `the renderer wrote ${empty} empty (0 bytes)`);
  assert.equal(await frameProblem(empty), `the renderer wrote ${empty} empty (0 bytes)`, 'a command\'s empty file too');

  const text = join(dir, 'f_0003.png');
  await writeFile(text, 'frame 3\n');
  assert.match((await frameProblem(text, SIZE))!, /f_0003\.png does not decode as a PNG image: .*unsupported image format/);
  assert.equal(await frameProblem(text), undefined, 'a command template may write what it likes');

  const cut = join(dir, 'f_0004.png');
  const whole = await sharp({ create: { width: 256, height: 256, channels: 3, background: '#123456' } }).composite([{ input: Buffer.alloc(256 * 256 * 3, 7), raw: { width: 256, height: 256, channels: 3 } }]).png({ compressionLevel: 0 }).toBuffer();
  await writeFile(cut, whole.subarray(0, Math.floor(whole.length / 2)));
  assert.match((await frameProblem(cut, {}))!, /f_0004\.png does not decode as a PNG image/);

  const jpeg = join(dir, 'f_0005.png');
  await writeFile(jpeg, await sharp({ create: { width: 64, height: 48, channels: 3, background: '#fff' } }).jpeg().toBuffer());
  assert.match((await frameProblem(jpeg, SIZE))!, /it is jpeg, not a PNG/);

  const big = join(dir, 'f_0006.png');
  await writeFile(big, await png(320, 240));
  assert.equal(await frameProblem(big, SIZE), `${big} is 320×240, the job asks for 64×48`);

  // a link or nothing at all is left to delivery, which names it (links are never delivered)
  await symlink('/etc/hostname', join(dir, 'f_0007.png'));
  assert.equal(await frameProblem(join(dir, 'f_0007.png'), SIZE), undefined);
  assert.equal(await frameProblem(join(dir, 'f_0008.png'), SIZE), undefined);

  const { good: kept, bad } = await checkFrames([{ frame: 1, file: good }, { frame: 2, file: empty }, { frame: 6, file: big }], SIZE);
  assert.deepEqual(kept.map((f) => f.frame), [1]);
  assert.deepEqual(bad.map((f) => f.frame), [2, 6]);
});

test('frame check - headers read for their size: OpenEXR, Radiance HDR, Targa, BMP, PPM; other bytes are not those formats', async (t) => {
  // OpenEXR: magic, version, attributes name\0type\0size value, the dataWindow box2i
  const attr = (name: string, type: string, value: Buffer) => {
    const size = Buffer.alloc(4);
    size.writeInt32LE(value.length);
    return Buffer.concat([Buffer.from(`${name}\0${type}\0`, 'latin1'), size, value]);
  };
  const box = Buffer.alloc(16);
  [0, 0, 159, 119].forEach((v, i) => box.writeInt32LE(v, i * 4));
  const head = Buffer.alloc(8);
  head.writeUInt32LE(20000630, 0);
  head.writeUInt32LE(2, 4);
  const exr = Buffer.concat([head, attr('compression', 'compression', Buffer.from([0])), attr('dataWindow', 'box2i', box), Buffer.from([0])]);
  assert.deepEqual(exrSize(exr), { width: 160, height: 120 });
  assert.equal(exrSize(Buffer.from('not an exr at all')), undefined);
  assert.deepEqual(hdrSize(Buffer.from('#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 120 +X 160\n')), { width: 160, height: 120 });
  assert.equal(hdrSize(Buffer.from('P6 160 120 255\n')), undefined);
  const tga = Buffer.alloc(18);
  tga[2] = 2;
  tga.writeUInt16LE(160, 12);
  tga.writeUInt16LE(120, 14);
  assert.deepEqual(tgaSize(tga), { width: 160, height: 120 });
  const bmp = Buffer.alloc(54);
  bmp.write('BM', 0, 'latin1');
  bmp.writeInt32LE(160, 18);
  bmp.writeInt32LE(-120, 22); // top-down
  assert.deepEqual(bmpSize(bmp), { width: 160, height: 120 });
  assert.deepEqual(pnmSize(Buffer.from('P6\n# made by a test\n160 120\n255\n'), ['P6', 'P3']), { width: 160, height: 120 });
  assert.equal(pnmSize(Buffer.from('P5\n160 120\n255\n'), ['P6', 'P3']), undefined);
  // through the file check: a Targa of another size is named
  const dir = await scratch(t);
  await writeFile(join(dir, 'f.tga'), tga);
  assert.equal(await frameProblem(join(dir, 'f.tga'), { size: { width: 64, height: 48 } }), `${join(dir, 'f.tga')} is 160×120, the job asks for 64×48`);
  await writeFile(join(dir, 'g.exr'), 'garbage bytes');
  assert.match((await frameProblem(join(dir, 'g.exr'), {}))!, /g\.exr is not an OpenEXR image \(it starts "garbage /);
});
