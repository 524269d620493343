import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { createCommandAdapter, createPovrayAdapter, parseLibraryPath, povrayLibrary, standardIncludeMissing, type Invocation } from '../../actors/render-slot/index.ts';
import { aTaskAssignment } from '../helpers/builders.ts';

// stderr of real POV-Ray 3.7.0.10 runs (Debian 12), with the argv the adapter builds, on the
// scenes beside them in test/fixtures/povray, from /tmp/rbfx/scenes; no-standard-includes is
// standard-include.pov with a povray.ini whose Library_Path lacks the include directory.
const FIXTURES = new URL('../fixtures/povray/', import.meta.url);
const captured = (name: string) => readFile(new URL(`${name}.stderr`, FIXTURES), 'utf8');

const inv: Invocation = { argv: ['povray'], cwd: '/tmp/rbfx/scenes', frames: [1], outputs: [] };

async function diagnose(name: string, libraryPath: readonly string[] = ['/usr/share/povray-3.7/include']) {
  const p = createPovrayAdapter({ libraryPath }).parser(inv, () => {});
  const text = await captured(name);
  // in odd chunks, as a pipe delivers it
  for (let i = 0; i < text.length; i += 37) p.push('stderr', text.slice(i, i + 37));
  p.end();
  return p.diagnose!('host node-7');
}

test('povray diagnosis - a parse error is the scene\'s, with POV-Ray\'s own line: file, line and what is wrong', async () => {
  assert.deepEqual(await diagnose('parse-error'), {
    code: 'RB_SCENE_ERROR',
    message: "povray: File '/tmp/rbfx/scenes/parse-error.pov' line 5: Parse Error: No matching } in 'sphere', undeclared identifier 'no_such_keyword_here' found instead",
  });
});

test('povray diagnosis - a missing include is the scene\'s, naming the include and the include path searched', async () => {
  assert.deepEqual(await diagnose('missing-include', ['/usr/share/povray-3.7', '/usr/share/povray-3.7/include']), {
    code: 'RB_SCENE_ERROR',
    message: "povray: File '/tmp/rbfx/scenes/missing-include.pov' line 5: Parse Error: Cannot open include file set-dressing.inc. " +
      '(include path searched: /tmp/rbfx/scenes, /usr/share/povray-3.7, /usr/share/povray-3.7/include)',
  });
});

test('povray diagnosis - a standard include missing from every directory searched is the host\'s missing povray-includes', async (t) => {
  const empty = await mkdtemp(join(tmpdir(), 'rb-noinc-'));
  t.after(() => rm(empty, { recursive: true, force: true }));
  const d = await diagnose('no-standard-includes', [empty]);
  assert.equal(d?.code, 'RB_RENDERER_MISSING');
  assert.match(d!.message, /^povray: File '\/tmp\/rbfx\/scenes\/standard-include\.pov' line 4: Parse Error: Cannot open include file colors\.inc\. /);
  assert.match(d!.message, /colors\.inc is one of POV-Ray's standard include files, which are not installed on host node-7 \(include path searched: \/tmp\/rbfx\/scenes, \/tmp\/rb-noinc-\w+; Debian\/Ubuntu: apt-get install povray-includes\)$/);
  // where the standard includes are, the same line is the scene's (a project's own colors.inc missing is not the host's fault)
  assert.equal((await diagnose('no-standard-includes', ['/usr/share/povray-3.7/include']))?.code, 'RB_SCENE_ERROR');
});

test('povray diagnosis - a main scene POV-Ray cannot open is input this host cannot see', async () => {
  assert.deepEqual(await diagnose('missing-scene'), {
    code: 'RB_INPUT_NOT_FOUND',
    message: 'povray: Parse Error: Cannot open input file. (the scene /tmp/rbfx/scenes/no-such-scene.pov cannot be read on host node-7)',
  });
});

test('povray diagnosis - an image map that is not there fails the parser: the scene\'s, naming the file', async () => {
  const d = await diagnose('missing-image');
  assert.equal(d?.code, 'RB_SCENE_ERROR');
  assert.equal(d?.message, "povray: File '/tmp/rbfx/scenes/missing-image.pov' line 4: Possible Parse Error: Cannot find file 'textures/wood.png', even after trying to append file type extension. " +
    "File '/tmp/rbfx/scenes/missing-image.pov' line 4: Possible Parse Error: Cannot find image file. Fatal error in parser: Cannot open file.");
});

test('povray diagnosis - other failures and warnings are not placed: they stay RB_RENDER_FAILED', () => {
  const p = createPovrayAdapter().parser(inv, () => {});
  p.push('stderr', 'Possible Parse Error: assumed_gamma not specified in this POV-Ray 3.7 or later\n scene. Future versions of POV-Ray may consider this a fatal error.\nRendering frame 1 of 1\nCannot create render state output file.\nRender failed\n');
  p.end();
  assert.equal(p.diagnose!('host node-7'), undefined);
  // the command adapter cannot know whose a failure is, unless the job's sceneErrors say so
  const c = createCommandAdapter().parser({ argv: ['sh'], cwd: '/', frames: [1], outputs: [] }, () => {});
  c.push('stderr', "File 'x.pov' line 3: Parse Error: whatever\n");
  c.end();
  assert.equal(c.diagnose?.('host node-7'), undefined);
});

test('povray library - Library_Path from povray.ini, in POV-Ray\'s order: scene directory, user, system', async (t: TestContext) => {
  assert.deepEqual(
    parseLibraryPath('; comment\nLibrary_Path="/usr/share/povray-3.7"\nlibrary_path = /opt/pov/include ; mine\n+Lrelative\nLibrary_Path="/usr/share/povray-3.7"\nOutput_File_Type=N\n[HD]\nLibrary_Path=/only/for/hd\n', '/etc/povray/3.7'),
    ['/usr/share/povray-3.7', '/opt/pov/include', '/etc/povray/3.7/relative'],
  );
  const dir = await mkdtemp(join(tmpdir(), 'rb-povlib-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const root = join(dir, 'root');
  const home = join(dir, 'home');
  const scene = join(dir, 'scene');
  await mkdir(join(root, 'etc/povray/3.7'), { recursive: true });
  await mkdir(join(root, 'inc'));
  await writeFile(join(root, 'inc', 'colors.inc'), '');
  await writeFile(join(root, 'etc/povray/3.7/povray.ini'), `Library_Path="${root}/nothing"\nLibrary_Path="${root}/inc"\n`);
  assert.deepEqual(povrayLibrary({ root, home, cwd: scene }), { ini: join(root, 'etc/povray/3.7/povray.ini'), dirs: [`${root}/nothing`, `${root}/inc`], includes: `${root}/inc` });
  // a user's povray.ini hides the system's (as POV-Ray itself does)
  await mkdir(join(home, '.povray/3.7'), { recursive: true });
  await writeFile(join(home, '.povray/3.7/povray.ini'), `Library_Path="${root}/nothing"\n`);
  assert.deepEqual(povrayLibrary({ root, home, cwd: scene }), { ini: join(home, '.povray/3.7/povray.ini'), dirs: [`${root}/nothing`], includes: null });
  await mkdir(scene);
  await writeFile(join(scene, 'povray.ini'), `Library_Path="${root}/inc"\n`);
  assert.equal(povrayLibrary({ root, home, cwd: scene }).includes, `${root}/inc`);
  // a job's POVINI comes before them all (relative: from where POV-Ray runs)
  await writeFile(join(scene, 'job.ini'), `Library_Path="${root}/nothing"\n`);
  assert.deepEqual(povrayLibrary({ root, home, cwd: scene, povini: 'job.ini' }).dirs, [`${root}/nothing`]);
  assert.deepEqual(povrayLibrary({ root: join(dir, 'none'), home: join(dir, 'none') }), { ini: null, dirs: [], includes: null });
  assert.equal(standardIncludeMissing('colors', [`${root}/nothing`]), true);
  assert.equal(standardIncludeMissing('colors.inc', [`${root}/inc`]), false);
  assert.equal(standardIncludeMissing('props.inc', []), false); // not one of POV-Ray's own
});
