import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import sharp from 'sharp';
import { CLI, TestFarm } from '../helpers/farm.ts';
import { makeContactSheet, sheetLayout, svgTextRenders, type PlacedTile } from '../../tools/cli/contact-sheet.ts';
import { run } from '../../tools/cli/main.ts';

const RENDERER = resolve(import.meta.dirname, '../fixtures/contact-sheet/solid-frame.mjs');
type Rgb = readonly [number, number, number];
const COLOURS: Record<number, Rgb> = { 1: [230, 40, 40], 2: [40, 200, 60], 3: [40, 80, 230], 5: [240, 220, 40] };
const BACKGROUND: Rgb = [0x1e, 0x1e, 0x1e];
const PLACEHOLDER: Rgb = [0x3a, 0x3a, 0x3a];

/** Runs one CLI command against the test farm, in its directory; its exit code and output. */
function rb(farm: TestFarm, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done) => {
    const child = execFile(process.execPath, [CLI, ...args, '--nats', farm.url, '--site', farm.site, '--creds', farm.operatorCreds], { encoding: 'utf8', timeout: 30_000, cwd: farm.dir }, (_err, stdout, stderr) => {
      done({ code: child.exitCode, stdout, stderr });
    });
  });
}

/** A decoded image and its pixels. */
async function decode(path: string) {
  const { data, info } = await sharp(path).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const at = (x: number, y: number): Rgb => {
    const i = (y * info.width + x) * 3;
    return [data[i]!, data[i + 1]!, data[i + 2]!];
  };
  /** Pixels in the rectangle further than `tolerance` (per channel) from `rgb`. */
  const differing = (x: number, y: number, w: number, h: number, rgb: Rgb, tolerance = 24) => {
    let n = 0;
    for (let yy = y; yy < y + h; yy++) for (let xx = x; xx < x + w; xx++) if (at(xx, yy).some((v, k) => Math.abs(v - rgb[k]!) > tolerance)) n++;
    return n;
  };
  return { width: info.width, height: info.height, at, differing };
}

function near(actual: Rgb, expected: Rgb, tolerance = 8): boolean {
  return actual.every((v, k) => Math.abs(v - expected[k]!) <= tolerance);
}

function centre(t: PlacedTile): [number, number] {
  return [t.x + Math.floor(t.width / 2), t.y + Math.floor(t.height / 2)];
}

test('contact-sheet - every frame as a thumbnail in frame order, labelled; failed, unreadable and missing frames as placeholders; clear errors', async (t) => {
  const farm = await TestFarm.start();
  t.after(() => farm.stop());
  await farm.registry();
  await farm.scheduler();
  await farm.renderServer('box', 2);
  const scene = join(farm.dir, 'colours.json');
  await writeFile(scene, JSON.stringify(COLOURS));
  const outDir = join(farm.dir, 'out');
  const jobId = await farm.submit({
    name: 'dailies', scene, renderer: 'command', frames: '1-5', resolution: '64x48', maxAttempts: 1,
    command: `${process.execPath} ${RENDERER} {scene} {frame} {output} {width} {height}`,
    output: { dir: outDir, pattern: 'f_####.png' },
  });
  // a job no host can take: nothing done yet
  const waiting = await farm.submit({ name: 'waiting', scene, renderer: 'command', frames: '1-2', requirements: { packages: ['nosuch@1'] }, command: 'true', output: { dir: join(farm.dir, 'waiting') } });
  await farm.waitJob(jobId, 'failed', 30_000); // frame 4 has no colour: it fails, the rest are done

  // independent commands run side by side: each CLI start costs a second
  const sheetPath = join(farm.dir, 'sheet.png');
  const jpegPath = join(farm.dir, 'dailies', 'sheet.JPG');
  const [made, jpeg, here, unknown, nothing] = await Promise.all([
    rb(farm, ['contact-sheet', jobId, '--out', sheetPath, '--columns', '3', '--width', '120', '--json']),
    rb(farm, ['contact-sheet', jobId, '--out', jpegPath]),
    rb(farm, ['contact-sheet', jobId]),
    rb(farm, ['contact-sheet', 'jnosuchjob']),
    rb(farm, ['contact-sheet', waiting]),
  ]);
  assert.equal(made.code, 0, made.stderr);
  const info = JSON.parse(made.stdout) as { path: string; frames: number; done: number; width: number; height: number; columns: number; unreadable: unknown[]; tiles: PlacedTile[] };
  assert.equal(info.path, sheetPath);
  assert.deepEqual([info.frames, info.done, info.columns, info.unreadable.length], [5, 4, 3, 0]);
  const L = sheetLayout(5, 120, 64 / 48, 3);
  assert.deepEqual([info.width, info.height], [L.width, L.height]);
  assert.deepEqual([L.width, L.height, L.tileHeight], [376, 252, 90], '3 tiles of 120×90 across, 2 rows, with gaps, labels and the title');
  const sheet = await decode(sheetPath);
  assert.deepEqual([sheet.width, sheet.height], [info.width, info.height], 'the file is as large as reported');

  // frame order, left to right then the next row
  assert.deepEqual(info.tiles.map((x) => [x.frame, x.state]), [[1, 'done'], [2, 'done'], [3, 'done'], [4, 'failed'], [5, 'done']]);
  const [t1, t2, t3, t4, t5] = info.tiles as [PlacedTile, PlacedTile, PlacedTile, PlacedTile, PlacedTile];
  assert.ok(t1.x < t2.x && t2.x < t3.x && t1.y === t3.y, 'first row: 1, 2, 3');
  assert.ok(t4.x === t1.x && t4.y > t1.y && t5.y === t4.y, 'second row: 4, 5');
  for (const tile of [t1, t2, t3, t5]) {
    const expected = COLOURS[tile.frame]!;
    for (const [x, y] of [centre(tile), [tile.x + 2, tile.y + 2], [tile.x + tile.width - 3, tile.y + tile.height - 3]] as const) {
      assert.ok(near(sheet.at(x, y), expected), `frame ${tile.frame} at ${x},${y} is ${sheet.at(x, y).join(',')}, expected ${expected.join(',')}`);
    }
    // the label strip under the thumbnail holds the frame number: some pixels are not background
    const label = sheet.differing(tile.x, tile.y + tile.height, tile.width, L.labelHeight, BACKGROUND);
    assert.ok(label >= 10, `frame ${tile.frame}'s label was drawn (${label} pixels differ from the background)`);
    assert.ok(label < (tile.width * L.labelHeight) / 2, 'and the label is text, not a filled strip');
  }
  assert.ok(near(sheet.at(t4.x + 2, t4.y + 2), PLACEHOLDER), `the failed frame is a grey placeholder: ${sheet.at(t4.x + 2, t4.y + 2).join(',')}`);
  assert.ok(sheet.differing(t4.x, t4.y, t4.width, t4.height, PLACEHOLDER) >= 20, 'with its state written on it');
  assert.ok(sheet.differing(t4.x, t4.y + t4.height, t4.width, L.labelHeight, BACKGROUND) >= 10, 'and its frame number under it');
  assert.ok(sheet.differing(0, 0, L.width, L.titleHeight, BACKGROUND) >= 50, 'the title line was drawn');
  const gapX = t1.x + t1.width + 1;
  assert.ok(near(sheet.at(gapX, t1.y + 5), BACKGROUND), 'tiles stand apart on the background');

  // JPEG by the name, in a directory made for it; a human summary
  assert.equal(jpeg.code, 0, jpeg.stderr);
  const byDefault = sheetLayout(5, 240, 64 / 48, 4); // --width 240 and 4 columns by default
  assert.equal(jpeg.stdout, `wrote ${jpegPath}: 5 frames (4 done, 1 failed), 4 columns, ${byDefault.width}×${byDefault.height} px\n`);
  assert.equal((await sharp(jpegPath).metadata()).format, 'jpeg');

  // default: in the current directory, named after the job; --out DIR: that name in DIR
  const name = `dailies-${jobId}-contact-sheet.png`;
  assert.equal(here.code, 0, here.stderr);
  assert.equal((await sharp(join(farm.dir, name)).metadata()).format, 'png', `${name} written in the current directory: ${here.stdout}`);

  // a done frame whose file went bad is listed, and the sheet is still written with a placeholder
  await writeFile(join(outDir, 'f_0002.png'), 'not a png\n');
  await rm(join(outDir, 'f_0003.png'));
  const broken = join(farm.dir, 'broken.png');
  const [partial, inDir] = await Promise.all([
    rb(farm, ['contact-sheet', jobId, '--out', broken, '--columns', '3', '--width', '120']),
    rb(farm, ['contact-sheet', jobId, '--out', join(farm.dir, 'dailies')]),
  ]);
  assert.equal(partial.code, 1, 'unreadable frames make it fail');
  assert.match(partial.stderr, /2 done frames could not be read/);
  assert.match(partial.stderr, /frame 2: .*out\/f_0002\.png: not an image \(10 bytes starting 'not a png\.'/);
  assert.match(partial.stderr, /frame 3: .*out\/f_0003\.png: no such file/);
  const b = await decode(broken);
  assert.ok(near(b.at(t2.x + 2, t2.y + 2), PLACEHOLDER) && near(b.at(t3.x + 2, t3.y + 2), PLACEHOLDER), 'placeholders for the unreadable frames');
  assert.ok(near(b.at(...centre(t1)), COLOURS[1]!), 'the readable frames are still there');
  assert.equal(inDir.code, 1, 'the same frames are unreadable for it');
  assert.ok(existsSync(join(farm.dir, 'dailies', name)), `--out DIR writes the default name in it: ${inDir.stdout}`);

  // errors
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /^renderbus contact-sheet: no job 'jnosuchjob'/);
  assert.equal(nothing.code, 1);
  assert.match(nothing.stderr, new RegExp(`job ${waiting} \\(waiting\\) has no done frames yet \\(queued: 2 queued, 0 running, 0 failed\\): nothing to put on a contact sheet`));
  assert.ok(!existsSync(join(farm.dir, `waiting-${waiting}-contact-sheet.png`)), 'and no sheet is written');
});

/** An Io that keeps what was written. */
function captureIo() {
  const chunks = { out: [] as string[], err: [] as string[] };
  const sink = (into: string[]) => new Writable({ write: (chunk: Buffer, _enc, cb) => void (into.push(chunk.toString()), cb()) });
  return { stdout: sink(chunks.out), stderr: sink(chunks.err), err: () => chunks.err.join('') };
}

test('contact-sheet - bad --columns, --width or --out are usage errors naming the option, before anything connects', async () => {
  const cases: [string[], RegExp][] = [
    [['--columns', 'x'], /--columns: 'x' is not a whole number \(1-200\)/],
    [['--columns', '0'], /--columns: 0 is out of range \(1-200\)/],
    [['--width', '8'], /--width: 8 is out of range \(16-4096\)/],
    [['--width', '12.5'], /--width: '12.5' is not a whole number/],
    [['--out', 'sheet.gif'], /--out: 'sheet\.gif' must end in \.png or \.jpg/],
  ];
  for (const [args, text] of cases) {
    const io = captureIo();
    // no farm: a usage error must come before any connection is tried
    const code = await run(['node', 'renderbus', 'contact-sheet', 'j1', ...args, '--nats', 'nats://127.0.0.1:1'], io);
    assert.equal(code, 2, `${args.join(' ')}: ${io.err()}`);
    assert.match(io.err(), text);
    assert.match(io.err(), /see 'renderbus contact-sheet --help'/);
  }
});

test('contact-sheet - labels are drawn with built-in glyphs when no font renders', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'rb-sheet-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  t.diagnostic(`SVG text renders on this machine: ${await svgTextRenders()}`);
  const frame = join(dir, 'f.png');
  await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 0, g: 0, b: 255 } } }).png().toFile(frame);
  const input = { title: 'shot010 | job j1', tiles: [{ frame: 1234567890, state: 'done', path: frame }, { frame: 8, state: 'queued' }], tileWidth: 160, format: 'png' } as const;
  const sheets: Partial<Record<'svg' | 'bitmap', Buffer>> = {};
  for (const text of ['svg', 'bitmap'] as const) {
    if (text === 'svg' && !(await svgTextRenders())) continue;
    const sheet = await makeContactSheet({ ...input, tiles: [...input.tiles], text });
    const path = join(dir, `${text}.png`);
    await writeFile(path, sheet.data);
    sheets[text] = sheet.data;
    const img = await decode(path);
    const L = sheetLayout(2, 160, 64 / 48, 2);
    const [a, q] = sheet.tiles as [PlacedTile, PlacedTile];
    const label = img.differing(a.x, a.y + a.height, a.width, L.labelHeight, BACKGROUND);
    assert.ok(label >= 40, `${text}: the frame number was drawn (${label} pixels)`);
    assert.ok(img.differing(q.x, q.y, q.width, q.height, PLACEHOLDER) >= 20, `${text}: the state was drawn on the placeholder`);
    assert.ok(img.differing(0, 0, L.width, L.titleHeight, BACKGROUND) >= 50, `${text}: the title was drawn`);
  }
  assert.ok(sheets.svg === undefined || !sheets.svg.equals(sheets.bitmap!), 'the two ways of drawing differ');

  // a process whose fontconfig knows no font (pango would draw a box for every character) picks the glyphs itself
  const noFonts = join(dir, 'no-fonts.conf');
  await writeFile(noFonts, `<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "fonts.dtd">\n<fontconfig><cachedir>${join(dir, 'fc-cache')}</cachedir></fontconfig>\n`);
  const sheetModule = resolve(import.meta.dirname, '../../tools/cli/contact-sheet.ts');
  const script = `import { writeFileSync } from 'node:fs';
    import { makeContactSheet, svgTextRenders } from ${JSON.stringify(sheetModule)};
    const sheet = await makeContactSheet({ ...JSON.parse(process.argv[1]), text: 'auto' });
    writeFileSync(process.argv[2], sheet.data);
    console.log(JSON.stringify({ svg: await svgTextRenders() }));`;
  const out = join(dir, 'auto.png');
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, JSON.stringify(input), out], { encoding: 'utf8', timeout: 20_000, env: { ...process.env, FONTCONFIG_FILE: noFonts } });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { svg: false }, 'no legible SVG text without fonts');
  assert.ok((await readFile(out)).equals(sheets.bitmap!), 'the sheet is the one drawn with the built-in glyphs');
});
