import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { codecs, FarmError, JOB_ENV_LIMITS, PROTOCOL_MAJOR, prepareJob, type AssignRequest } from '../../protocol/index.ts';
import { rendererEnv } from '../../actors/render-slot/index.ts';
import { UsageError } from '../../tools/cli/cli-error.ts';
import { buildJob, type SubmitFlags } from '../../tools/cli/job-file.ts';
import { aJobSpec, aTaskAssignment } from '../helpers/builders.ts';

/** The scheduler's check of a submitted job: the RB_BAD_JOB message, or null when it passes. */
function refusal(env: unknown): string | null {
  try {
    prepareJob(codecs.jobSpec.check({ ...aJobSpec(), env }));
    return null;
  } catch (err) {
    assert.ok(err instanceof FarmError, String(err));
    assert.ok(err.code === 'RB_BAD_JOB' || err.code === 'RB_SCHEMA_MISMATCH', err.code);
    return err.message;
  }
}

/** `renderbus submit`'s check of a job file's env (and --env flags): the UsageError message. */
function submitRefusal(t: { after(fn: () => void): void }, env: unknown, flags: SubmitFlags = {}): string | null {
  const dir = mkdtempSync(join(tmpdir(), 'rb-env-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'shot.pov'), 'sphere { 0, 1 }\n');
  writeFileSync(join(dir, 'shot.json'), JSON.stringify({ scene: 'shot.pov', frames: '1', ...(env === undefined ? {} : { env }) }));
  try {
    buildJob({ args: [join(dir, 'shot.json')], flags, cwd: dir, defaults: { user: 'a', group: 'g', outputRoot: dir }, jobId: 'jenv0001' });
    return null;
  } catch (err) {
    assert.ok(err instanceof UsageError, String(err));
    return err.message;
  }
}

test('job env - good variables pass the scheduler and the job file alike', (t) => {
  const env = { OCIO: '/studio/aces.ocio', _X1: 'a=b c', EMPTY: '' };
  assert.equal(refusal(env), null);
  assert.equal(submitRefusal(t, env), null);
});

test('job env - the scheduler refuses a bad variable by its name', () => {
  const cases: [unknown, RegExp][] = [
    [{ '1ABC': 'x' }, /1ABC/],
    [{ 'A-B': 'x' }, /A-B/],
    [{ 'A=B': 'x' }, /A=B/],
    [{ '': 'x' }, /env/],
    [{ PATH: '/tmp/evil' }, /env\.PATH: PATH is the farm's to set/],
    [{ LD_PRELOAD: '/tmp/evil.so' }, /env\.LD_PRELOAD/],
    [{ BASH_ENV: '/tmp/x' }, /env\.BASH_ENV/],
    [{ A: 1 }, /\/env\/A|env\.A/],
    [{ A: null }, /\/env\/A|env\.A/],
    [{ A: 'x\0y' }, /NUL|env\/A|env\.A/],
    [{ A: 'x'.repeat(JOB_ENV_LIMITS.valueChars + 1) }, /\/env\/A|env\.A/],
    [Object.fromEntries(Array.from({ length: JOB_ENV_LIMITS.vars + 1 }, (_, i) => [`V${i}`, 'x'])), /env/],
    [Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`V${i}`, 'x'.repeat(JOB_ENV_LIMITS.valueChars)])), /env: the variables take \d+ characters, at most 16384/],
    [['A=1'], /env/],
    ['A=1', /env/],
  ];
  for (const [env, expected] of cases) {
    const msg = refusal(env);
    assert.ok(msg !== null, `${JSON.stringify(env).slice(0, 60)} passed`);
    assert.match(msg, expected);
  }
});

test('job env - the job file checks name each bad variable, with the rest of the job', (t) => {
  const msg = submitRefusal(t, { 'BAD NAME': 'x', PATH: '/tmp', GOOD: 'y', NUM: 3 });
  assert.ok(msg);
  assert.match(msg, /the job has 3 problems/);
  assert.match(msg, /job file .*shot\.json: \/env\/BAD NAME: 'BAD NAME' is not a variable name/);
  assert.match(msg, /\/env\/PATH: PATH is the farm's to set, not a job's/);
  assert.match(msg, /\/env\/NUM: the value must be a string, got number/);
  assert.match(submitRefusal(t, ['A=1']) ?? '', /\/env: must be an object of variables/);
  const big = Object.fromEntries(Array.from({ length: JOB_ENV_LIMITS.vars + 1 }, (_, i) => [`V${i}`, 'x']));
  assert.match(submitRefusal(t, big) ?? '', /\/env: 65 variables, at most 64/);
});

test('job env - --env NAME=VALUE sets variables over the file\'s, and a malformed one is named', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rb-env-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'shot.pov'), 'sphere { 0, 1 }\n');
  writeFileSync(join(dir, 'shot.json'), JSON.stringify({ scene: 'shot.pov', frames: '1', env: { A: 'file', B: 'file' } }));
  const build = (env: string[]) => buildJob({ args: [join(dir, 'shot.json')], flags: { env }, cwd: dir, defaults: { user: 'a', group: 'g', outputRoot: dir }, jobId: 'jenv0001' });
  assert.deepEqual(build(['B=flag', 'C=x=y', 'D=']).spec.env, { A: 'file', B: 'flag', C: 'x=y', D: '' });
  assert.throws(() => build(['NOEQUALS']), (e: unknown) => e instanceof UsageError && /^--env: 'NOEQUALS' is not NAME=VALUE/.test(e.message));
  assert.throws(() => build(['LD_PRELOAD=/x.so']), (e: unknown) => e instanceof UsageError && /^--env: LD_PRELOAD is the farm's to set/.test(e.message));
  // a bad variable of the file is still named as the file's, beside --env flags
  writeFileSync(join(dir, 'shot.json'), JSON.stringify({ scene: 'shot.pov', frames: '1', env: { 'BAD-NAME': 'file' } }));
  assert.throws(() => build(['OK=1']), (e: unknown) => e instanceof UsageError && /^job file .*shot\.json: \/env\/BAD-NAME: 'BAD-NAME' is not a variable name/.test(e.message));
});

test('job env - a renderer gets the farm\'s few variables and the job\'s, nothing else', () => {
  const farm = { PATH: '/usr/bin:/bin', HOME: '/home/farm', LANG: 'C.UTF-8', TZ: 'UTC', RB_WEBHOOK_SECRET: 's', RB_SMTP_URL: 'smtp://u:pw@mail', RB_SECRET_X: 'x', RENDERBUS_CREDS: '/c' };
  assert.deepEqual(rendererEnv({ SHOT: 'sq010' }, farm), { PATH: '/usr/bin:/bin', HOME: '/home/farm', LANG: 'C.UTF-8', TZ: 'UTC', SHOT: 'sq010' });
  assert.equal(rendererEnv(undefined, {}).PATH, '/usr/local/bin:/usr/bin:/bin', 'PATH and HOME are always there');
  assert.ok(rendererEnv(undefined, {}).HOME);
  // a task that slipped past the scheduler's check still cannot choose PATH or the loader
  assert.deepEqual(rendererEnv({ PATH: '/tmp', LD_PRELOAD: '/x.so', HOME: '/h' }, { PATH: '/bin', HOME: '/f' }), { PATH: '/bin', HOME: '/h' });
});

test('job env - travels with the task: the assignment schema takes it and refuses a bad name', () => {
  const req = (env: Record<string, string>): AssignRequest => ({ v: PROTOCOL_MAJOR, host: 'h1', assignments: [aTaskAssignment({ env })] });
  assert.deepEqual(codecs.assignRequest.decode(codecs.assignRequest.encode(req({ SHOT: 'sq010' }))).assignments[0]!.env, { SHOT: 'sq010' });
  assert.throws(() => codecs.assignRequest.decode(codecs.assignRequest.encode(req({ 'A-B': 'x' }))), (e: unknown) => e instanceof FarmError && e.code === 'RB_SCHEMA_MISMATCH');
});
