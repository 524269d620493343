import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { readCredentials } from '../../sites/auth/index.ts';
import { CLI, waitUntil } from '../helpers/farm.ts';
import { loginOptions } from '../helpers/nats-server.ts';

const mode = async (path: string) => ((await stat(path)).mode & 0o777).toString(8);

/** `renderbus …` in `cwd`, with no credential or URL from the environment. */
function rb(cwd: string, ...args: string[]) {
  const env = { ...process.env };
  delete env.RENDERBUS_NATS;
  delete env.RENDERBUS_CREDS;
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd, env, encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('credentials - up lets in only its credentials; add, list and revoke on the running farm take effect at once', { timeout: 120_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'rb-creds-'));
  const data = join(dir, 'data');
  t.after(() => rm(dir, { recursive: true, force: true }));
  const up = spawn(process.execPath, [CLI, 'up', '--data', data, '--port', '-1', '--monitor-port', '-1', '--slots', '0'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  up.stdout.on('data', (d: Buffer) => (out += d.toString()));
  up.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = once(up, 'exit');
  t.after(() => void up.kill('SIGKILL'));
  const farm = await waitUntil('the farm up', async () => {
    if (up.exitCode !== null) throw new Error(`up exited:\n${out}`);
    return JSON.parse(await readFile(join(data, 'farm.json'), 'utf8').catch(() => 'null')) as { url: string; credsFile: string } | null ?? undefined;
  }, 60_000);

  // the data directory is private, and so is the operator's credential up made for whoever ran it
  assert.equal(await mode(data), '700');
  assert.equal(await mode(farm.credsFile), '600');
  assert.match(out, /you +.*operator-.*\.creds/);

  // nobody without a credential gets in, loopback or not
  await assert.rejects(connect({ servers: farm.url, maxReconnectAttempts: 0, timeout: 2_000 }), /authorization/i);
  // the CLI on this machine finds the operator's credential through farm.json
  const jobs = rb(dir, '--data', data, 'jobs');
  assert.equal(jobs.code, 0, jobs.stderr);

  // an artist's credential, issued while the farm runs: it works at once, from anywhere it is copied
  const issued = rb(dir, '--data', data, 'credentials', 'add', 'artist', 'ann', '--out', join(dir, 'ann.creds'));
  assert.equal(issued.code, 0, issued.stderr);
  assert.equal(issued.stdout.trim(), join(dir, 'ann.creds'));
  assert.equal(await mode(join(dir, 'ann.creds')), '600');
  const ann = await readCredentials(join(dir, 'ann.creds'));
  assert.equal(ann.url, farm.url, 'the URL is in the file: no --nats needed');
  const elsewhere = await mkdtemp(join(tmpdir(), 'rb-creds-elsewhere-'));
  t.after(() => rm(elsewhere, { recursive: true, force: true }));
  const asAnn = rb(elsewhere, 'jobs', '--json', '--creds', join(dir, 'ann.creds'));
  assert.equal(asAnn.code, 0, asAnn.stderr);
  // an artist may not clear a sick host (an operator's change): said by name
  const clear = rb(elsewhere, 'sick', 'nohost', '--clear', '--creds', join(dir, 'ann.creds'));
  assert.equal(clear.code, 1, clear.stderr);
  assert.match(clear.stderr, /clearing a sick host is for operators/);
  // no second file over the first without --force; a bad role is a usage error
  assert.equal(rb(dir, '--data', data, 'credentials', 'add', 'artist', 'ann', '--out', join(dir, 'ann.creds')).code, 2);
  const badRole = rb(dir, '--data', data, 'credentials', 'add', 'wizard', 'x');
  assert.equal(badRole.code, 2);
  assert.match(badRole.stderr, /give a role: artist, operator, render-server/);

  const listed = JSON.parse(rb(dir, '--data', data, 'credentials', 'list', '--json').stdout) as { role: string; name: string; local: boolean }[];
  assert.ok(listed.some((p) => p.role === 'artist' && p.name === 'ann' && !p.local));
  assert.ok(listed.some((p) => p.role === 'scheduler' && p.local), 'up\'s own actors each have one');

  // revoked: a connection of ann's is cut off, and a new one is refused
  const nc = await connect({ servers: farm.url, ...loginOptions(ann), maxReconnectAttempts: 0 });
  const closed = nc.closed();
  const revoked = rb(dir, '--data', data, 'credentials', 'revoke', 'artist', 'ann');
  assert.equal(revoked.code, 0, revoked.stderr);
  assert.match(revoked.stderr, /cut off/);
  await closed;
  await assert.rejects(connect({ servers: farm.url, ...loginOptions(ann), maxReconnectAttempts: 0, timeout: 2_000 }), /authorization/i);
  const after = rb(elsewhere, 'jobs', '--creds', join(dir, 'ann.creds'));
  assert.equal(after.code, 1);
  assert.match(after.stderr, /refused the credential of artist ann/);
  assert.equal(rb(dir, '--data', data, 'credentials', 'revoke', 'artist', 'ann').code, 2, 'nothing left to revoke');
  // the farm's own actors were not touched by the reloads
  assert.equal(rb(dir, '--data', data, 'jobs').code, 0);

  up.kill('SIGTERM');
  assert.deepEqual(await exited, [0, null], out);
});

test('credentials - a bad credentials file is named with what is wrong', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'rb-creds-bad-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const { writeFile } = await import('node:fs/promises');
  const cases: [string, RegExp][] = [
    ['not json', /not a renderbus credentials file \(not JSON\)/],
    ['{"kind":"other"}', /no "kind": "renderbus-credentials"/],
    ['{"kind":"renderbus-credentials","site":"studio","role":"artist","name":"ann","seed":"x"}', /"seed" is not a user nkey seed/],
    [`{"kind":"renderbus-credentials","site":"studio","role":"king","name":"ann","seed":"SU${'A'.repeat(56)}"}`, /role 'king' is not one of/],
    [`{"kind":"renderbus-credentials","site":"studio","role":"artist","name":"Ann Smith","seed":"SU${'A'.repeat(56)}"}`, /name 'Ann Smith' of a artist/],
  ];
  for (const [text, re] of cases) {
    const file = join(dir, 'bad.creds');
    await writeFile(file, text);
    const r = rb(dir, 'jobs', '--creds', file, '--nats', 'nats://127.0.0.1:1');
    assert.equal(r.code, 1, text);
    assert.match(r.stderr, re, text);
  }
  const missing = rb(dir, 'jobs', '--creds', join(dir, 'nope.creds'));
  assert.match(missing.stderr, /cannot read credentials file .*nope\.creds: ENOENT/);
});
