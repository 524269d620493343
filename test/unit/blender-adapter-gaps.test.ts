import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BlenderParser, blenderPercent, createBlenderAdapter, type Progress } from '../../actors/render-slot/index.ts';

// Captured from Debian's Blender 3.4.1: Cycles, 4 samples, 256×128 in tiles of 64 (`use_auto_tile`)
const TILED = [
  'Fra:1 Mem:10.38M (Peak 10.53M) | Time:00:00.17 | Remaining:00:00.03 | Mem:0.92M, Peak:0.93M | Scene, ViewLayer | Rendered 4/8 Tiles, Sample 4/4',
  'Fra:1 Mem:10.39M (Peak 10.53M) | Time:00:00.17 | Remaining:00:00.02 | Mem:0.93M, Peak:0.93M | Scene, ViewLayer | Rendered 5/8 Tiles, Sample 1/4',
  'Fra:1 Mem:10.39M (Peak 10.53M) | Time:00:00.19 | Remaining:00:00.01 | Mem:0.93M, Peak:0.93M | Scene, ViewLayer | Rendered 7/8 Tiles, Sample 4/4',
  'Fra:1 Mem:10.38M (Peak 10.53M) | Time:00:00.20 | Mem:0.92M, Peak:0.93M | Scene, ViewLayer | Finished',
];

test('blender progress - a tiled Cycles render counts its tiles; a line with only Cycles\' estimate reads Time against Remaining', () => {
  assert.deepEqual(TILED.map(blenderPercent), [62, 65, 100, undefined]);
  // the tile's own samples alone would go 100, 25, 100: the frame's progress does not go back
  assert.equal(blenderPercent('Fra:3 Mem:10.42M (Peak 10.43M) | Time:00:00.24 | Remaining:00:00.15 | Mem:1.57M, Peak:1.57M | Scene, ViewLayer | Sample 1/4'), 25);
  assert.equal(blenderPercent('Fra:3 Mem:10.42M | Time:01:00.00 | Remaining:03:00.00 | Mem:1.57M | Scene, ViewLayer | Updating Images'), 25);
  assert.equal(blenderPercent('Fra:3 Mem:10.42M | Time:1:00:00.00 | Remaining:1:00:00.00 | Scene, ViewLayer | Denoising'), 50);
  assert.equal(blenderPercent('Fra:1 Mem:11.06M (Peak 12.18M) | Time:00:05.54 | Rendering 26 / 64 samples'), 40);
  const seen: Progress[] = [];
  const p = new BlenderParser([1], (e) => seen.push(e));
  p.push('stdout', `${TILED.join('\n')}\n`);
  p.end();
  assert.deepEqual(seen.map((e) => e.percent), [62, 65, 100]);
});

test('blender formats - each output extension is a format name Blender\'s -F takes (TGA: with TARGA it writes a PNG)', () => {
  const a = createBlenderAdapter();
  const format = (pattern: string) => {
    const argv = a.plan({ renderer: 'blender', scene: '/p/s.blend', frames: [1], outputPattern: pattern, workDir: '/o/w' })[0]!.argv;
    return argv[argv.indexOf('-F') + 1];
  };
  // Blender 3.4's list (`blender --help`, -F): TGA RAWTGA JPEG IRIS IRIZ AVIRAW AVIJPEG PNG BMP HDR TIFF OPEN_EXR…
  assert.deepEqual(['f.png', 'f.jpg', 'f.exr', 'f.tif', 'f.tga', 'f.bmp', 'f.hdr'].map(format), ['PNG', 'JPEG', 'OPEN_EXR', 'TIFF', 'TGA', 'BMP', 'HDR']);
});

test('blender device - a host without the job\'s Cycles device is its missing part (RB_RENDERER_MISSING, the device named), not a failed render', () => {
  const [inv] = createBlenderAdapter().plan({ renderer: 'blender', scene: '/p/s.blend', frames: [1, 2], outputPattern: 'f_####.png', workDir: '/o/w', blender: { device: 'CUDA' } });
  const p = createBlenderAdapter().parser(inv!, () => {});
  // Debian's 3.4.1 on a host without CUDA (`-s 1 -e 2 -a -- --cycles-device CUDA`): exit 1
  p.push('stdout', 'Blender 3.4.1\nFra:1 Mem:9.34M (Peak 9.42M) | Time:00:00.00 | Mem:0.00M, Peak:0.00M | Scene | Initializing\n');
  p.push('stderr', 'Error: Found no Cycles device of the specified type\n\nBlender quit\n');
  p.end();
  assert.deepEqual(p.diagnose!('host node-3'), { code: 'RB_RENDERER_MISSING', message: 'blender: Cycles found no CUDA device on host node-3 (the job\'s "blender": {"device": "CUDA"}): a host with one renders it' });
});
