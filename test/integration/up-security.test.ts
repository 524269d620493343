import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { verifySignature } from '../../actors/notifier/index.ts';
import { CLI, waitUntil } from '../helpers/farm.ts';

// `renderbus up` as an operator starts it: NATS opened to other machines (--listen 0.0.0.0), the
// monitor not; the monitor's token and the webhook secret made in the data directory; webhooks to
// this machine refused unless the farm allows them.

/** A webhook receiver that keeps what it is sent. */
async function receiver(t: { after(fn: () => void): void }) {
  const posts: { req: IncomingMessage; body: string }[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (c: string) => (body += c)).on('end', () => {
      posts.push({ req, body });
      res.writeHead(204).end();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  return { posts, port: (server.address() as { port: number }).port };
}

/** The local address a listening TCP socket on `port` is bound to, from /proc/net/tcp (what the kernel says, not what the program printed). */
async function boundAddresses(port: number): Promise<string[]> {
  const out: string[] = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const text = await readFile(file, 'utf8').catch(() => '');
    for (const line of text.split('\n').slice(1)) {
      const [, local, , state] = line.trim().split(/\s+/);
      if (!local || state !== '0A') continue; // 0A: LISTEN
      const [hex, p] = local.split(':');
      if (parseInt(p!, 16) !== port) continue;
      out.push(hex!.length === 8 ? hex!.match(/../g)!.reverse().map((b) => parseInt(b, 16)).join('.') : /^0+$/.test(hex!) ? '::' : `v6:${hex}`);
    }
  }
  return out;
}

const mode = async (path: string) => ((await stat(path)).mode & 0o777).toString(8);

test('up - NATS on 0.0.0.0 leaves the monitor on 127.0.0.1; token and webhook secret made (0600) and printed; webhooks to this machine refused unless allowed, and signed', { timeout: 120_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'rb-up-sec-'));
  const data = join(dir, 'data');
  t.after(() => rm(dir, { recursive: true, force: true }));
  const [allowed, refused] = await Promise.all([receiver(t), receiver(t)]);
  const up = spawn(process.execPath, [CLI, 'up', '--data', data, '--port', '-1', '--listen', '0.0.0.0', '--monitor-port', '-1', '--slots', '1', '--host', 'sec-test', '--webhook-allow', `127.0.0.1:${allowed.port}`], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  up.stdout.on('data', (d: Buffer) => (out += d.toString()));
  up.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = once(up, 'exit');
  t.after(async () => {
    if (up.exitCode === null && up.signalCode === null) {
      up.kill('SIGKILL');
      await exited;
    }
  });
  await waitUntil('the farm to be up', async () => {
    if (up.exitCode !== null) throw new Error(`up exited:\n${out}`);
    return out.includes('Stop with Ctrl-C');
  }, 60_000);

  // the link it prints, and where the monitor really listens
  const m = /monitor\s+(http:\/\/127\.0\.0\.1:(\d+))\/#token=([\w-]+)\n/.exec(out);
  assert.ok(m, out);
  const [, base, port, token] = m as unknown as [string, string, string, string];
  assert.match(out, /listening on 127\.0\.0\.1 only/);
  assert.deepEqual(await boundAddresses(Number(port)), ['127.0.0.1'], 'the kernel has the monitor on 127.0.0.1 only');
  const farm = JSON.parse(await readFile(join(data, 'farm.json'), 'utf8')) as { url: string; monitor: { url: string; token: string } };
  const natsBound = await boundAddresses(Number(new URL(farm.url).port));
  assert.ok(natsBound.length > 0 && natsBound.every((a) => a === '0.0.0.0' || a === '::'), `NATS does listen on every address, as asked: ${natsBound.join(', ')}`);
  assert.deepEqual(farm.monitor, { url: base, token });
  assert.equal((await readFile(join(data, 'monitor-token'), 'utf8')).trim(), token);
  assert.deepEqual([await mode(join(data, 'monitor-token')), await mode(join(data, 'farm.json')), await mode(join(data, 'webhook-secret'))], ['600', '600', '600']);
  assert.match(out, new RegExp(`webhooks signed \\(secret in ${join(data, 'webhook-secret').replace(/[/.]/g, '\\$&')}\\)`));

  // the printed URL works pasted (the fragment stays in the browser); actions need its token
  const page = await fetch(`${base}/#token=${token}`);
  assert.equal(page.status, 200);
  assert.match(await page.text(), /renderbus monitor/);
  const pause = (headers: Record<string, string>) => fetch(`${base}/api/jobs/nosuchjob/pause`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: '{}' });
  assert.equal((await pause({})).status, 401);
  const through = await pause({ 'x-renderbus-token': token });
  assert.equal(through.status, 404, 'with the token the action reaches the scheduler');
  assert.equal(((await through.json()) as { error: { code: string } }).error.code, 'RB_UNKNOWN_JOB');

  // a job with two webhooks: one on an allowed address and port, one on localhost (not allowed)
  await writeFile(join(dir, 'in.txt'), 'x');
  const submit = spawnSync(process.execPath, [CLI, 'submit', 'in.txt', '--frames', '1', '--command', 'sh -c "echo {frame} > {output}"', '--pattern', 'f_####.txt', '--data', data,
    '--notify-url', `http://127.0.0.1:${allowed.port}/hook`, '--notify-url', `http://localhost:${refused.port}/hook`, '--wait'], { cwd: dir, encoding: 'utf8', timeout: 60_000 });
  assert.equal(submit.status, 0, submit.stderr);
  const log = join(data, 'logs', 'farm.log');
  const givenUp = await waitUntil('the refused webhook to be given up', async () => {
    const lines = (await readFile(log, 'utf8')).split('\n').filter((l) => l.includes('"msg":"notification given up"'));
    return lines.length > 0 ? (JSON.parse(lines[0]!) as { error: string; attempts: number; to: string[] }) : undefined;
  }, 30_000);
  assert.match(givenUp.error, /^refused: localhost \((127\.0\.0\.1|::1)\) is a loopback address; the site allows such webhooks with --webhook-allow /);
  assert.equal(givenUp.attempts, 1, 'a refusal is not retried');
  assert.deepEqual(givenUp.to, [`http://localhost:${refused.port}`]);
  await waitUntil('the allowed webhook', async () => allowed.posts.length > 0, 30_000);
  assert.equal(refused.posts.length, 0, 'nothing reached the refused receiver');
  const secret = (await readFile(join(data, 'webhook-secret'), 'utf8')).trim();
  const [post] = allowed.posts;
  assert.ok(verifySignature(secret, post!.body, post!.req.headers['x-renderbus-signature'] as string), 'signed with the secret up made');

  up.kill('SIGTERM');
  await exited;
  assert.equal(up.exitCode, 0, out);
});
