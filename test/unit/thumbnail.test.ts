import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { test, type TestContext } from 'node:test';
import sharp from 'sharp';
import { FarmError } from '../../protocol/index.ts';
import { imageSize, thumbnail, thumbnailRaw, ThumbnailError, type ImageProblem } from '../../actors/media/index.ts';

/** What `thumbnail()` did with each file in a process run as nobody (uid 65534), for the cases root cannot see. */
function asNobody(paths: string[]): { ok: boolean; uid: number; name?: string; code?: string; path?: string; problem?: string; message?: string }[] {
  const media = pathToFileURL(resolve(import.meta.dirname, '../../actors/media/index.ts')).href;
  const script = `
    const { thumbnail } = await import(${JSON.stringify(media)});
    const out = [];
    for (const path of ${JSON.stringify(paths)}) {
      try {
        await thumbnail(path, { width: 5, height: 5 });
        out.push({ ok: true, uid: process.getuid() });
      } catch (e) {
        out.push({ ok: false, uid: process.getuid(), name: e.name, code: e.code, path: e.path, problem: e.problem, message: e.message });
      }
    }
    console.log(JSON.stringify(out));`;
  const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '--import', 'tsx', '--input-type=module', '-e', script], {
    encoding: 'utf8', timeout: 30_000, cwd: resolve(import.meta.dirname, '../..'),
  });
  assert.equal(r.status, 0, `setpriv (util-linux) ran node as nobody: ${r.error?.message ?? r.stderr}`);
  return JSON.parse(r.stdout) as ReturnType<typeof asNobody>;
}

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'rb-thumb-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

type Rgb = { r: number; g: number; b: number };

/** A solid image of one colour, written as PNG (8- or 16-bit, with or without alpha) or JPEG. */
async function solid(path: string, width: number, height: number, colour: Rgb, opts: { format?: 'png' | 'jpeg'; alpha?: number; bits16?: boolean } = {}): Promise<string> {
  const channels = opts.alpha === undefined ? 3 : 4;
  let img = sharp({ create: { width, height, channels, background: { ...colour, ...(opts.alpha !== undefined ? { alpha: opts.alpha } : {}) } } });
  if (opts.bits16) img = img.toColourspace('rgb16');
  await (opts.format === 'jpeg' ? img.jpeg({ quality: 95 }) : img.png()).toFile(path);
  return path;
}

function near(actual: number, expected: number, tolerance = 6): boolean {
  return Math.abs(actual - expected) <= tolerance;
}

/** Asserts `fn` rejects with a ThumbnailError naming the file, of the given problem, whose message matches `text`. */
async function rejectsWith(fn: () => Promise<unknown>, path: string, problem: ImageProblem, text: RegExp): Promise<void> {
  await assert.rejects(fn, (e: unknown) => {
    assert.ok(e instanceof ThumbnailError, `a ThumbnailError, got ${String(e)}`);
    assert.ok(e instanceof FarmError, 'a FarmError, so the CLI prints it as one');
    assert.equal(e.path, path);
    assert.equal(e.problem, problem);
    assert.ok(e.message.startsWith(`${path}: `), `the message names the file: ${e.message}`);
    assert.match(e.message, text);
    return true;
  });
}

test('thumbnail - a PNG fits inside the box keeping its aspect, up or down, as PNG or JPEG', async (t) => {
  const dir = await tempDir(t);
  const wide = await solid(join(dir, 'wide.png'), 320, 240, { r: 200, g: 30, b: 10 });
  const png = await thumbnail(wide, { width: 100, height: 100 });
  const meta = await sharp(png).metadata();
  assert.equal(meta.format, 'png');
  assert.deepEqual([meta.width, meta.height], [100, 75], 'width-bound: 320×240 into 100×100');
  const { data } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  assert.ok(near(data[0]!, 200) && near(data[1]!, 30) && near(data[2]!, 10), `colour kept: ${[...data.subarray(0, 3)].join(',')}`);

  const jpeg = await thumbnail(wide, { width: 64, height: 20, format: 'jpeg', quality: 70 });
  const jm = await sharp(jpeg).metadata();
  assert.equal(jm.format, 'jpeg');
  assert.deepEqual([jm.width, jm.height], [27, 20], 'height-bound: 320×240 into 64×20');

  const small = await solid(join(dir, 'small.png'), 64, 48, { r: 0, g: 0, b: 255 });
  const up = await sharp(await thumbnail(small, { width: 128, height: 128 })).metadata();
  assert.deepEqual([up.width, up.height], [128, 96], 'a small frame is enlarged to the box');

  const tall = await solid(join(dir, 'tall.png'), 90, 160, { r: 0, g: 255, b: 0 });
  assert.deepEqual(await imageSize(tall), { width: 90, height: 160 });
  const raw = await thumbnailRaw(tall, { width: 100, height: 100 });
  assert.deepEqual([raw.width, raw.height, raw.channels, raw.data.length], [56, 100, 3, 56 * 100 * 3]);
  assert.ok(near(raw.data[1]!, 255) && near(raw.data[0]!, 0), 'raw pixels are RGB');
  await assert.rejects(thumbnail(tall, { width: 0, height: 10 }), RangeError);
});

test('thumbnail - JPEG, 16-bit and alpha PNGs (POV-Ray +FN16 +UA) come out as 8-bit images', async (t) => {
  const dir = await tempDir(t);
  const jpeg = await solid(join(dir, 'f.jpg'), 400, 300, { r: 20, g: 120, b: 220 }, { format: 'jpeg' });
  const fromJpeg = await thumbnailRaw(jpeg, { width: 80, height: 80 });
  assert.deepEqual([fromJpeg.width, fromJpeg.height], [80, 60]);
  assert.ok(near(fromJpeg.data[0]!, 20, 10) && near(fromJpeg.data[2]!, 220, 10), 'JPEG colour kept');

  const deep = await solid(join(dir, 'deep.png'), 64, 48, { r: 255, g: 128, b: 0 }, { bits16: true });
  assert.equal((await sharp(deep).metadata()).depth, 'ushort', 'the fixture really is 16-bit');
  const png = await thumbnail(deep, { width: 32, height: 32 });
  assert.equal((await sharp(png).metadata()).depth, 'uchar');
  const rawDeep = await thumbnailRaw(deep, { width: 32, height: 32 });
  assert.ok(near(rawDeep.data[0]!, 255) && near(rawDeep.data[1]!, 128), `16-bit colour kept: ${[...rawDeep.data.subarray(0, 3)].join(',')}`);

  const half = await solid(join(dir, 'alpha.png'), 40, 40, { r: 255, g: 255, b: 255 }, { alpha: 0.5 });
  assert.equal((await sharp(await thumbnail(half, { width: 20, height: 20 })).metadata()).hasAlpha, true, 'PNG thumbnails keep alpha');
  const flat = await thumbnailRaw(half, { width: 20, height: 20 }, '#000000');
  assert.ok(near(flat.data[0]!, 128, 8), `raw thumbnails are flattened onto the background: ${flat.data[0]}`);
});

test('thumbnail - a missing, empty, non-image, truncated or unreadable file or a directory is refused naming the file and what is wrong', async (t) => {
  const dir = await tempDir(t);
  const box = { width: 50, height: 50 };
  const missing = join(dir, 'frame_0007.png');
  await rejectsWith(() => thumbnail(missing, box), missing, 'missing', /no such file/);
  await rejectsWith(() => imageSize(missing), missing, 'missing', /no such file/);

  const empty = join(dir, 'empty.png');
  await writeFile(empty, '');
  await rejectsWith(() => thumbnail(empty, box), empty, 'empty', /empty file \(0 bytes\)/);

  const text = join(dir, 'notes.png');
  await writeFile(text, 'frame 7 rendered fine\n');
  await rejectsWith(() => thumbnailRaw(text, box), text, 'not-an-image', /not an image \(22 bytes starting 'frame 7 rendered'/);

  const good = await sharp({ create: { width: 200, height: 150, channels: 3, background: '#808080', noise: { type: 'gaussian', mean: 128, sigma: 60 } } }).png().toBuffer();
  const cut = join(dir, 'cut.png');
  await writeFile(cut, good.subarray(0, Math.floor(good.length / 2)));
  await rejectsWith(() => thumbnail(cut, box), cut, 'corrupt', /corrupt or truncated image/);
  const headless = join(dir, 'headless.png');
  await writeFile(headless, good.subarray(0, 30));
  await rejectsWith(() => thumbnail(headless, box), headless, 'corrupt', /corrupt or truncated image/);

  const sub = join(dir, 'sub.png');
  await mkdir(sub);
  await rejectsWith(() => thumbnail(sub, box), sub, 'not-a-file', /is a directory/);

  // a frame the farm's user may not read: root reads anything, so as root (here and in CI) the
  // reading is done by a child process dropped to nobody, beside a readable frame for contrast
  const locked = await solid(join(dir, 'locked.png'), 10, 10, { r: 1, g: 2, b: 3 });
  await chmod(locked, 0o000);
  if (userInfo().uid !== 0) {
    await rejectsWith(() => thumbnail(locked, box), locked, 'unreadable', /permission denied/);
  } else {
    const readable = await solid(join(dir, 'readable.png'), 10, 10, { r: 1, g: 2, b: 3 });
    await chmod(dir, 0o755);
    const seen = asNobody([readable, locked]);
    assert.deepEqual(seen[0], { ok: true, uid: 65534 }, 'nobody reads a readable frame there: the folder is open to it');
    const refused = seen[1]!;
    assert.equal(refused.uid, 65534);
    assert.deepEqual([refused.ok, refused.name, refused.code, refused.path, refused.problem], [false, 'ThumbnailError', 'RB_OUTPUT_FAILED', locked, 'unreadable']);
    assert.equal(refused.message, `${locked}: permission denied`);
  }
});
