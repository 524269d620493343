import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { after, before, test } from 'node:test';
import { createAdapters, deliverTask, prepareTask, renderTask, type Progress, type SlotResult } from '../../actors/render-slot/index.ts';
import { prepareJob, type JobSpec } from '../../protocol/index.ts';
import { aTaskAssignment } from '../helpers/builders.ts';
import { CLI, TestFarm, waitUntil } from '../helpers/farm.ts';
import { tinyExr } from '../helpers/tiny-image.ts';

/**
 * The documented templates (tools/templates/*.json, docs/renderers.md "Templates for other
 * renderers") rendered on a real render slot by stand-in renderers: small sh scripts named like
 * the real programs, printing what those print (progress, a frame written, or an error and exit 1).
 * A stand-in fails when the job's env says STANDIN_FAIL=scene (a broken scene) or =render.
 */

const STANDINS: Record<string, string> = {
  // Arnold's log: elapsed, memory, a severity column, '|', the message (docs.arnoldrenderer.com, "How to Read a Render Log")
  kick: String.raw`
out=; scene=
while [ $# -gt 0 ]; do case "$1" in -o) out=$2; shift;; -i) scene=$2; shift;; esac; shift; done
echo "00:00:00    38MB         | log started Thu Dec  3 16:00:00 2026"
echo "00:00:00    38MB         | Arnold 7.2.1.1 [8f0a4c8b] linux x86_64 clang-15.0.7 oiio-2.5.1"
echo "00:00:00    52MB         | [ass] loading $scene ..."
if [ "$STANDIN_FAIL" = scene ]; then
  echo "00:00:00    52MB ERROR   | [ass] line 3: polymeshh is not a valid node type"
  echo "00:00:00    52MB         | [ass] aborting"; echo "00:00:00    52MB         | Arnold shutdown"; exit 1
fi
echo "00:00:00    60MB         | scene creation time 0:00.02, machine utilization (45.12%)"
p=1
while [ -n "$STANDIN_GATE" ] && [ ! -e "$STANDIN_GATE" ]; do
  printf '00:00:01   130MB         |   %3d%% done - 12 rays/pixel\n' $p; p=$(( p % 98 + 1 )); sleep 0.2
done
for p in 0 25 50 75 100; do printf '00:00:01   130MB         |   %3d%% done - 12 rays/pixel\n' $p; done
echo "00:00:01   131MB         | [driver_exr] writing file \`$out'"
cp "$(dirname "$0")/../hd.exr" "$out"
echo "00:00:01   131MB         | render done in 0:01.512"
`,
  // RenderMan: a message code, then the text; -Progress prints message R90000 with the percentage
  prman: String.raw`
cwd=.; rib=
while [ $# -gt 0 ]; do case "$1" in -cwd) cwd=$2; shift;; -Progress) ;; *) rib=$1;; esac; shift; done
frame=$(basename "$rib" .rib | sed 's/.*[.]//')
if [ "$STANDIN_FAIL" = scene ]; then
  echo "P79015 {SEVERE} syntax error at line 12 of $rib: unexpected 'WorldEndd'" >&2
  echo "R50004 {INFO} rendering stopped" >&2; exit 1
fi
while [ -n "$STANDIN_GATE" ] && [ ! -e "$STANDIN_GATE" ]; do printf 'R90000  %3d%%\n' 10; sleep 0.2; done
for p in 0 33 67 100; do printf 'R90000  %3d%%\n' $p; done
cp "$(dirname "$0")/../tiny.exr" "$cwd/sh010_$frame.exr"
`,
  // husk with 'a' in its verbosity prints Alfred-style progress, ALF_PROGRESS n% (Houdini's ROP samples print the same)
  husk: String.raw`
out=
while [ $# -gt 0 ]; do case "$1" in --output) out=$2; shift;; esac; shift; done
echo "[16:00:00] Loading USD stage"
if [ "$STANDIN_FAIL" = render ]; then
  echo "[16:00:01] Error: Karma XPU: no GPU device could be initialised"
  echo "[16:00:01] Shutting down render delegate"; echo "[16:00:01] Render statistics: 0 of 1 frames"; exit 1
fi
while [ -n "$STANDIN_GATE" ] && [ ! -e "$STANDIN_GATE" ]; do echo "ALF_PROGRESS 10%"; sleep 0.2; done
for p in 0 20 40 60 80 100; do echo "ALF_PROGRESS $p%"; done
cp "$(dirname "$0")/../hd.exr" "$out"
`,
  // nuke -x names each frame as it starts: "Frame 12 (3 of 10)"; the Write node's file is [getenv RB_OUTDIR]/...
  nuke: String.raw`
range=
while [ $# -gt 0 ]; do case "$1" in -F) range=$2; shift;; esac; shift; done
first=$(echo "$range" | cut -d- -f1); last=$(echo "$range" | cut -d- -f2); n=$((last - first + 1)); i=1
f=$first
while [ $f -le $last ]; do
  echo "Frame $f ($i of $n)"
  while [ -n "$STANDIN_GATE" ] && [ ! -e "$STANDIN_GATE" ]; do echo "Frame $f ($i of $n)"; sleep 0.2; done
  file=$(printf '%s/sh010_comp.%04d.exr' "$RB_OUTDIR" $f)
  cp "$(dirname "$0")/../tiny.exr" "$file"; echo "Writing $file took 0.12 seconds"
  f=$((f + 1)); i=$((i + 1))
done
echo "Total render time: 0.36 seconds"
`,
  // Maya's Render with Arnold: mtoa names the frame it starts, Arnold's log gives the percentage
  Render: String.raw`
s=1; e=1; rd=.; im=frame; ext=exr
while [ $# -gt 0 ]; do case "$1" in -s) s=$2; shift;; -e) e=$2; shift;; -rd) rd=$2; shift;; -im) im=$2; shift;; -of) ext=$2; shift;; -r|-b|-fnc|-pad|-x|-y) shift;; esac; shift; done
echo "Starting Rendering $rd"
if [ "$STANDIN_FAIL" = scene ]; then
  echo "// Error: file: /shows/demo/sh010/sh010.ma line 1234: Cannot find procedure \"rigSetup\"."
  echo "// Warning: Scene /shows/demo/sh010/sh010.ma loaded with errors"; echo "Scene completed."; exit 1
fi
f=$s
while [ $f -le $e ]; do
  echo "00:00:00   773MB         | [mtoa.session]     Initializing at frame $f.000000"
  while [ -n "$STANDIN_GATE" ] && [ ! -e "$STANDIN_GATE" ]; do printf '00:00:01   801MB         |   %3d%% done - 5 rays/pixel\n' 10; sleep 0.2; done
  for p in 0 50 100; do printf '00:00:01   801MB         |   %3d%% done - 5 rays/pixel\n' $p; done
  cp "$(dirname "$0")/../hd.exr" "$(printf '%s/%s.%04d.%s' "$rd" "$im" $f "$ext")"
  f=$((f + 1))
done
echo "Scene completed."
`,
};

let root = '';
let bin = '';
const adapters = createAdapters();

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'rb-templates-'));
  bin = join(root, 'bin');
  await mkdir(bin);
  // real frames (frame-check.ts decodes them): the job's 1920×1080 for those told it, else 2×2
  await Promise.all([writeFile(join(root, 'hd.exr'), tinyExr(1920, 1080)), writeFile(join(root, 'tiny.exr'), tinyExr())]);
  for (const [name, body] of Object.entries(STANDINS)) {
    await writeFile(join(bin, name), `#!/bin/sh\n${body}`);
    await chmod(join(bin, name), 0o755);
  }
});
after(() => rm(root, { recursive: true, force: true }));

/** A shipped template, its paths moved under this test's folder and its program the stand-in; checked as at submit. */
async function template(file: string, program: string): Promise<JobSpec> {
  const text = await readFile(join(import.meta.dirname, '../../tools/templates', file), 'utf8');
  const spec = JSON.parse(text.replaceAll('/shows/demo', root)) as JobSpec;
  spec.command = spec.command!.replace(new RegExp(`(^|\\s)${program}(?=\\s)`), `$1${join(bin, program)}`);
  assert.notEqual(spec.command.indexOf(bin), -1, `${file} runs ${program}`);
  await mkdir(dirname(spec.scene), { recursive: true });
  await writeFile(spec.scene, 'scene');
  prepareJob(spec); // the regexes pass the submit checks
  return spec;
}

async function render(spec: JobSpec, frames: number[], env?: Record<string, string>): Promise<{ result: SlotResult; progress: Progress[] }> {
  const p = prepareJob(spec);
  const task = aTaskAssignment({
    jobId: 'tpl',
    frames,
    scene: spec.scene,
    command: spec.command!,
    outputDir: p.outputDir,
    outputPattern: p.outputPattern,
    ...(p.resolution ? { resolution: p.resolution } : {}),
    ...(spec.progress !== undefined ? { progress: spec.progress } : {}),
    ...(spec.errors ? { errors: spec.errors } : {}),
    ...(spec.sceneErrors ? { sceneErrors: spec.sceneErrors } : {}),
    ...(env ? { env } : {}),
  });
  const progress: Progress[] = [];
  const prepared = await prepareTask(task, adapters);
  const outcome = await renderTask(task, prepared, { adapters, onProgress: (e) => progress.push(e) });
  return { result: await deliverTask(task, prepared, outcome, task.slot), progress };
}

const percents = (events: Progress[], frame: number) => events.filter((e) => e.frame === frame).map((e) => e.percent);

test('command templates - each stand-in renderer renders its frames, its progress read by the template\'s regex', async () => {
  const kick = await render(await template('arnold-kick.json', 'kick'), [1, 2]);
  assert.equal(kick.result.status, 'done', kick.result.error?.message);
  assert.deepEqual(kick.result.outputs.map((o) => o.path), [1, 2].map((f) => join(root, `out/sh010_arnold/sh010_000${f}.exr`)));
  // "machine utilization (45.12%)" is not progress: only the "% done" lines are
  assert.deepEqual(percents(kick.progress, 1), [0, 25, 50, 75, 100]);
  assert.deepEqual(percents(kick.progress, 2), [0, 25, 50, 75, 100]);

  const prman = await render(await template('renderman-prman.json', 'prman'), [1, 2]);
  assert.equal(prman.result.status, 'done', prman.result.error?.message);
  assert.deepEqual(prman.result.outputs.map((o) => o.frame), [1, 2]);
  assert.deepEqual(percents(prman.progress, 2), [0, 33, 67, 100]);

  const husk = await render(await template('houdini-husk.json', 'husk'), [5]);
  assert.equal(husk.result.status, 'done', husk.result.error?.message);
  assert.deepEqual(percents(husk.progress, 5), [0, 20, 40, 60, 80, 100]);

  // Nuke renders the chunk in one run and names each frame as it starts
  const nuke = await render(await template('nuke.json', 'nuke'), [3, 4, 5]);
  assert.equal(nuke.result.status, 'done', nuke.result.error?.message);
  assert.deepEqual(nuke.result.outputs.map((o) => o.path), [3, 4, 5].map((f) => join(root, `out/sh010_comp/sh010_comp.000${f}.exr`)));
  assert.deepEqual(nuke.progress, [3, 4, 5].map((frame) => ({ frame, percent: 0 })));

  // Maya renders the chunk in one run: "Initializing at frame N" moves the percentages to frame N
  const maya = await render(await template('maya-render.json', 'Render'), [7, 8]);
  assert.equal(maya.result.status, 'done', maya.result.error?.message);
  assert.deepEqual(maya.result.outputs.map((o) => o.frame), [7, 8]);
  assert.deepEqual(maya.progress, [7, 8].flatMap((frame) => [0, 0, 50, 100].map((percent) => ({ frame, percent }))));
});

test('command templates - a failed render\'s error is the line the errors regex matched, a scene error fails as RB_SCENE_ERROR', async () => {
  const kick = await render(await template('arnold-kick.json', 'kick'), [1], { STANDIN_FAIL: 'scene' });
  assert.equal(kick.result.status, 'failed');
  assert.equal(kick.result.error?.code, 'RB_SCENE_ERROR');
  assert.match(kick.result.error!.message, /^00:00:00 {4}52MB ERROR {3}\| \[ass\] line 3: polymeshh is not a valid node type \(the job's sceneErrors matched on this host/);

  // the lines after the error (the renderer shutting down) are not the error
  const husk = await render(await template('houdini-husk.json', 'husk'), [1], { STANDIN_FAIL: 'render' });
  assert.equal(husk.result.error?.code, 'RB_RENDER_FAILED');
  assert.match(husk.result.error!.message, /\[16:00:01\] Error: Karma XPU: no GPU device could be initialised/);
  assert.doesNotMatch(husk.result.error!.message, /Shutting down|Render statistics/);

  const prman = await render(await template('renderman-prman.json', 'prman'), [1], { STANDIN_FAIL: 'scene' });
  assert.equal(prman.result.error?.code, 'RB_SCENE_ERROR');
  assert.match(prman.result.error!.message, /^P79015 \{SEVERE\} syntax error at line 12/);

  const maya = await render(await template('maya-render.json', 'Render'), [1], { STANDIN_FAIL: 'scene' });
  assert.equal(maya.result.error?.code, 'RB_SCENE_ERROR');
  assert.match(maya.result.error!.message, /^\/\/ Error: file: .*sh010\.ma line 1234: Cannot find procedure "rigSetup"\./);
});

test('command templates - on a farm, each stand-in\'s running frame shows its progress, from the template\'s regex, in renderbus frame', async (t) => {
  const farm = await TestFarm.start();
  t.after(() => farm.stop());
  await Promise.all([farm.registry(), farm.scheduler(), farm.renderServer('box', 1)]);
  // each stand-in repeats a progress line until its gate file appears: kick counts 1..98, prman,
  // husk and Render say 10 %, nuke names the frame it starts (0 %)
  const cases: [string, string, (p: number) => boolean][] = [
    ['arnold-kick.json', 'kick', (p) => Number.isInteger(p) && p >= 1 && p <= 98],
    ['renderman-prman.json', 'prman', (p) => p === 10],
    ['houdini-husk.json', 'husk', (p) => p === 10],
    ['nuke.json', 'nuke', (p) => p === 0],
    ['maya-render.json', 'Render', (p) => p === 10],
  ];
  for (const [file, program, expected] of cases) {
    const gate = join(root, `gate-${program}`);
    const spec = await template(file, program);
    const jobId = await farm.submit({ ...spec, frames: '1', output: { ...spec.output, dir: join(root, `out/farm-${program}`) }, env: { ...spec.env, STANDIN_GATE: gate } });
    await waitUntil(`${program}'s frame 1 to run`, async () => (await farm.job(jobId)).frames[0]?.state === 'running', 10_000, 50);
    const proc = spawn(process.execPath, [CLI, 'frame', `${jobId}:1`, '--json', '--nats', farm.url, '--site', farm.site, '--creds', farm.operatorCreds], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const [code] = await once(proc, 'exit');
    await writeFile(gate, '');
    assert.equal(code, 0, out);
    const shown = JSON.parse(out) as { percent?: number };
    assert.ok(shown.percent !== undefined && expected(shown.percent), `${program}: percent ${shown.percent}`);
    await waitUntil(`${program}'s job to end`, async () => (await farm.job(jobId)).state === 'done', 15_000, 100);
  }
});
