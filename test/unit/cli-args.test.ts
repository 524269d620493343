import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { FarmError } from '../../protocol/index.ts';
import { renderServerOptions } from '../../tools/cli/actor-commands.ts';
import { UsageError } from '../../tools/cli/cli-error.ts';
import type { CommandContext } from '../../tools/cli/command-context.ts';
import type { Io } from '../../tools/cli/format.ts';
import { duration, table } from '../../tools/cli/format.ts';
import { buildJob } from '../../tools/cli/job-file.ts';
import { defaultHandlers, JOB_FILE_FIELDS, REQUIREMENT_FIELDS, run, type CommandName, type Handlers } from '../../tools/cli/main.ts';
import { hostToken, parseCount, parsePackages, parsePort } from '../../tools/cli/option-values.ts';
import { groupName } from '../../tools/cli/os-user.ts';
import { checkFilter, summarize, tailJson } from '../../tools/cli/tail.ts';
import { encodeAny, JobSpec, Requirements } from '../../protocol/index.ts';

/** An Io that keeps what was written. */
function captureIo(): Io & { out(): string; err(): string } {
  const sink = () => {
    const chunks: string[] = [];
    const w = new Writable({
      write(chunk: Buffer | string, _enc, cb) {
        chunks.push(chunk.toString());
        cb();
      },
    });
    return { w, text: () => chunks.join('') };
  };
  const o = sink();
  const e = sink();
  return { stdout: o.w, stderr: e.w, out: o.text, err: e.text };
}

/** Handlers that record what commander handed them, or do `impl`. */
function fakeHandlers(impl?: (c: CommandContext) => Promise<number>) {
  const calls: { name: CommandName; c: CommandContext }[] = [];
  const handlers = Object.fromEntries(
    (Object.keys(defaultHandlers) as CommandName[]).map((name) => [
      name,
      async (c: CommandContext) => {
        calls.push({ name, c });
        return impl ? impl(c) : 0;
      },
    ]),
  ) as Handlers;
  return { calls, handlers };
}

const argv = (...a: string[]) => ['node', 'renderbus', ...a];

test('cli - submit flags reach the command, repeatable ones collected, global options anywhere', async () => {
  const io = captureIo();
  const { calls, handlers } = fakeHandlers();
  const code = await run(
    argv('--site', 'lab', 'submit', 'shot.pov', '--frames', '1-3', '--require', 'povray@3.7.*', '--require', 'blender@*', '--notify', 'http://a', '--wait', '--data', '/d'),
    io,
    handlers,
  );
  assert.equal(code, 0, io.err());
  assert.equal(calls.length, 1);
  const { name, c } = calls[0]!;
  assert.equal(name, 'submit');
  assert.deepEqual(c.args, ['shot.pov']);
  assert.deepEqual(c.opts, { frames: '1-3', require: ['povray@3.7.*', 'blender@*'], notify: ['http://a'], wait: true });
  assert.equal(c.globals.site, 'lab');
  assert.equal(c.globals.data, '/d', 'a global option after the command still counts');
});

test('cli - RENDERBUS_NATS fills --nats, and --nats wins over it', async (t) => {
  const saved = process.env.RENDERBUS_NATS;
  t.after(() => (saved === undefined ? delete process.env.RENDERBUS_NATS : (process.env.RENDERBUS_NATS = saved)));
  process.env.RENDERBUS_NATS = 'nats://env:4222';
  const a = fakeHandlers();
  await run(argv('jobs'), captureIo(), a.handlers);
  assert.equal(a.calls[0]!.c.globals.nats, 'nats://env:4222');
  const b = fakeHandlers();
  await run(argv('jobs', '--nats', 'nats://flag:4222'), captureIo(), b.handlers);
  assert.equal(b.calls[0]!.c.globals.nats, 'nats://flag:4222');
});

test('cli - job and cancel take the id as their argument', async () => {
  const { calls, handlers } = fakeHandlers();
  await run(argv('job', 'j123', '--json'), captureIo(), handlers);
  await run(argv('cancel', 'j456'), captureIo(), handlers);
  assert.deepEqual(calls.map((x) => [x.name, x.c.args, x.c.opts]), [
    ['job', ['j123'], { json: true }],
    ['cancel', ['j456'], {}],
  ]);
});

test('cli - exit codes: 2 for usage errors, 1 for failures, 0 for help', async () => {
  const { handlers } = fakeHandlers();
  let io = captureIo();
  assert.equal(await run(argv('submit', '--frobnicate'), io, handlers), 2);
  assert.match(io.err(), /unknown option '--frobnicate'/);
  io = captureIo();
  assert.equal(await run(argv('job'), io, handlers), 2, 'a missing argument');
  assert.match(io.err(), /missing required argument 'id'/);
  io = captureIo();
  assert.equal(await run(argv('nonsense'), io, handlers), 2);

  const throwing = (err: Error) => fakeHandlers(async () => Promise.reject(err)).handlers;
  io = captureIo();
  assert.equal(await run(argv('submit', 'x.pov'), io, throwing(new UsageError('--frames: range bad'))), 2);
  assert.match(io.err(), /^renderbus submit: --frames: range bad\n\(see 'renderbus submit --help'\)/);
  io = captureIo();
  assert.equal(await run(argv('jobs'), io, throwing(new FarmError('RB_FARM_NOT_FOUND', 'no farm at /x'))), 1);
  assert.equal(io.err(), 'renderbus jobs: no farm at /x\n');

  io = captureIo();
  assert.equal(await run(argv('--help'), io, handlers), 0);
  for (const cmd of Object.keys(defaultHandlers)) assert.ok(io.out().includes(cmd), `--help lists ${cmd}`);
  io = captureIo();
  assert.equal(await run(argv('--version'), io, handlers), 0);
  assert.match(io.out(), /^\d+\.\d+\.\d+\n$/);
});

test("cli - submit's help names every field of the job schema (written out so that --help loads no schema)", () => {
  assert.deepEqual(JOB_FILE_FIELDS.split(', '), Object.keys(JobSpec.properties));
  assert.deepEqual(REQUIREMENT_FIELDS.split(', '), Object.keys(Requirements.properties));
});

test('cli - flags become a job spec with the defaults filled in', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rb-args-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'ball.pov'), '');
  writeFileSync(join(dir, 'in.txt'), '');
  const defaults = { user: 'alice', group: 'artists', outputRoot: join(dir, 'out') };
  const a = buildJob({
    args: ['ball.pov'],
    flags: { frames: '1-100x5', resolution: '320x240', priority: '7', chunk: '4', require: ['povray@3.7.*'], license: ['pov'], notify: ['https://x/y'], name: 'Ball bounce' },
    cwd: dir,
    defaults,
    jobId: 'jabc',
  });
  assert.deepEqual(a.spec, {
    scene: join(dir, 'ball.pov'),
    frames: '1-100x5',
    resolution: '320x240',
    priority: 7,
    chunk: 4,
    requirements: { packages: ['povray@3.7.*'], licenses: ['pov'] },
    notify: ['https://x/y'],
    name: 'Ball bounce',
    user: 'alice',
    group: 'artists',
    renderer: 'povray',
    output: { dir: join(dir, 'out', 'Ball_bounce-jabc'), pattern: 'frame_####.png' },
  });
  assert.equal(a.frames.length, 20);

  const b = buildJob({ args: ['in.txt'], flags: { frames: '1,3', command: 'cp {scene} {output}', pattern: 'o_##.txt', output: 'o', user: 'bob', group: 'fx' }, cwd: dir, defaults, jobId: 'jdef' });
  assert.equal(b.spec.renderer, 'command');
  assert.equal(b.spec.command, 'cp {scene} {output}');
  assert.deepEqual(b.spec.output, { dir: join(dir, 'o'), pattern: 'o_##.txt' });
  assert.equal(b.spec.user, 'bob');
  assert.equal(b.spec.group, 'fx');
});

test('cli - bad flag values name the flag', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rb-args-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'ball.pov'), '');
  const build = (flags: Record<string, unknown>, args = ['ball.pov']) =>
    buildJob({ args, flags, cwd: dir, defaults: { user: 'u', group: 'g', outputRoot: dir }, jobId: 'j1' });
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ frames: '10-1' }, /^--frames: range '10-1' ends before it starts$/],
    [{ frames: 'abc' }, /^--frames: 'abc' is not a frame/],
    [{ frames: '1', priority: 'soon' }, /^--priority: 'soon' is not a whole number/],
    [{ frames: '1', priority: '1001' }, /^--priority: Expected integer to be less or equal to 1000/],
    [{ frames: '1', chunk: '1.5' }, /^--chunk: '1.5' is not a whole number/],
    [{ frames: '1', resolution: '320' }, /^--resolution: "320" is not WIDTHxHEIGHT/],
    [{ frames: '1', renderer: 'maya' }, /^--renderer: "maya" is not a renderer this farm drives/],
    [{ frames: '1', renderer: 'command' }, /^--renderer: renderer 'command' needs a command template/],
    [{ frames: '1', require: ['povray@3.x!'] }, /^--require: version '3\.x!'/],
    [{ frames: '1', notify: ['ftp://x'] }, /^--notify: "ftp:\/\/x" is not an http/],
    [{ frames: '1', pattern: 'frame.png' }, /^--pattern: "frame.png" must be a file name with a run of '#'/],
    [{}, /^frames: missing: give --frames/],
  ];
  for (const [flags, re] of cases) {
    assert.throws(() => build(flags), (err: unknown) => err instanceof UsageError && re.test(err.message), `${JSON.stringify(flags)} should fail with ${re}`);
  }
  assert.throws(() => build({ frames: '1' }, ['nope.pov']), /^UsageError: scene: nope\.pov does not exist$/);
  assert.throws(() => build({ frames: '1' }, []), /give a scene or a job file/);
  assert.throws(() => build({ frames: '1' }, ['ball.pov', 'other.pov']), /'ball.pov' is not a job file/);
});

test('cli - render server options: packages, licenses, host, slots and grace', () => {
  assert.deepEqual(renderServerOptions({ slots: '3', host: 'box-2', packages: 'povray@3.7.0.10, blender@4.1', licenses: 'arnold,nuke', grace: '90' }), {
    host: 'box-2',
    slots: 3,
    graceMs: 90_000,
    packages: [
      { name: 'povray', version: '3.7.0.10' },
      { name: 'blender', version: '4.1' },
    ],
    licenses: ['arnold', 'nuke'],
  });
  assert.deepEqual(parsePackages('--packages', 'autodesk/maya@2024'), [{ family: 'autodesk', name: 'maya', version: '2024' }]);
  assert.throws(() => parsePackages('--packages', 'povray'), /--packages: 'povray' is not 'name@version'/);
  assert.throws(() => parsePackages('--packages', 'povray@3.7,'), /--packages: .* has an empty item/);
  assert.throws(() => renderServerOptions({ host: 'Box.local' }), /--host: 'Box.local' must be lower-case/);
  assert.throws(() => renderServerOptions({ slots: '0' }), /--slots: 0 is out of range \(1-1024\)/);
  assert.equal(renderServerOptions({ slots: '1' }).graceMs, 60_000, 'a minute by default');
  assert.throws(() => renderServerOptions({ grace: '-5' }), /--grace: '-5' is not a whole number/);
  assert.throws(() => parseCount('--slots', 'four', { min: 1, max: 8 }), /--slots: 'four' is not a whole number/);
  assert.equal(parsePort('--port', '-1'), -1);
  assert.throws(() => parsePort('--port', '70000'), /--port: 70000 is out of range/);
  assert.equal(hostToken('Render.Box_01.example.com'), 'render-box_01-example-com');
  assert.equal(hostToken('--'), 'host');
});

test('cli - the group name comes from the group file, else the number', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rb-group-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'group'), 'root:x:0:\nartists:x:1007:alice\n');
  assert.equal(groupName(1007, join(dir, 'group')), 'artists');
  assert.equal(groupName(42, join(dir, 'group')), '42');
});

test('tail - subject filters are checked', () => {
  assert.equal(checkFilter('rb.studio.evt.>'), 'rb.studio.evt.>');
  assert.equal(checkFilter('rb.*.evt.job.*.done'), 'rb.*.evt.job.*.done');
  for (const bad of ['rb..evt', 'rb.>.evt', 'rb.st*', 'rb studio', '']) assert.throws(() => checkFilter(bad), UsageError, bad);
});

test('tail - a message becomes one compact line, or one JSON object', () => {
  const frame = { v: 1, jobId: 'j1', frame: 7, event: 'done', at: 1, host: 'box', slot: 0, attempt: 1, stats: { wallMs: 812.345, cpuMs: 1, peakRssKb: 2, bytesWritten: 3 } };
  assert.equal(summarize(frame), 'done jobId=j1 frame=7 host=box slot=0 attempt=1 stats=812ms');
  const job = { v: 1, jobId: 'j1', event: 'progress', at: 1, job: { state: 'rendering', counts: { total: 36, done: 12 } } };
  assert.equal(summarize(job), 'progress jobId=j1 job=rendering:12/36');
  assert.equal(summarize({ error: { code: 'RB_X', message: 'it broke badly' } }), 'error=RB_X:"it broke badly"');
  assert.deepEqual(JSON.parse(tailJson('rb.s.evt.x', encodeAny({ a: 1, b: new Uint8Array([1, 2]) }))), { subject: 'rb.s.evt.x', data: { a: 1, b: { base64: 'AQI=' } } });
  assert.deepEqual(JSON.parse(tailJson('rb.s.x', new TextEncoder().encode('hello'))).subject, 'rb.s.x');
});

test('format - durations and tables', () => {
  assert.deepEqual([340, 12_340, 245_000, 7_380_000].map(duration), ['340ms', '12.3s', '4m05s', '2h03m']);
  assert.equal(table(['A', 'LONG'], [['xyz', '1'], ['q', '22']]), 'A    LONG\nxyz  1\nq    22\n');
});
