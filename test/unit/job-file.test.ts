import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UsageError } from '../../tools/cli/cli-error.ts';
import { buildJob, readJobFile, type JobInput, type SubmitFlags } from '../../tools/cli/job-file.ts';

/** A folder with a scene, a job file written from `job`, and buildJob run from another folder. */
function workspace(t: { after(fn: () => void): void }) {
  const dir = mkdtempSync(join(tmpdir(), 'rb-jobfile-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'shots'));
  mkdirSync(join(dir, 'elsewhere'));
  writeFileSync(join(dir, 'shots', 'shot.pov'), 'sphere { 0, 1 }\n');
  writeFileSync(join(dir, 'shots', 'tex.png'), 'png');
  writeFileSync(join(dir, 'shots', 'notes.txt'), 'text');
  const build = (job: unknown, flags: SubmitFlags = {}, args: string[] = ['../shots/shot.json']) => {
    writeFileSync(join(dir, 'shots', 'shot.json'), typeof job === 'string' ? job : JSON.stringify(job));
    return buildJob(anInput({ args, flags, cwd: join(dir, 'elsewhere') }));
  };
  return { dir, build };
}

function anInput(o: Partial<JobInput> & { cwd: string }): JobInput {
  return {
    args: [],
    flags: {},
    defaults: { user: 'alice', group: 'artists', outputRoot: '/srv/out' },
    jobId: 'jtest0001',
    ...o,
  };
}

/** Runs `fn`, expects a UsageError, and returns its message. */
function usageError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof UsageError, `expected a UsageError, got ${String(err)}`);
    return err.message;
  }
  assert.fail('expected a UsageError, nothing was thrown');
}

test('job file - a complete file becomes a spec with paths resolved against its folder', (t) => {
  const { dir, build } = workspace(t);
  const { spec, frames, jobFile } = build({
    name: 'Shot 10',
    scene: 'shot.pov',
    renderer: 'povray',
    frames: '1-5,10',
    chunk: 2,
    resolution: '640x480',
    priority: 10,
    user: 'bob',
    group: 'fx',
    notify: ['https://hooks.example/done'],
    requirements: { os: 'linux@6.*', machine: 'x86_64/*', cpuCount: 2, ramMb: 512, packages: ['povray@3.7.*'], licenses: ['pov'] },
    supportFiles: ['tex.png'],
    output: { dir: 'frames', pattern: 'shot_####.png' },
  });
  assert.equal(jobFile, '../shots/shot.json');
  assert.deepEqual(frames, [1, 2, 3, 4, 5, 10]);
  assert.deepEqual(spec, {
    name: 'Shot 10',
    scene: join(dir, 'shots', 'shot.pov'),
    renderer: 'povray',
    frames: '1-5,10',
    chunk: 2,
    resolution: '640x480',
    priority: 10,
    user: 'bob',
    group: 'fx',
    notify: ['https://hooks.example/done'],
    requirements: { os: 'linux@6.*', machine: 'x86_64/*', cpuCount: 2, ramMb: 512, packages: ['povray@3.7.*'], licenses: ['pov'] },
    supportFiles: [join(dir, 'shots', 'tex.png')],
    output: { dir: join(dir, 'shots', 'frames'), pattern: 'shot_####.png' },
  });
});

test('job file - a minimal file gets the defaults', (t) => {
  const { dir, build } = workspace(t);
  const { spec } = build({ scene: 'shot.pov', frames: '1' });
  assert.deepEqual(spec, {
    scene: join(dir, 'shots', 'shot.pov'),
    frames: '1',
    name: 'shot',
    user: 'alice',
    group: 'artists',
    priority: 50,
    renderer: 'povray',
    output: { dir: '/srv/out/shot-jtest0001', pattern: 'frame_####.png' },
  });
});

test('job file - flags override its fields and --output is relative to the working folder', (t) => {
  const { dir, build } = workspace(t);
  const { spec } = build(
    { scene: 'shot.pov', frames: '1-100', priority: 80, requirements: { os: 'linux@*', packages: ['povray@3.6.*'] }, output: { pattern: 'a_#.png' } },
    { frames: '1-3', priority: '5', require: ['povray@3.7.*'], output: 'out' },
  );
  assert.equal(spec.frames, '1-3');
  assert.equal(spec.priority, 5);
  assert.deepEqual(spec.requirements, { os: 'linux@*', packages: ['povray@3.7.*'] }, 'the other requirements of the file stay');
  assert.deepEqual(spec.output, { dir: join(dir, 'elsewhere', 'out'), pattern: 'a_#.png' });
});

test('job file - a scene after the job file replaces its scene, relative to the working folder', (t) => {
  const { dir, build } = workspace(t);
  writeFileSync(join(dir, 'elsewhere', 'other.pov'), '');
  const { spec } = build({ scene: 'shot.pov', frames: '1' }, {}, ['../shots/shot.json', 'other.pov']);
  assert.equal(spec.scene, join(dir, 'elsewhere', 'other.pov'));
  assert.equal(spec.name, 'other');
});

test('job file - a field of the wrong type is named with its path and the expectation', (t) => {
  const { build } = workspace(t);
  const msg = usageError(() => build({ scene: 'shot.pov', frames: '1', priority: 'high' }));
  assert.match(msg, /^job file \.\.\/shots\/shot\.json: \/priority: Expected integer, got "high"/);
});

test('job file - a number out of range is refused', (t) => {
  const { build } = workspace(t);
  assert.match(usageError(() => build({ scene: 'shot.pov', frames: '1', priority: 5000 })), /\/priority: Expected integer to be less or equal to 1000/);
  assert.match(usageError(() => build({ scene: 'shot.pov', frames: '1', chunk: 0 })), /\/chunk: Expected integer to be greater or equal to 1/);
});

test('job file - an unknown field is named, with the fields it could have meant', (t) => {
  const { build } = workspace(t);
  const msg = usageError(() => build({ scene: 'shot.pov', frames: '1', colour: 'red' }));
  assert.match(msg, /\/colour: unknown field \(known fields: name, scene, /);
  assert.match(usageError(() => build({ scene: 'shot.pov', frames: '1', requirements: { gpu: 'any' } })), /\/requirements\/gpu: unknown field \(known fields: machine, os, /);
});

test('job file - malformed resolution, notify URL and output pattern each say what is expected', (t) => {
  const { build } = workspace(t);
  assert.match(usageError(() => build({ scene: 'shot.pov', frames: '1', resolution: '320by240' })), /\/resolution: "320by240" is not WIDTHxHEIGHT/);
  assert.match(usageError(() => build({ scene: 'shot.pov', frames: '1', notify: ['mailto:a@b'] })), /\/notify\/0: "mailto:a@b" is not an http/);
  assert.match(usageError(() => build({ scene: 'shot.pov', frames: '1', output: { pattern: 'frame.png' } })), /\/output\/pattern: "frame.png" must be a file name with a run of '#'/);
});

test('job file - frames that end before they start, or are not frames, are refused', (t) => {
  const { build } = workspace(t);
  assert.match(usageError(() => build({ scene: 'shot.pov', frames: '10-1' })), /\/frames: range '10-1' ends before it starts/);
  assert.match(usageError(() => build({ scene: 'shot.pov', frames: 'abc' })), /\/frames: 'abc' is not a frame/);
  assert.match(usageError(() => build({ scene: 'shot.pov', frames: 12 })), /\/frames: Expected string, got 12/);
});

test('job file - an unknown renderer is refused, naming the ones there are', (t) => {
  const { build } = workspace(t);
  assert.match(usageError(() => build({ scene: 'shot.pov', frames: '1', renderer: 'maya' })), /\/renderer: "maya" is not a renderer this farm drives \(povray, blender, command\)/);
});

test('job file - the command renderer needs a command, and povray takes none', (t) => {
  const { build } = workspace(t);
  assert.match(usageError(() => build({ scene: 'notes.txt', frames: '1', renderer: 'command' })), /\/renderer: renderer 'command' needs a command template/);
  assert.match(usageError(() => build({ scene: 'shot.pov', frames: '1', renderer: 'povray', command: 'true' })), /\/command: a command template is only used with renderer 'command'/);
  assert.match(usageError(() => build({ scene: 'notes.txt', frames: '1' })), /renderer: cannot tell which renderer renders 'notes.txt'/);
  assert.equal(build({ scene: 'notes.txt', frames: '1', command: 'cat {scene}' }).spec.renderer, 'command', 'a command implies the command renderer');
});

test('job file - a scene that does not exist, or is a folder, is refused', (t) => {
  const { build } = workspace(t);
  assert.match(usageError(() => build({ scene: 'missing.pov', frames: '1' })), /job file \.\.\/shots\/shot\.json: \/scene: .*missing\.pov does not exist/);
  assert.match(usageError(() => build({ scene: '.', frames: '1', renderer: 'povray' })), /\/scene: .* is a folder, not a scene file/);
  assert.match(usageError(() => build({ scene: 'shot.pov', frames: '1', supportFiles: ['nope.png'] })), /\/supportFiles\/0: .*nope\.png does not exist/);
});

test('job file - missing scene and frames say how to give them', (t) => {
  const { build } = workspace(t);
  const msg = usageError(() => build({}));
  assert.match(msg, /scene: missing: give the scene file after \.\.\/shots\/shot\.json, or "scene" in the job file/);
  assert.match(msg, /frames: missing: give --frames/);
});

test('job file - a bad requirement pattern names the requirement', (t) => {
  const { build } = workspace(t);
  assert.match(usageError(() => build({ scene: 'shot.pov', frames: '1', requirements: { packages: ['povray@3.7.x!'] } })), /\/requirements\/packages\/0: version '3\.7\.x!'/);
  assert.match(usageError(() => build({ scene: 'shot.pov', frames: '1', requirements: { machine: 'x86_64@1' } })), /\/requirements\/machine: 'x86_64@1' takes no version/);
});

test('job file - every problem is reported at once', (t) => {
  const { build } = workspace(t);
  const msg = usageError(() => build({ scene: 'shot.pov', frames: '9-2', priority: -1, colour: 1 }));
  assert.match(msg, /^the job has 3 problems:/);
  for (const field of ['/frames', '/priority', '/colour']) assert.ok(msg.includes(field), `${field} in: ${msg}`);
});

test('job file - bad os and cpu patterns are listed with the file\'s other problems', (t) => {
  const { build } = workspace(t);
  const msg = usageError(() => build({ scene: 'shot.pov', frames: '1', priority: -1, requirements: { os: 'linux@6.x!', cpu: 'intel/xeon/gold', machine: 'x86_64@1' } }));
  assert.match(msg, /^the job has 4 problems:/);
  assert.match(msg, /\n {2}job file \.\.\/shots\/shot\.json: \/requirements\/os: version '6\.x!' in 'linux@6\.x!' must be dotted parts/);
  assert.match(msg, /\n {2}job file \.\.\/shots\/shot\.json: \/requirements\/cpu: 'intel\/xeon\/gold' is not a pattern like 'family\/type@version'/);
  assert.match(msg, /\n {2}job file \.\.\/shots\/shot\.json: \/requirements\/machine: 'x86_64@1' takes no version/);
  assert.match(msg, /\n {2}job file \.\.\/shots\/shot\.json: \/priority: /);
});

test('job file - a JSON syntax error names its line and column and shows the line', (t) => {
  const { build } = workspace(t);
  const msg = usageError(() => build('{\n  "scene": "shot.pov",\n  "frames": 1-3\n}\n'));
  assert.equal(msg, `job file ../shots/shot.json: not valid JSON at line 3, column 14: Expected ',' or '}' after property value\n      "frames": 1-3\n                 ^`);
  assert.match(usageError(() => build('{"scene": ')), /^job file \.\.\/shots\/shot\.json: not valid JSON at line 1, column 11: Unexpected end of JSON input/);
  assert.match(usageError(() => build('\n')), /not valid JSON: the file is empty/);
});

test('job file - not JSON, not an object, or not there', (t) => {
  const { dir, build } = workspace(t);
  assert.match(usageError(() => build('{"scene": ')), /job file \.\.\/shots\/shot\.json: not valid JSON/);
  assert.match(usageError(() => build('[1, 2]')), /must hold one JSON object \(the job description\), not an array/);
  assert.match(usageError(() => readJobFile(join(dir, 'none.json'), 'none.json')), /^job file none\.json: does not exist$/);
});
