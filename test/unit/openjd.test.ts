import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseTemplate } from '../../actors/render-slot/adapters/command.ts';
import { buildJob } from '../../tools/cli/job-file.ts';
import { FarmError, prepareJob } from '../../protocol/index.ts';
import { parseTemplateText, rangeExprToFrames, templateToJobs, type TemplateJobs } from '../../protocol/openjd/index.ts';

const SAMPLES = join(import.meta.dirname, '../../tools/templates/openjd');

/** Maps a template given as YAML text (or a value), with `--param` overrides. */
function map(src: string | object, params: Record<string, string> = {}): TemplateJobs {
  const doc = typeof src === 'string' ? parseTemplateText(src) : src;
  return templateToJobs(doc, { overrides: new Map(Object.entries(params)), templateDir: '/studio/tpl', cwd: '/home/ann', filesDir: '/farm/out/openjd-j1' });
}

/** The RB_BAD_TEMPLATE message of mapping `src`. */
function refusal(src: string | object, params: Record<string, string> = {}): string {
  try {
    map(src, params);
  } catch (err) {
    assert.ok(err instanceof FarmError, String(err));
    assert.equal(err.code, 'RB_BAD_TEMPLATE');
    return err.message;
  }
  assert.fail('the template was accepted');
}

/** A one-step template around `step` (YAML lines indented for a list item under steps). */
const oneStep = (step: string, head = '') => `specificationVersion: jobtemplate-2023-09
name: T
${head}
steps:
- name: S
${step}`;

const RUN = `  script:
    actions:
      onRun:
        command: echo
        args: ['{{Task.Param.Frame}}']`;
/** A script for a step without task parameters. */
const ONCE = `  script:
    actions: { onRun: { command: 'true' } }`;

test('openjd - the shipped sample maps to a chunked render job and a job after it', () => {
  const t = map(readFileSync(join(SAMPLES, 'povray-chunks.yaml'), 'utf8'), { Frames: '1-10', ChunkSize: '3' });
  assert.equal(t.name, 'Orbit 1-10');
  const [render, listing] = t.jobs;
  assert.equal(render!.step, 'Render');
  assert.deepEqual(render!.after, []);
  assert.equal(render!.spec.frames, '1-10');
  assert.equal(render!.spec.chunk, 3);
  assert.equal(render!.spec.timeLimit, 600);
  assert.deepEqual(render!.spec.env, { ORBIT_QUALITY: '9' });
  // the chunk's range expression, as the specification gives it ("1-3"), from the slot's tokens,
  // inside the wrapper that enters the job's Scratch environment
  const wrapper = '/farm/out/openjd-j1/step-1/openjd-environments.sh';
  assert.equal(render!.spec.command, `sh ${wrapper} sh /farm/out/openjd-j1/step-1/render.sh \\{first\\}-\\{last\\}`);
  assert.deepEqual(parseTemplate(render!.spec.command).args, ['sh', wrapper, 'sh', '/farm/out/openjd-j1/step-1/render.sh', '{first}-{last}']);
  assert.deepEqual(render!.spec.supportFiles, ['/farm/out/openjd-j1/step-1/render.sh', wrapper]);
  assert.deepEqual(render!.files.map((f) => f.path), render!.spec.supportFiles);
  // PATH defaults are taken from the template's folder; Param values resolved in the file
  assert.match(render!.files[0]!.data, /povray \+I'\/studio\/tpl\/orbit\.pov'/);
  assert.match(render!.files[0]!.data, /mv "\$ORBIT_SCRATCH\/\$name" '\/studio\/tpl\/output'/);
  assert.equal(listing!.step, 'Listing');
  assert.deepEqual(listing!.after, [0]);
  assert.equal(listing!.spec.frames, '1'); // no parameter space: runs once
  assert.equal(listing!.spec.chunk, undefined);
  // and each is a job the farm takes
  for (const j of t.jobs) prepareJob({ ...j.spec, scene: '/studio/tpl/povray-chunks.yaml', output: { dir: '/farm/out/x' } });
});

test('openjd - the Blender sample: one Blender process per chunk, chunks sized toward a target runtime; its scene must be given', () => {
  const src = readFileSync(join(SAMPLES, 'blender-chunks.yaml'), 'utf8');
  assert.equal(refusal(src), "parameterDefinitions[1]: parameter 'BlendFile' has no default: give it with --param BlendFile=VALUE");
  const [render] = map(src, { BlendFile: 'sh010.blend', Frames: '1-240' }).jobs;
  assert.deepEqual(render!.spec, {
    name: 'Blender render / Render',
    renderer: 'command',
    command: 'sh /farm/out/openjd-j1/step-1/render.sh \\{first\\}-\\{last\\}',
    frames: '1-240',
    chunk: 6,
    taskDuration: 300,
    requirements: { os: 'linux' },
    supportFiles: ['/farm/out/openjd-j1/step-1/render.sh'],
  });
  assert.match(render!.files[0]!.data, /exec blender --background '\/home\/ann\/sh010\.blend' \\\n {2}--render-output '\/studio\/tpl\/output\/frame_####'/);
  prepareJob({ ...render!.spec, scene: '/studio/tpl/blender-chunks.yaml', output: { dir: '/farm/out/x' } });
});

test('openjd - a spec-style two-step template: embedded script, INT frames, PATH params from --param, steps in dependency order', () => {
  const t = map(`
specificationVersion: 'jobtemplate-2023-09'
name: '{{Param.JobName}}'
parameterDefinitions:
- { name: JobName, type: STRING, default: Blender Scene Renderer, userInterface: { control: LINE_EDIT, label: Job Name } }
- { name: EndFrame, type: INT, default: 100, minValue: 1 }
- { name: BlenderFile, type: PATH, objectType: FILE, dataFlow: IN, default: ./scene/blender_scene.blend }
- { name: Format, type: STRING, default: PNG, allowedValues: [JPEG, PNG, OPEN_EXR] }
steps:
- name: Encode
  dependencies: [{ dependsOn: RenderScene }]
  script:
    actions: { onRun: { command: bash, args: ['{{Task.File.Encode}}'] } }
    embeddedFiles:
    - { name: Encode, type: TEXT, runnable: true, data: "ffmpeg -i out/render-%04d.{{Param.Format}}\\n" }
- name: RenderScene
  parameterSpace:
    taskParameterDefinitions:
    - { name: Frame, type: INT, range: '1-{{Param.EndFrame}}' }
  script:
    actions:
      onRun: { command: blender, args: ['--background', '{{Param.BlenderFile}}', '--render-frame', '{{Task.Param.Frame}}'] }
`, { EndFrame: '24', BlenderFile: 'shots/a.blend', Format: 'OPEN_EXR' });
  assert.equal(t.name, 'Blender Scene Renderer');
  assert.deepEqual(t.jobs.map((j) => j.step), ['RenderScene', 'Encode']); // the one depended on first
  const [render, encode] = t.jobs;
  assert.equal(render!.spec.frames, '1-24');
  assert.equal(render!.spec.chunk, undefined);
  assert.equal(render!.spec.command, 'blender --background /home/ann/shots/a.blend --render-frame \\{frame\\}'); // --param paths: from where the submitter stands
  assert.deepEqual(encode!.after, [0]);
  assert.deepEqual(encode!.files, [{ path: '/farm/out/openjd-j1/step-1/Encode', data: 'ffmpeg -i out/render-%04d.OPEN_EXR\n', runnable: true }]);
  assert.equal(encode!.spec.name, 'Blender Scene Renderer / Encode');
});

test('openjd - range expressions become renderbus frames as the specification lists them', () => {
  assert.deepEqual(rangeExprToFrames('1 - 5'), { frames: '1-5', count: 5 });
  assert.deepEqual(rangeExprToFrames('1 - -1'), { frames: '1', count: 1 });
  assert.deepEqual(rangeExprToFrames('1-5:2'), { frames: '1-5x2', count: 3 });
  assert.deepEqual(rangeExprToFrames('10-15:2,1-5'), { frames: '1-5,10-14x2', count: 8 });
  assert.deepEqual(rangeExprToFrames('1-10:4'), { frames: '1-9x4', count: 3 });
  assert.deepEqual(rangeExprToFrames('10-1:-3'), { frames: '1-10x3', count: 4 });
  assert.throws(() => rangeExprToFrames('1-10:4,10-15'), /overlap/);
  assert.throws(() => rangeExprToFrames('-1-1'), /-1 is not a frame number/);
  assert.throws(() => rangeExprToFrames('1-5:0'), /must not be 0/);
  assert.throws(() => rangeExprToFrames('1..5'), /'1\.\.5' is not an integer, a range/);
  // a list of values, each a task
  const t = map(oneStep(`  parameterSpace:\n    taskParameterDefinitions: [{ name: Frame, type: INT, range: [3, '1', 7] }]\n${RUN}`));
  assert.equal(t.jobs[0]!.spec.frames, '1,3,7');
});

test('openjd - job parameters: overrides, types and constraints, each refusal naming the field or the --param', () => {
  const tpl = (defs: string) => oneStep(`  parameterSpace:\n    taskParameterDefinitions: [{ name: Frame, type: INT, range: '1-{{Param.N}}' }]\n${RUN}`, `parameterDefinitions:\n${defs}`);
  assert.equal(map(tpl('- { name: N, type: INT, default: 4 }')).jobs[0]!.spec.frames, '1-4');
  assert.equal(map(tpl('- { name: N, type: INT, default: 4 }'), { N: '9' }).jobs[0]!.spec.frames, '1-9');
  assert.equal(refusal(tpl('- { name: N, type: INT, default: 4 }'), { N: '2.5' }), "--param N: \"2.5\" is not an integer (parameter type INT)");
  assert.equal(refusal(tpl('- { name: N, type: INT, default: 4, maxValue: 8 }'), { N: '9' }), '--param N: 9 is more than maxValue 8');
  assert.equal(refusal(tpl('- { name: N, type: INT, default: 40, maxValue: 8 }')), 'parameterDefinitions[0].default: 40 is more than maxValue 8');
  assert.equal(refusal(tpl('- { name: N, type: INT, allowedValues: [2, 4] }'), { N: '3' }), '--param N: 3 is not one of allowedValues [2,4]');
  assert.equal(refusal(tpl('- { name: N, type: INT }')), "parameterDefinitions[0]: parameter 'N' has no default: give it with --param N=VALUE");
  assert.equal(refusal(tpl('- { name: N, type: INT, default: 4 }'), { M: '1' }), "--param M: the template has no parameter 'M' (its parameters: N)");
  assert.equal(refusal(tpl('- { name: N, type: BOOL, default: 4 }')), 'parameterDefinitions[0].type: "BOOL" is not a job parameter type (STRING, PATH, INT, FLOAT)');
  assert.equal(refusal(tpl('- { name: N, type: INT, default: 4, minLength: 2 }')), 'parameterDefinitions[0].minLength: unknown field (known here: name, type, description, default, allowedValues, userInterface, minValue, maxValue)');
  assert.match(refusal(oneStep(ONCE, 'parameterDefinitions:\n- { name: S, type: STRING, default: abc, maxLength: 2 }')), /^parameterDefinitions\[0\]\.default: 'abc' is longer than maxLength 2$/);
  assert.equal(refusal(oneStep(ONCE, 'parameterDefinitions:\n- { name: F, type: FLOAT, default: 1.5, minValue: 2 }')), 'parameterDefinitions[0].default: 1.5 is less than minValue 2');
});

test('openjd - what this farm cannot run is refused, naming its field', () => {
  const cases: [string, string | RegExp][] = [
    [oneStep(ONCE, 'jobEnvironments:\n- name: E\n  script: { actions: { onExit: { command: teardown } } }'), /^jobEnvironments\[0\]\.script\.actions\.onEnter: missing: the command to run/],
    [oneStep(ONCE, 'jobEnvironments:\n- name: E\n  script: { actions: { onEnter: { command: setup, cancelation: { mode: NOTIFY_THEN_TERMINATE } } } }'), /^jobEnvironments\[0\]\.script\.actions\.onEnter\.cancelation: NOTIFY_THEN_TERMINATE is not offered/],
    [oneStep(ONCE, 'jobEnvironments:\n- name: E\n  variables: { LD_PRELOAD: /x.so }'), /^jobEnvironments\[0\]\.variables\.LD_PRELOAD: LD_PRELOAD is the farm's to set/],
    [oneStep(`  parameterSpace:\n    taskParameterDefinitions:\n    - { name: Frame, type: INT, range: '1-10' }\n    - { name: Cam, type: STRING, range: [a, b] }\n${RUN}`), /^steps\[0\]\.parameterSpace\.taskParameterDefinitions\[1\]\.range: renderbus maps one task parameter to frames \(here 'Frame'\); 'Cam' takes 2 values too/],
    [oneStep(`  parameterSpace:\n    taskParameterDefinitions: [{ name: Frame, type: INT, range: '1-10' }, { name: B, type: INT, range: '1' }]\n    combination: '(Frame, B)'\n${RUN}`), /^steps\[0\]\.parameterSpace\.combination: the association '\(Frame, B\)' pairs parameters with different numbers of values$/],
    [oneStep(`  parameterSpace:\n    taskParameterDefinitions: [{ name: Frame, type: 'CHUNK[INT]', range: '1-10', chunks: { defaultTaskCount: 2, rangeConstraint: CONTIGUOUS } }]\n${RUN}`), /^steps\[0\]\.parameterSpace\.taskParameterDefinitions\[0\]\.type: CHUNK\[INT\] needs the TASK_CHUNKING extension/],
    [oneStep(`  parameterSpace:\n    taskParameterDefinitions: [{ name: Frame, type: 'CHUNK[INT]', range: '1-10', chunks: { defaultTaskCount: 0, rangeConstraint: CONTIGUOUS } }]\n${RUN}`, 'extensions: [TASK_CHUNKING]'), /^steps\[0\]\.parameterSpace\.taskParameterDefinitions\[0\]\.chunks\.defaultTaskCount: "0" must be an integer from 1 to 10000$/],
    [oneStep(`  parameterSpace:\n    taskParameterDefinitions: [{ name: Frame, type: INT, range: '1-10:4,10-15' }]\n${RUN}`), /^steps\[0\]\.parameterSpace\.taskParameterDefinitions\[0\]\.range: its ranges overlap/],
    [oneStep(`  hostRequirements: { amounts: [{ name: amount.worker.gpu, min: 1 }] }\n${ONCE}`), /^steps\[0\]\.hostRequirements\.amounts\[0\]\.name: "amount\.worker\.gpu" is not an amount this farm can require/],
    [oneStep(`  hostRequirements: { amounts: [{ name: amount.worker.vcpu, min: 1, max: 4 }] }\n${ONCE}`), /^steps\[0\]\.hostRequirements\.amounts\[0\]\.max: renderbus requirements are minimums only/],
    [oneStep(`  hostRequirements: { attributes: [{ name: attr.worker.os.family, anyOf: [linux, macos] }] }\n${ONCE}`), /^steps\[0\]\.hostRequirements\.attributes\[0\]\.anyOf: renderbus matches one OS family per requirement/],
    [oneStep(`  script:\n    actions: { onRun: { command: echo, cancelation: { mode: NOTIFY_THEN_TERMINATE } } }`), /^steps\[0\]\.script\.actions\.onRun\.cancelation: NOTIFY_THEN_TERMINATE is not offered/],
    [oneStep(`  script:\n    actions: { onRun: { command: echo, args: ['{{Session.WorkingDirectory}}/x'] } }`), /^steps\[0\]\.script\.actions\.onRun\.args\[0\]: \{\{Session\.WorkingDirectory\}\}: renderbus runs each task in no OpenJD session/],
    [oneStep(`  script:\n    actions: { onRun: { command: echo, args: ['{{Param.Nope}}'] } }`), /^steps\[0\]\.script\.actions\.onRun\.args\[0\]: \{\{Param\.Nope\}\} names no value available here$/],
    [oneStep(`  script:\n    actions: { onRun: { command: python3, args: ['-c', 'print(f"{x}")'] } }`), /^steps\[0\]\.script\.actions\.onRun\.args\[1\]: '\{x\}' in this text reads as a renderbus command token/],
    [oneStep(`  parameterSpace:\n    taskParameterDefinitions: [{ name: Frame, type: INT, range: '1-3' }]\n  script:\n    actions: { onRun: { command: sh, args: ['{{Task.File.R}}'] } }\n    embeddedFiles: [{ name: R, type: TEXT, data: 'echo {{Task.Param.Frame}}' }]`), /^steps\[0\]\.script\.embeddedFiles\[0\]\.data: \{\{Task\.Param\.Frame\}\}: differs from task to task, and embedded files are written once/],
    [oneStep(`  onFail: retry\n${ONCE}`), /^steps\[0\]\.onFail: unknown field/],
    [`specificationVersion: jobtemplate-2023-09\nname: T\nsteps:\n- name: A\n  dependencies: [{ dependsOn: B }]\n${ONCE}\n- name: B\n  dependencies: [{ dependsOn: A }]\n${ONCE}`, /^steps\[0\]\.dependencies: the steps 'A', 'B' depend on each other in a cycle$/],
    [oneStep(ONCE).replace('jobtemplate-2023-09', 'environment-2023-09'), /^specificationVersion: this is an environment template/],
    [oneStep(ONCE, 'extensions: [EXPR]'), /^extensions\[0\]: "EXPR" is not an extension this farm implements \(TASK_CHUNKING\)$/],
  ];
  for (const [src, want] of cases) {
    const msg = refusal(src);
    if (typeof want === 'string') assert.equal(msg, want);
    else assert.match(msg, want);
  }
  // every problem at once, each with its field
  const many = refusal(oneStep(`  hostRequirements: { amounts: [{ name: amount.worker.gpu, min: 1 }] }\n  script:\n    actions: { onRun: { command: echo, timeout: 0 } }`, 'jobEnvironments:\n- name: E\n  script: {}'));
  assert.match(many, /^3 problems:\n {2}jobEnvironments\[0\]\.script\.actions: missing: .*\n {2}steps\[0\]\.hostRequirements\.amounts\[0\]\.name: .*\n {2}steps\[0\]\.script\.actions\.onRun\.timeout: must be whole seconds/);
});

test('openjd - what maps: host requirements, environments in order, single-valued task parameters, CHUNK targetRuntimeSeconds', () => {
  const t = map(`specificationVersion: jobtemplate-2023-09
extensions: [TASK_CHUNKING]
name: T
jobEnvironments:
- { name: Job, variables: { A: job, B: job } }
steps:
- name: S
  stepEnvironments:
  - { name: Step, variables: { B: step } }
  hostRequirements:
    amounts: [{ name: Amount.Worker.Memory, min: 2047.5 }, { name: amount.worker.vcpu, min: 4 }]
    attributes: [{ name: attr.worker.os.family, anyOf: [linux] }, { name: attr.worker.cpu.arch, allOf: [x86_64] }]
  parameterSpace:
    taskParameterDefinitions:
    - { name: Frame, type: 'CHUNK[INT]', range: '1-100', chunks: { defaultTaskCount: 10, targetRuntimeSeconds: 120, rangeConstraint: NONCONTIGUOUS } }
    - { name: Layer, type: STRING, range: [beauty] }
    combination: Frame * Layer
  script:
    actions: { onRun: { command: render, args: ['-l', '{{Task.Param.Layer}}', '-f', '{{Task.Param.Frame}}'], timeout: 3600 } }
`);
  const spec = t.jobs[0]!.spec;
  assert.deepEqual(spec.env, { A: 'job', B: 'step' });
  assert.deepEqual(spec.requirements, { ramMb: 2048, cpuCount: 4, os: 'linux', machine: 'x86_64/*' });
  assert.equal(spec.chunk, 10);
  assert.equal(spec.taskDuration, 120);
  assert.equal(spec.timeLimit, 3600);
  assert.deepEqual(parseTemplate(spec.command).args, ['render', '-l', 'beauty', '-f', '{first}-{last}']);

  // two steps may each have an environment of the same name; a job environment's name is the job's alone
  const twoSteps = (jobEnv: string) => `specificationVersion: jobtemplate-2023-09\nname: T\n${jobEnv}steps:\n- name: A\n  stepEnvironments: [{ name: Look, variables: { X: a } }]\n${ONCE}\n- name: B\n  stepEnvironments: [{ name: Look, variables: { X: b } }]\n${ONCE}\n`;
  assert.deepEqual(map(twoSteps('')).jobs.map((j) => j.spec.env), [{ X: 'a' }, { X: 'b' }]);
  assert.equal(refusal(twoSteps('jobEnvironments: [{ name: Look, variables: { Y: j } }]\n')), "2 problems:\n  steps[0].stepEnvironments[0].name: 'Look' names another environment of this template too\n  steps[1].stepEnvironments[0].name: 'Look' names another environment of this template too");
});

test('openjd - environment scripts run around each task: in order, openjd_env sets variables, exits in reverse; a failed onEnter runs nothing', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rb-openjd-env-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const doc = parseTemplateText(`specificationVersion: jobtemplate-2023-09
name: T
jobEnvironments:
- name: Outer
  script:
    actions:
      onEnter: { command: sh, args: ['-c', 'echo enter-outer; echo "openjd_env: A=1"; echo "openjd_env: B=2"; echo "openjd_unset_env: B"'] }
      onExit: { command: sh, args: ['-c', 'echo "exit-outer A=$A"'] }
steps:
- name: S
  stepEnvironments:
  - name: Inner
    script:
      actions:
        onEnter: { command: sh, args: ['{{Env.File.Check}}'] }
        onExit: { command: echo, args: [exit-inner] }
      embeddedFiles: [{ name: Check, type: TEXT, data: 'echo "enter-inner A=$A"; test -z "$FAIL_INNER"' }]
  script:
    actions: { onRun: { command: sh, args: ['-c', 'echo "run A=$A B=\${B-unset}"'] } }
`);
  const [job] = templateToJobs(doc, { overrides: new Map(), templateDir: dir, cwd: dir, filesDir: dir }).jobs;
  for (const f of job!.files) {
    mkdirSync(dirname(f.path), { recursive: true });
    writeFileSync(f.path, f.data);
  }
  assert.deepEqual(job!.files.map((f) => f.path.slice(dir.length)), ['/step-1/env-1/Check', '/step-1/openjd-environments.sh']);
  const [cmd, ...args] = parseTemplate(job!.spec.command).args;
  const ok = spawnSync(cmd!, args, { encoding: 'utf8' });
  assert.equal(ok.status, 0, ok.stderr);
  assert.deepEqual(ok.stdout.trim().split('\n').filter((l) => !l.startsWith('openjd_')), ['enter-outer', 'enter-inner A=1', 'run A=1 B=unset', 'exit-inner', 'exit-outer A=1']);
  const failed = spawnSync(cmd!, args, { encoding: 'utf8', env: { ...process.env, FAIL_INNER: '1' } });
  assert.equal(failed.status, 1);
  assert.deepEqual(failed.stdout.trim().split('\n').filter((l) => !l.startsWith('openjd_')), ['enter-outer', 'enter-inner A=1', 'exit-outer A=1']); // the task did not run; Outer, entered, exits
  assert.equal(failed.stderr, "renderbus: environment 'Inner' failed to enter\n");
});

test('openjd - arguments reach the command exactly: quotes, spaces, $ and empty ones survive the template', () => {
  const args = ["it's", 'a "b"', '$HOME and ${USER}', '', 'back\\slash', '*.png', 'a;b|c'];
  const t = map(oneStep(`  script:\n    actions: { onRun: { command: printf, args: ${JSON.stringify(args)} } }`));
  assert.deepEqual(parseTemplate(t.jobs[0]!.spec.command).args, ['printf', ...args]);
});

test('openjd - a job file takes no --param; a template name must resolve to 1-128 characters', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rb-openjd-'));
  try {
    writeFileSync(join(dir, 'shot.json'), JSON.stringify({ scene: 'shot.pov', frames: '1' }));
    writeFileSync(join(dir, 'shot.pov'), 'sphere { 0, 1 }\n');
    assert.throws(() => buildJob({ args: ['shot.json'], flags: { param: ['A=1'] }, cwd: dir, defaults: { group: 'g', outputRoot: '/o' }, jobId: 'j1' }), /^UsageError: --param: only an Open Job Description template/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(refusal(oneStep(ONCE).replace('name: T', "name: '{{Param.N}}'") + '\nparameterDefinitions: [{ name: N, type: STRING, default: "" }]\n'), "name: '' must be 1 to 128 printable characters once resolved");
});

test('openjd - syntax errors name their line; JSON templates read too', () => {
  assert.throws(() => parseTemplateText('steps:\n  - name: a\n   bad: [\n'), (err: FarmError) => err.code === 'RB_BAD_TEMPLATE' && /^line \d+, column \d+: /.test(err.message));
  assert.throws(() => parseTemplateText('a: 1\na: 2\n'), /Map keys must be unique/);
  // aliases that multiply (each list nine of the one before): refused, not expanded
  const laughs = ['l0: &l0 [x, x, x, x, x, x, x, x, x]', ...Array.from({ length: 8 }, (_, i) => `l${i + 1}: &l${i + 1} [${Array(9).fill(`*l${i}`).join(', ')}]`)];
  assert.throws(() => parseTemplateText(laughs.join('\n')), (err: FarmError) => err.code === 'RB_BAD_TEMPLATE' && /Excessive alias count/.test(err.message));
  const t = map(JSON.stringify({ specificationVersion: 'jobtemplate-2023-09', name: 'J', steps: [{ name: 'S', script: { actions: { onRun: { command: 'true' } } } }] }));
  assert.equal(t.jobs[0]!.spec.command, 'true');
});
