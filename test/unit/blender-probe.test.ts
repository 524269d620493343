import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { blenderPackage, parseBlenderProbe } from '../../actors/render-server/index.ts';
import { cachedAnswer } from '../../actors/render-server/version-cache.ts';
import { FarmError, missingOn, prepareJob, toProfile, type HostRecord, type PackageInfo } from '../../protocol/index.ts';
import { paint } from '../../tools/cli/format.ts';
import { describeHost, hostViews, type UpHost } from '../../tools/cli/manager-format.ts';
import { aJobSpec, anInventory } from '../helpers/builders.ts';

/* Issue 17 item 1: the probe reports Blender's engines and add-ons; a job's engine is matched. */

const FACTORY_ADDONS = [{ name: 'io_scene_fbx', enabled: true }, { name: 'cycles', enabled: true }];
const said = (o: object) => `renderbus-probe: ${JSON.stringify(o)}`;
const ANSWER = said({ version: '3.4.1', engines: ['BLENDER_EEVEE', 'BLENDER_WORKBENCH', 'CYCLES'], addons: [...FACTORY_ADDONS, { name: 'studio_tools', enabled: false }] });

test('blender probe - reads the version, engines and add-ons; without a GL context only Cycles; cut short or silent, what it can', () => {
  // Debian's 3.4.1 here: all three engines, and the 1×1 Workbench render made a context (surfaceless EGL)
  const gl = parseBlenderProbe(`Blender 3.4.1\n${ANSWER}\nEGL Error (0x3001)\nManaged to successfully fallback to surfaceless EGL rendering!\nrenderbus-probe: gl\n\nBlender quit\n`, true);
  assert.deepEqual(gl, {
    whole: true,
    answer: { version: '3.4.1', engines: ['BLENDER_EEVEE', 'BLENDER_WORKBENCH', 'CYCLES'], addons: [...FACTORY_ADDONS, { name: 'studio_tools', enabled: false }] },
  });
  // no EGL: Blender aborts making the context (its banner lost in its stdio buffer)
  const abort = parseBlenderProbe(`${ANSWER}\nWarning: No OpenGL vendor detected.\nblender: ../src/dispatch_common.c:872: epoxy_get_proc_address: Assertion \`0 && "Couldn't find current GLX or EGL context.\\n"' failed.\n`, true);
  assert.deepEqual(abort.answer?.engines, ['CYCLES']);
  assert.equal(abort.whole, true, 'a Blender that died trying has answered');
  // killed at the time limit before the GL verdict: Cycles for now, not kept
  assert.deepEqual(parseBlenderProbe(ANSWER, false), { whole: false, answer: { version: '3.4.1', engines: ['CYCLES'], addons: [...FACTORY_ADDONS, { name: 'studio_tools', enabled: false }] } });
  // its Python failed (an old Blender): the version from the banner, engines unknown
  assert.deepEqual(parseBlenderProbe('Blender 2.79 (sub 0)\nTraceback (most recent call last):\nAttributeError: x\n', true), { whole: true, answer: { version: '2.79' } });
  assert.deepEqual(parseBlenderProbe('renderbus-probe: {"version": "3.4.1", "engines": [1]}\n', true), { whole: true, answer: { version: '3.4.1' } }, 'a malformed line is no answer');
  assert.deepEqual(parseBlenderProbe('segfault\n', true), { whole: false, answer: undefined });
  // the host's record
  assert.deepEqual(blenderPackage('/usr/bin/blender', { version: '3.4.1' }), { name: 'blender', version: '3.4.1', path: '/usr/bin/blender' });
  assert.deepEqual(blenderPackage('/usr/bin/blender', abort.answer!).engines, ['CYCLES']);
});

async function scratch(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'rb-blender-probe-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('blender probe - an answer is kept per program file and GL set-up, a partial one is not', async (t) => {
  const dir = await scratch(t);
  const prog = join(dir, 'blender');
  await writeFile(prog, 'v1');
  const file = join(dir, 'versions.json');
  const isAnswer = (v: unknown): v is { version: string } => typeof (v as { version?: unknown } | null)?.version === 'string';
  let asked = 0;
  const ask = (version: string, keep = true) => async () => {
    asked++;
    return { value: { version }, keep };
  };
  assert.deepEqual(await cachedAnswer(prog, ask('3.4.1', false), { file, salt: 'gl:', valid: isAnswer }), { version: '3.4.1' });
  assert.deepEqual(await cachedAnswer(prog, ask('3.4.1'), { file, salt: 'gl:', valid: isAnswer }), { version: '3.4.1' });
  assert.equal(asked, 2, 'the partial answer was not kept');
  assert.deepEqual(await cachedAnswer(prog, ask('9.9'), { file, salt: 'gl:', valid: isAnswer }), { version: '3.4.1' });
  assert.equal(asked, 2, 'the whole one was');
  assert.deepEqual(await cachedAnswer(prog, ask('3.4.1-gpu'), { file, salt: 'gl:renderD128', valid: isAnswer }), { version: '3.4.1-gpu' });
  assert.equal(asked, 3, 'a GPU added: asked again');
  await writeFile(file, JSON.stringify({ [`${prog}\0x`]: 'junk' }));
  assert.deepEqual(await cachedAnswer(prog, ask('3.4.1'), { file, salt: 'gl:', valid: isAnswer }), { version: '3.4.1' });
});

const host = (packages: PackageInfo[]) => anInventory({ packages });
const blender = (engines?: string[]): PackageInfo => ({ name: 'blender', version: '3.4.1', ...(engines ? { engines } : {}) });

test('blender probe - a job\'s engine is a requirement: a host whose Blender lacks it is named, one not asked counts as having it', () => {
  const eevee = prepareJob(aJobSpec({ scene: '/p/shot.blend', blender: { engine: 'eevee' } }));
  assert.deepEqual(eevee.requirements.engines, ['blender:BLENDER_EEVEE']);
  assert.deepEqual(prepareJob(aJobSpec({ scene: '/p/shot.blend', blender: { samples: 4 } })).requirements.engines, undefined, 'no engine named: any');
  assert.deepEqual(prepareJob(aJobSpec({ scene: '/p/shot.blend', blender: { engine: 'cycles' }, requirements: { engines: ['blender:CYCLES'] } })).requirements.engines, ['blender:CYCLES'], 'not twice');
  const profile = toProfile(eevee.requirements);
  assert.deepEqual(missingOn(profile, host([blender(['CYCLES'])])), ['needs the blender engine BLENDER_EEVEE, blender 3.4.1 has CYCLES']);
  assert.deepEqual(missingOn(profile, host([blender(['BLENDER_EEVEE', 'BLENDER_WORKBENCH', 'CYCLES'])])), []);
  assert.deepEqual(missingOn(profile, host([blender()])), [], 'engines not probed (--packages, an older render server): any');
  assert.deepEqual(missingOn(profile, host([{ name: 'povray', version: '3.7.0.10' }])), ['needs blender, has no blender'], 'no Blender: said once');
  assert.deepEqual(missingOn(toProfile({ engines: ['blender:CYCLES'] }), host([])), ['needs blender with engine CYCLES, has no blender']);
  assert.throws(() => toProfile({ engines: ['eevee'] }), (e: FarmError) => e.code === 'RB_BAD_SPEC' && /^requirements\.engines\[0\]: 'eevee' is not 'package:ENGINE'/.test(e.message));
});

test('blender probe - renderbus host shows the engines and add-ons', () => {
  const NOW = 1_800_000_000_000;
  const record: HostRecord = {
    host: 'node-1', serverId: 's1', inventory: host([{ ...blender(['CYCLES']), addons: [...FACTORY_ADDONS, { name: 'studio_tools', enabled: false }] }]),
    slots: [], registeredAt: NOW, lastSeenAt: NOW, draining: false,
  };
  const view = hostViews([record], [], []).find((v): v is UpHost => v.state === 'up')!;
  const text = describeHost(view, paint({ isTTY: false }), NOW);
  assert.match(text, /^blender engines: CYCLES$/m);
  assert.match(text, /^blender add-ons: io_scene_fbx, cycles, studio_tools \(installed, off\)$/m);
});
