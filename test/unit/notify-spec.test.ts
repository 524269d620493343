import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkNotify, codecs, FarmError, notifyPlan, type JobNotify } from '../../protocol/index.ts';
import { UsageError } from '../../tools/cli/cli-error.ts';
import { buildJob, type SubmitFlags } from '../../tools/cli/job-file.ts';
import { notifierSettings } from '../../tools/cli/notifier.ts';
import { aJobSpec } from '../helpers/builders.ts';

test('notify spec - the array form means webhooks at the end; the object form fills in its defaults', () => {
  assert.deepEqual(notifyPlan(['https://a.example/h']), { plan: { webhooks: ['https://a.example/h'], email: [], on: ['done', 'failed', 'cancelled'] }, problems: [] });
  assert.deepEqual(notifyPlan({ email: ['ann@studio.example', 'ann@studio.example'], everyPercent: 10 })?.plan, {
    webhooks: [], email: ['ann@studio.example'], on: ['done', 'failed', 'cancelled', 'progress'], everyPercent: 10,
  });
  assert.deepEqual(notifyPlan({ webhooks: ['http://a.example'], on: ['failed'] })?.plan.on, ['failed']);
  assert.equal(notifyPlan(undefined), null);
});

test('notify spec - contradictions are RB_BAD_JOB naming the field', () => {
  const bad = (n: JobNotify, field: RegExp) => {
    assert.throws(() => checkNotify(n), (err: unknown) => err instanceof FarmError && err.code === 'RB_BAD_JOB' && field.test(err.message), JSON.stringify(n));
  };
  bad({ on: ['done'] }, /^notify: names no webhook URL and no email address/);
  bad({ email: ['a@b'], on: ['done', 'progress'] }, /^notify\.on: 'progress' needs notify\.everyPercent/);
  bad({ email: ['a@b'], on: ['done'], everyPercent: 20 }, /^notify\.everyPercent: is given, but notify\.on leaves out 'progress'/);
  checkNotify({ email: ['a@b'], on: ['done', 'progress'], everyPercent: 20 });
  checkNotify(['http://a']);
  checkNotify(undefined);
});

test('notify spec - the job spec takes both forms and keeps refusing what is malformed', () => {
  codecs.jobSpec.check(aJobSpec({ notify: ['https://a.example/h'] }));
  codecs.jobSpec.check(aJobSpec({ notify: { webhooks: ['https://a.example/h'], email: ['ann@studio.example'], on: ['done', 'progress'], everyPercent: 25 } }));
  for (const notify of [{ email: ['not an address'] }, { everyPercent: 0 }, { on: ['finished'] }, { emails: ['a@b'] }, 'https://a.example', ['ftp://a']]) {
    assert.throws(() => codecs.jobSpec.check({ ...aJobSpec(), notify }), (err: unknown) => err instanceof FarmError && err.code === 'RB_SCHEMA_MISMATCH', JSON.stringify(notify));
  }
});

/** A job file and a scene in a temporary folder. */
function jobFile(t: { after(fn: () => void): void }, fields: Record<string, unknown>): { dir: string; file: string } {
  const dir = mkdtempSync(join(tmpdir(), 'rb-notify-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'shot.pov'), '// scene\n');
  const file = join(dir, 'shot.json');
  writeFileSync(file, JSON.stringify({ scene: 'shot.pov', frames: '1-4', ...fields }));
  return { dir, file };
}

const build = (dir: string, args: string[], flags: SubmitFlags = {}) =>
  buildJob({ args, flags, cwd: dir, defaults: { user: 'ann', group: 'fx', outputRoot: join(dir, 'out') }, jobId: 'j1' });

const usage = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof UsageError, `expected a UsageError, got ${String(err)}`);
    return err.message;
  }
  assert.fail('expected a UsageError');
};

test('notify spec - a bad notify in a job file is named by its field', (t) => {
  const cases: [unknown, RegExp][] = [
    [{ email: ['ann@studio.example'], everyPercent: 150 }, /^job file shot\.json: \/notify\/everyPercent: Expected integer to be less or equal to 99/],
    [{ emails: ['ann@studio.example'] }, /^job file shot\.json: \/notify\/emails: unknown field \(known fields: webhooks, email, on, everyPercent\)/],
    [{ email: ['ann at studio'] }, /^job file shot\.json: \/notify\/email\/0: "ann at studio" is not an email address/],
    [{ webhooks: ['mailto:ann@studio.example'] }, /^job file shot\.json: \/notify\/webhooks\/0: "mailto:ann@studio\.example" is not an http/],
    [{ email: ['a@b'], on: ['finished'] }, /^job file shot\.json: \/notify\/on\/0: "finished" is not something to notify of \(done, failed, cancelled, progress\)/],
    [{ email: ['a@b'], on: ['progress'] }, /^job file shot\.json: \/notify\/on: 'progress' needs notify\.everyPercent/],
    [{ on: ['done'] }, /^job file shot\.json: \/notify: names no webhook URL and no email address/],
    ['https://a.example', /^job file shot\.json: \/notify: must be a list of webhook URLs, or \{/],
    [['ftp://a.example'], /^job file shot\.json: \/notify\/0: "ftp:\/\/a\.example" is not an http/],
  ];
  for (const [notify, expected] of cases) {
    const { dir } = jobFile(t, { notify });
    assert.match(usage(() => build(dir, ['shot.json'])), expected, JSON.stringify(notify));
  }
});

test('notify spec - the submit flags make the settings form; flags override the file, --notify joins --notify-url', (t) => {
  const { dir } = jobFile(t, { notify: ['https://file.example/h'] });
  assert.deepEqual(build(dir, ['shot.json']).spec.notify, ['https://file.example/h'], 'the array form stays as it is');
  assert.deepEqual(build(dir, ['shot.json'], { notifyEmail: ['ann@studio.example'], notifyEvery: '25%' }).spec.notify, {
    webhooks: ['https://file.example/h'],
    email: ['ann@studio.example'],
    everyPercent: 25,
  });
  assert.deepEqual(build(dir, ['shot.json'], { notify: ['https://a.example/1'], notifyUrl: ['https://a.example/2'], notifyOn: 'done, failed' }).spec.notify, {
    webhooks: ['https://a.example/1', 'https://a.example/2'],
    on: ['done', 'failed'],
  });
  assert.deepEqual(build(dir, ['shot.pov'], { frames: '1', notify: ['https://a.example/1'] }).spec.notify, ['https://a.example/1']);
  assert.match(usage(() => build(dir, ['shot.pov'], { frames: '1', notifyEvery: 'often' })), /^--notify-every: 'often' is not a whole number/);
  assert.match(usage(() => build(dir, ['shot.pov'], { frames: '1', notifyEmail: ['a@b'], notifyEvery: '100' })), /^--notify-every: Expected integer to be less or equal to 99/);
  assert.match(usage(() => build(dir, ['shot.pov'], { frames: '1', notifyEmail: ['a@b'], notifyOn: 'done,soon' })), /^--notify-on: "soon" is not something to notify of/);
  assert.match(usage(() => build(dir, ['shot.pov'], { frames: '1', notifyOn: 'done' })), /^notify: names no webhook URL and no email address/);
});

test('notify spec - the notifier settings come from flags, else the environment, and say which is wrong', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rb-notify-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const secretFile = join(dir, 'secret');
  writeFileSync(secretFile, 's3cret\n');
  assert.deepEqual(notifierSettings({}, {}), {});
  assert.deepEqual(notifierSettings({ webhookSecretFile: secretFile, notifyAttempts: '3' }, { RB_WEBHOOK_SECRET: 'env' }), { webhookSecret: 's3cret', retry: { attempts: 3 } });
  assert.deepEqual(notifierSettings({}, { RB_WEBHOOK_SECRET: 'env', RB_SMTP_URL: 'smtp://mail:25', RB_SMTP_FROM: 'farm@studio.example' }), {
    webhookSecret: 'env',
    smtp: { url: 'smtp://mail:25', from: 'farm@studio.example' },
  });
  assert.equal(notifierSettings({ smtp: 'smtps://u:p@mail', smtpFrom: 'a@b' }, { RB_SMTP_URL: 'smtp://other' }).smtp?.url, 'smtps://u:p@mail');
  assert.match(usage(() => notifierSettings({ smtp: 'mail.example:25' }, {})), /^--smtp: 'mail\.example:' is not smtp: or smtps:/);
  assert.match(usage(() => notifierSettings({}, { RB_SMTP_URL: 'http://mail' })), /^RB_SMTP_URL: 'http:' is not smtp: or smtps:/);
  assert.match(usage(() => notifierSettings({ smtp: 'smtp://mail', smtpFrom: 'farm' }, {})), /^--smtp-from: 'farm' is not an email address/);
  assert.match(usage(() => notifierSettings({ smtpFrom: 'a@b' }, {})), /^--smtp-from: give the SMTP server as well/);
  assert.match(usage(() => notifierSettings({ webhookSecretFile: join(dir, 'nope') }, {})), /^--webhook-secret-file: cannot read/);
  writeFileSync(secretFile, '\n');
  assert.match(usage(() => notifierSettings({ webhookSecretFile: secretFile }, {})), /is empty$/);
  assert.match(usage(() => notifierSettings({ notifyAttempts: '0' }, {})), /^--notify-attempts: 0 is out of range/);
  assert.deepEqual(notifierSettings({ webhookAllow: ['127.0.0.1:9000,10.0.0.0/8', '[::1]'] }, { RB_WEBHOOK_ALLOW: '192.0.2.1' }).webhookAllow, ['127.0.0.1:9000', '10.0.0.0/8', '[::1]']);
  assert.deepEqual(notifierSettings({}, { RB_WEBHOOK_ALLOW: '127.0.0.1:9000' }).webhookAllow, ['127.0.0.1:9000']);
  assert.match(usage(() => notifierSettings({ webhookAllow: ['localhost:9000'] }, {})), /^--webhook-allow: webhook allow entry 'localhost:9000': not an address/);
  assert.match(usage(() => notifierSettings({}, { RB_WEBHOOK_ALLOW: '10.0.0.0/33' })), /^RB_WEBHOOK_ALLOW: .*\/33 is longer than the address/);
});
