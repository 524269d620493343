import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createAdapters, createBlenderAdapter, blenderPrelude, type Progress, type RenderTask } from '../../actors/render-slot/index.ts';
import { FarmError, prepareJob } from '../../protocol/index.ts';

const aTask = (o: Partial<RenderTask> = {}): RenderTask => ({
  renderer: 'blender',
  scene: '/proj/shot/scene.blend',
  frames: [3, 4, 5],
  outputPattern: 'frame_####.png',
  workDir: '/out/.rb-partial/j1.0-a1',
  ...o,
});

const rejects = (fn: () => unknown, code: string, text: RegExp) =>
  assert.throws(fn, (err: unknown) => err instanceof FarmError && err.code === code && text.test(err.message));

// Captured from Debian's Blender 3.4.1 (`blender -b scene.blend … -s 2 -e 3 -a`), Cycles, 4 samples.
const CYCLES_OK = [
  'Blender 3.4.1\nRead blend: /proj/shot/scene.blend\n',
  'Fra:3 Mem:8.93M (Peak 10.31M) | Time:00:00.00 | Mem:0.00M, Peak:0.00M | Scene, ViewLayer | Initializing\n',
  'Fra:3 Mem:9.76M (Peak 10.31M) | Time:00:00.19 | Mem:0.90M, Peak:0.90M | Scene, ViewLayer | Sample 0/4\n',
  'Fra:3 Mem:10.42M (Peak 10.43M) | Time:00:00.24 | Remaining:00:00.15 | Mem:1.57M, Peak:1.57M | Scene, ViewLayer | Sample 1/4\n',
  'Fra:3 Mem:10.72M (Peak 11.31M) | Time:00:00.34 | Mem:1.57M, Peak:1.57M | Scene, ViewLayer | Sample 4/4\n',
  'Fra:3 Mem:10.72M (Peak 11.31M) | Time:00:00.34 | Mem:1.57M, Peak:1.57M | Scene, ViewLayer | Finished\n',
  "Saved: '/out/.rb-partial/j1.0-a1/f_0003.png'\n Time: 00:00.64 (Saving: 00:00.29)\n\n",
  'Fra:4 Mem:9.18M (Peak 11.31M) | Time:00:00.00 | Mem:0.00M, Peak:0.00M | Scene, ViewLayer | Initializing\n',
  'Fra:4 Mem:10.43M (Peak 11.31M) | Time:00:00.05 | Remaining:00:00.13 | Mem:1.58M, Peak:1.58M | Scene, ViewLayer | Sample 2/4\n',
];

test('blender - one process per chunk: the scene, the prelude, the work files, Cycles on the CPU, one thread', () => {
  const a = createBlenderAdapter({ bin: '/opt/blender/blender' });
  const [inv, ...more] = a.plan(aTask({ blender: { device: 'CUDA' } }));
  assert.equal(more.length, 0);
  const argv = inv!.argv;
  assert.deepEqual(argv.slice(0, 4), ['/opt/blender/blender', '-b', '--factory-startup', '/proj/shot/scene.blend']);
  const at = (flag: string) => argv[argv.indexOf(flag) + 1];
  assert.equal(at('--python-exit-code'), '1');
  assert.equal(at('-o'), '/out/.rb-partial/j1.0-a1/f_####');
  assert.equal(at('-F'), 'PNG');
  assert.equal(at('-t'), '1');
  assert.deepEqual([at('-s'), at('-e'), at('-j')], ['3', '5', '1']);
  // the render comes last but for Cycles' own argument
  assert.deepEqual(argv.slice(argv.indexOf('-a')), ['-a', '--', '--cycles-device', 'CUDA']);
  assert.ok(argv.indexOf('--python-expr') < argv.indexOf('-a') && argv.indexOf('-o') < argv.indexOf('-a'));
  assert.equal(inv!.cwd, '/proj/shot');
  assert.deepEqual(inv!.outputs, [3, 4, 5].map((frame) => ({ frame, file: `/out/.rb-partial/j1.0-a1/f_000${frame}.png` })));
  assert.deepEqual(a.plan(aTask())[0]!.argv.slice(-2), ['--cycles-device', 'CPU']);
  assert.equal(a.plan(aTask({ outputPattern: 'x_####.exr' }))[0]!.argv[a.plan(aTask({ outputPattern: 'x_####.exr' }))[0]!.argv.indexOf('-F') + 1], 'OPEN_EXR');
  assert.equal(a.plan(aTask({ frames: [12345] }))[0]!.outputs[0]!.file, '/out/.rb-partial/j1.0-a1/f_12345.png');
});

test('blender - bad tasks are refused naming what is wrong', () => {
  const a = createBlenderAdapter();
  rejects(() => a.plan(aTask({ outputPattern: 'frame_####.gif' })), 'RB_BAD_JOB', /blender cannot write '\.gif' files .*\.png/);
  rejects(() => a.plan(aTask({ frames: [1, 3] })), 'RB_BAD_JOB', /consecutive frames, got 1 then 3/);
  rejects(() => a.plan(aTask({ scene: 'scene.blend' })), 'RB_BAD_JOB', /must be an absolute path/);
  assert.equal(createAdapters()('blender').name, 'blender');
});

test('blender - the prelude fails on missing images, then applies the job\'s settings; numbers only, never the job\'s text', () => {
  const none = blenderPrelude({});
  assert.match(none, /missing = sorted/);
  assert.match(none, /if missing: raise RuntimeError/);
  assert.doesNotMatch(none, /resolution_x|samples|render\.engine =/);
  const all = blenderPrelude({ resolution: { width: 160, height: 120 }, blender: { engine: 'eevee', samples: 8, denoise: false } });
  for (const line of ["s.render.engine = 'BLENDER_EEVEE'", 's.render.resolution_x = 160', 's.render.resolution_y = 120', 's.render.resolution_percentage = 100', 's.eevee.taa_render_samples = 8', 's.cycles.samples = 8', 's.cycles.use_denoising = False']) {
    assert.ok(all.includes(line), line);
  }
});

test('blender - progress from Fra: lines (Cycles samples, Eevee samples), frames done from Saved: lines', () => {
  const seen: Progress[] = [];
  const p = createBlenderAdapter().parser({ argv: [], cwd: '/', frames: [3, 4, 5], outputs: [] }, (x) => seen.push(x));
  for (const chunk of CYCLES_OK) p.push('stdout', chunk);
  p.end();
  assert.deepEqual(seen, [{ frame: 3, percent: 0 }, { frame: 3, percent: 25 }, { frame: 3, percent: 100 }, { frame: 4, percent: 0 }, { frame: 4, percent: 50 }]);
  assert.deepEqual(p.finishedFrames(), [3]);
  const eevee: Progress[] = [];
  const q = createBlenderAdapter().parser({ argv: [], cwd: '/', frames: [1], outputs: [] }, (x) => eevee.push(x));
  q.push('stdout', 'Fra:1 Mem:10.86M (Peak 11.98M) | Time:00:02.62 | Syncing Plane\nFra:1 Mem:10.95M (Peak 11.98M) | Time:00:04.27 | Rendering 1 / 4 samples\nFra:1 Mem:10.91M (Peak 11.98M) | Time:00:16.04 | Rendering 4 / 4 samples\n');
  assert.deepEqual(eevee, [{ frame: 1, percent: 0 }, { frame: 1, percent: 25 }, { frame: 1, percent: 100 }]);
});

test('blender - failures are placed: a missing .blend or texture is input this host cannot see, a Python error the scene\'s, no denoiser the host\'s', () => {
  const parse = (text: string) => {
    const p = createBlenderAdapter().parser({ argv: [], cwd: '/', frames: [1], outputs: [] }, () => {});
    p.push('stdout', text);
    p.end();
    return p;
  };
  const gone = parse("Blender 3.4.1\nError: Cannot read file '/proj/nope.blend': No such file or directory\n\nBlender quit\n");
  assert.deepEqual(gone.diagnose!('host n1'), { code: 'RB_INPUT_NOT_FOUND', message: "blender: Error: Cannot read file '/proj/nope.blend': No such file or directory (the scene cannot be read on host n1)" });
  const junk = parse("Blender 3.4.1\nError: File format is not supported in file '/proj/bad.blend'\n\nBlender quit\n");
  assert.equal(junk.diagnose!('host n1')?.code, 'RB_SCENE_ERROR');
  assert.match(junk.errorText(), /File format is not supported/);
  const python = parse("Read blend: /proj/s.blend\nError: Python: Traceback (most recent call last):\n  File \"<string>\", line 1, in <module>\nValueError: boom\n\nError: script failed, expr: 'x', exiting.\n");
  assert.deepEqual(python.diagnose!('host n1'), { code: 'RB_SCENE_ERROR', message: 'blender: Python: ValueError: boom' });
  assert.equal(python.errorText(), 'Python: ValueError: boom');
  const missing = parse('renderbus: missing file /proj/tex/wood.png\nrenderbus: missing file /proj/tex/floor.png\nError: Python: Traceback (most recent call last):\nRuntimeError: renderbus: the scene reads 2 missing file(s)\n');
  const d = missing.diagnose!('host n1')!;
  assert.equal(d.code, 'RB_INPUT_NOT_FOUND');
  assert.match(d.message, /files that host n1 cannot see: \/proj\/tex\/wood\.png, \/proj\/tex\/floor\.png \(send them as support files/);
  const oidn = parse('Fra:1 Mem:9.76M (Peak 10.31M) | Time:00:00.23 | Mem:0.90M, Peak:0.90M | Scene, ViewLayer | Build without OpenImageDenoiser\nError: Build without OpenImageDenoiser\n');
  assert.equal(oidn.diagnose!('host n1')?.code, 'RB_RENDERER_MISSING');
  assert.match(oidn.diagnose!('host n1')!.message, /"denoise": false/);
  assert.equal(parse('Fra:1 | Sample 1/4\n').diagnose!('host n1'), undefined);
});

test('blender - a .blend scene means renderer blender, which hosts must offer; its settings go with no other renderer', () => {
  const p = prepareJob({ name: 'b', scene: '/proj/s.blend', frames: '1-2', output: { dir: '/out' } });
  assert.equal(p.renderer, 'blender');
  assert.deepEqual(p.requirements.packages, ['blender']);
  assert.deepEqual(prepareJob({ name: 'b', scene: '/proj/s.blend', frames: '1', output: { dir: '/out' }, requirements: { packages: ['blender@3.*'] } }).requirements.packages, ['blender@3.*']);
  assert.throws(() => prepareJob({ name: 'b', scene: '/proj/s.pov', frames: '1', output: { dir: '/out' }, blender: { samples: 4 } }), /blender.*only go with renderer 'blender', not 'povray'/);
});

test('blender - a scene\'s own scripts run only when the job says so; one that fails as the scene loads fails the task though Blender exits 0', () => {
  const a = createBlenderAdapter();
  assert.ok(!a.plan(aTask())[0]!.argv.includes('-y'));
  const argv = a.plan(aTask({ blender: { scripts: true } }))[0]!.argv;
  assert.ok(argv.indexOf('-y') > 0 && argv.indexOf('-y') < argv.indexOf('/proj/shot/scene.blend'), '-y before the file');
  const p = a.parser({ argv: [], cwd: '/', frames: [1], outputs: [] }, () => {});
  p.push('stdout', 'Read blend: /proj/rig.blend\nError: Python: Traceback (most recent call last):\n  File "/proj/rig.blend/rig.py", line 1, in <module>\nValueError: the rig script is broken\n');
  p.push('stdout', "Fra:1 Mem:10.72M | Time:00:00.34 | Scene, ViewLayer | Sample 4/4\nSaved: '/w/f_0001.png'\n");
  p.end();
  assert.deepEqual(p.failureDespiteExit0!('host n1'), { code: 'RB_SCENE_ERROR', message: "blender: the scene's Python failed: ValueError: the rig script is broken (in /proj/rig.blend/rig.py)" });
  const clean = a.parser({ argv: [], cwd: '/', frames: [1], outputs: [] }, () => {});
  clean.push('stdout', "Read blend: /proj/s.blend\nscripts disabled for \"/proj/s.blend\", skipping 'rig.py'\nSaved: '/w/f_0001.png'\n");
  assert.equal(clean.failureDespiteExit0!('host n1'), undefined);
});
