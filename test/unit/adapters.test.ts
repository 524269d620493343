import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  createAdapters, createCommandAdapter, createPovrayAdapter, LineSplitter, parseTemplate,
  type Progress, type RenderTask,
} from '../../actors/render-slot/index.ts';
import { FarmError } from '../../protocol/index.ts';

const aTask = (o: Partial<RenderTask> = {}): RenderTask => ({
  renderer: 'povray',
  scene: '/scenes/shot/scene.pov',
  frames: [3, 4, 5, 6, 7],
  resolution: { width: 64, height: 48 },
  outputPattern: 'frame_####.png',
  workDir: '/out/.rb-partial/j1.0-a1',
  ...o,
});

const rejects = (fn: () => unknown, code: string, text: RegExp) =>
  assert.throws(fn, (err: unknown) => err instanceof FarmError && err.code === code && text.test(err.message));

// Captured from `povray +It.pov +KFI3 +KFF7 +KI3 +KF7 +SF3 +EF7 ... +V 2>err` (POV-Ray 3.7.0.10, Debian 12).
const POV_OK = [
  'povray: cannot open the user configuration file /root/.povray/3.7/povray.conf: No such file or directory\n',
  'Persistence of Vision(tm) Ray Tracer Version 3.7.0.10.unofficial (g++ @\n x86_64-pc-linux-gnu)\n',
  ' amd64 / i386 Build Daemon (x86-ubc-01) <buildd_amd64-x86-ubc-01@buildd.debian.o\nrg> for Debian <www.debian.org>\n',
  '\nRendering frame 1 of 5\n\nRendering frame 1 of 5\n',
  '==== [Parsing...] ==========================================================\n\n\n',
  '==== [Rendering...] ========================================================\n',
  'Rendered 1024 of 3072 pixels (33%)\rRendered 2048 of 3072 pixels (66%)\rRendered 2560 of 3072 pixels (83%)\rRendered 3072 of 3072 pixels (100%)\r\n',
  'Rendering frame 2 of 5\n==== [Parsing...] ==========================================================\n\n\n',
  '==== [Rendering...] ========================================================\n',
  'Rendered 1024 of 3072 pixels (33%)\rRendered 2048 of 307',
  '2 pixels (66%)\r',
];
const POV_PARSE_ERROR =
  '==== [Parsing...] ==========================================================\n\n\n' +
  "File 'bad.pov' line 3: Parse Error: No matching } in 'sphere', undeclared\n" +
  " identifier 'this_is_not_a_keyword_at_all_and_it_is_very_long_to_force_wrapping_\n" +
  "of_the_error_message_xx' found instead\n" +
  'Fatal error in parser: Cannot parse input.\nRender failed\n\n';
const POV_MISSING_INCLUDE =
  '==== [Parsing...] ==========================================================\n' +
  "File 'inc.pov' line 1: Possible Parse Error: Cannot find file 'nothere.inc',\n" +
  ' even after trying to append file type extension.\n' +
  "File 'inc.pov' line 1: Parse Error: Cannot open include file nothere.inc.\n" +
  'Fatal error in parser: Cannot parse input.\nRender failed\n';
const POV_NO_OUTPUT_DIR = 'Cannot create render state output file.\nCannot create render state output file.\n\nRender failed\n';

test('adapters - povray renders a chunk in one process with clock equal to the frame number', () => {
  const [inv, ...rest] = createPovrayAdapter().plan(aTask());
  assert.equal(rest.length, 0);
  assert.equal(inv!.cwd, '/scenes/shot');
  assert.deepEqual(inv!.argv, [
    'povray', '+I"/scenes/shot/scene.pov"', '+L"/scenes/shot"', '+O"/out/.rb-partial/j1.0-a1/f.png"', '+FN',
    '+KFI3', '+KFF8', '+KI3', '+KF8', '+SF3', '+EF7', '-D', '-GS', '-GR', '+V', '+W64', '+H48', '+WT1',
  ]);
  assert.deepEqual(inv!.frames, [3, 4, 5, 6, 7]);
  assert.deepEqual(inv!.outputs.map((x) => x.file), [3, 4, 5, 6, 7].map((f) => `/out/.rb-partial/j1.0-a1/f${f}.png`));
});

test('adapters - povray names work files with the digits of the final frame, single frames included', () => {
  const one = createPovrayAdapter().plan(aTask({ frames: [9] }))[0]!;
  assert.ok(one.argv.includes('+KFI9') && one.argv.includes('+KFF10') && one.argv.includes('+KI9') && one.argv.includes('+KF10'));
  assert.deepEqual(one.outputs, [{ frame: 9, file: '/out/.rb-partial/j1.0-a1/f09.png' }]);
  const big = createPovrayAdapter().plan(aTask({ frames: [98, 99], outputPattern: 'x_#.jpeg' }))[0]!;
  assert.ok(big.argv.includes('+FJ') && big.argv.includes('+O"/out/.rb-partial/j1.0-a1/f.jpg"'));
  assert.deepEqual(big.outputs.map((x) => x.file), ['/out/.rb-partial/j1.0-a1/f098.jpg', '/out/.rb-partial/j1.0-a1/f099.jpg']);
});

test('adapters - povray defaults to 320x240 and refuses what it cannot render', () => {
  const inv = createPovrayAdapter({ bin: '/opt/pov/bin/povray' }).plan(aTask({ resolution: undefined }))[0]!;
  assert.equal(inv.argv[0], '/opt/pov/bin/povray');
  assert.ok(inv.argv.includes('+W320') && inv.argv.includes('+H240'));
  const pov = createPovrayAdapter();
  rejects(() => pov.plan(aTask({ frames: [1, 2, 4] })), 'RB_BAD_JOB', /consecutive frames, got 2 then 4/);
  rejects(() => pov.plan(aTask({ outputPattern: 'f_##.tiff' })), 'RB_BAD_JOB', /cannot write '\.tiff'.*\.png/);
  rejects(() => pov.plan(aTask({ scene: 'rel/scene.pov' })), 'RB_BAD_JOB', /must be an absolute path/);
  rejects(() => pov.plan(aTask({ scene: '/a"b/scene.pov' })), 'RB_BAD_JOB', /contains '"'/);
});

test('adapters - povray parser follows frames and pixel progress across \\r and split chunks', () => {
  const inv = createPovrayAdapter().plan(aTask())[0]!;
  const seen: Progress[] = [];
  const p = createPovrayAdapter().parser(inv, (x) => seen.push(x));
  for (const chunk of POV_OK) p.push('stderr', chunk);
  p.end();
  assert.deepEqual(seen, [
    { frame: 3, percent: 0 }, { frame: 3, percent: 33 }, { frame: 3, percent: 66 }, { frame: 3, percent: 83 }, { frame: 3, percent: 100 },
    { frame: 4, percent: 0 }, { frame: 4, percent: 33 }, { frame: 4, percent: 66 },
  ]);
  assert.deepEqual(p.finishedFrames(), [3]);
});

test('adapters - povray parser joins a wrapped parse error into one message', () => {
  const inv = createPovrayAdapter().plan(aTask())[0]!;
  const p = createPovrayAdapter().parser(inv, () => {});
  p.push('stderr', POV_OK[0]! + POV_PARSE_ERROR);
  p.end();
  assert.equal(
    p.errorText(),
    "File 'bad.pov' line 3: Parse Error: No matching } in 'sphere', undeclared identifier 'this_is_not_a_keyword_at_all_and_it_is_very_long_to_force_wrapping_of_the_error_message_xx' found instead",
  );
  assert.deepEqual(p.finishedFrames(), []);
});

test('adapters - povray parser prefers the real parse error over warnings, and reports other failures', () => {
  const inv = createPovrayAdapter().plan(aTask())[0]!;
  const inc = createPovrayAdapter().parser(inv, () => {});
  inc.push('stderr', POV_MISSING_INCLUDE);
  assert.equal(inc.errorText(), "File 'inc.pov' line 1: Parse Error: Cannot open include file nothere.inc.");
  const out = createPovrayAdapter().parser(inv, () => {});
  out.push('stderr', POV_NO_OUTPUT_DIR);
  assert.equal(out.errorText(), 'Cannot create render state output file.');
});

test('adapters - command template splits like a shell and substitutes tokens inside arguments', () => {
  const task = aTask({ renderer: 'command', frames: [7, 8], command: 'kick -i {scene} -o {output} -res {width} {height} -frame={frame:4} -range {first}-{last}', scene: '/s/my scene.ass' });
  const invs = createCommandAdapter().plan(task);
  assert.equal(invs.length, 2);
  assert.deepEqual(invs[0]!.argv, ['kick', '-i', '/s/my scene.ass', '-o', '/out/.rb-partial/j1.0-a1/frame_0007.png', '-res', '64', '48', '-frame=0007', '-range', '7-8']);
  assert.deepEqual(invs[1]!.outputs, [{ frame: 8, file: '/out/.rb-partial/j1.0-a1/frame_0008.png' }]);
  assert.equal(invs[1]!.cwd, '/s');
});

test('adapters - command without {frame} or {output} runs once for the task', () => {
  const whole = createCommandAdapter().plan(aTask({ renderer: 'command', command: "blender -b {scene} -o '{outdir}/frame_####' -s {first} -e {last} -a" }));
  assert.equal(whole.length, 1);
  assert.deepEqual(whole[0]!.argv, ['blender', '-b', '/scenes/shot/scene.pov', '-o', '/out/.rb-partial/j1.0-a1/frame_####', '-s', '3', '-e', '7', '-a']);
  assert.deepEqual(whole[0]!.outputs.map((o) => o.frame), [3, 4, 5, 6, 7]);
  const bare = createCommandAdapter().plan(aTask({ renderer: 'command', command: 'true' }));
  assert.equal(bare.length, 1);
  assert.deepEqual(bare[0]!.outputs, []);
});

test('adapters - command values cannot inject arguments or shell code', () => {
  const evil = '/s/x; rm -rf ~ $(reboot) `id`.pov';
  const direct = createCommandAdapter().plan(aTask({ renderer: 'command', command: 'render {scene}', scene: evil, frames: [1] }))[0]!;
  assert.deepEqual(direct.argv, ['render', evil]);
  const viaSh = createCommandAdapter().plan(aTask({ renderer: 'command', command: "sh -c 'render {scene} > {output}'", scene: evil, frames: [1] }))[0]!;
  assert.equal(viaSh.argv.length, 3);
  assert.equal(viaSh.argv[2], `render '${evil}' > /out/.rb-partial/j1.0-a1/frame_0001.png`);
  const t = parseTemplate('bash -ec "echo {frame}" {scene}');
  assert.deepEqual([...t.scripts], [2]);
});

test('adapters - command templates that need a shell, name unknown tokens or are empty are refused', () => {
  const c = createCommandAdapter();
  rejects(() => c.plan(aTask({ renderer: 'command', command: 'render {scene} | tee log' })), 'RB_BAD_JOB', /shell operator '\|'.*sh -c/);
  rejects(() => c.plan(aTask({ renderer: 'command', command: 'render {scene} > {output}' })), 'RB_BAD_JOB', /shell operator '>'/);
  rejects(() => c.plan(aTask({ renderer: 'command', command: 'render {scene} --cam {camera}' })), 'RB_BAD_JOB', /unknown token \{camera\}/);
  rejects(() => c.plan(aTask({ renderer: 'command', command: 'render {scene:3}' })), 'RB_BAD_JOB', /only \{frame\}, \{first\} and \{last\} take a width/);
  rejects(() => c.plan(aTask({ renderer: 'command', command: '   ' })), 'RB_BAD_JOB', /template is empty/);
  rejects(() => c.plan(aTask({ renderer: 'command', command: undefined })), 'RB_BAD_JOB', /needs a command template/);
  // a '*' is handed over literally, '$X' is not expanded
  assert.deepEqual(c.plan(aTask({ renderer: 'command', command: 'ls *.png $HOME' }))[0]!.argv, ['ls', '*.png', '$HOME']);
});

test('adapters - command parser reports percent on the current frame and keeps the stderr tail', () => {
  const inv = createCommandAdapter().plan(aTask({ renderer: 'command', command: 'r {scene} {first} {last}' }))[0]!;
  const seen: Progress[] = [];
  const p = createCommandAdapter().parser(inv, (x) => seen.push(x));
  p.push('stdout', 'Fra:5 Mem:12M | Time:00:01.00 | Sample 8/16 50%\rFra:5 ... 100%\n');
  p.push('stderr', 'warning: x\nerror: cannot open texture wood.png\n');
  p.end();
  assert.deepEqual(seen, [{ frame: 5, percent: 50 }, { frame: 5, percent: 100 }]);
  assert.equal(p.errorText(), 'warning: x\nerror: cannot open texture wood.png');
  const quiet = createCommandAdapter().parser(inv, () => {});
  quiet.push('stdout', 'only stdout\n');
  assert.equal(quiet.errorText(), 'only stdout');
});

test('adapters - an unknown renderer is a clear error', () => {
  const lookup = createAdapters();
  assert.equal(lookup('povray').name, 'povray');
  assert.equal(lookup('command').name, 'command');
  rejects(() => lookup('maya'), 'RB_BAD_JOB', /renderer 'maya' is unknown.*povray, blender, command/);
  rejects(() => lookup('toString'), 'RB_BAD_JOB', /unknown/);
});

test('adapters - line splitter handles \\r, \\n, \\r\\n and lines split across chunks', () => {
  const lines: string[] = [];
  const s = new LineSplitter((l) => lines.push(l));
  for (const c of ['a\rb', 'c\r\nd', '', 'e\n\nf']) s.push(c);
  s.end();
  assert.deepEqual(lines, ['a', 'bc', 'de', 'f']);
});
