import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { natsServerBin } from '../../sites/nats-server.ts';
import { ActorProcess, CLI, freePort, waitUntil } from '../helpers/farm.ts';

/** `renderbus …` as a process; its exit code and output. */
async function cli(args: string[], cwd: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env = { ...process.env };
  delete env.RENDERBUS_NATS;
  delete env.RENDERBUS_CREDS;
  const proc = spawn(process.execPath, [CLI, ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const [code] = (await once(proc, 'exit')) as [number | null];
  return { code, stdout, stderr };
}

// docs/running-actors.md, "Every part alone, on a nats-server of your own", step by step
test('own nats - the actors run on a nats-server configured as docs/running-actors.md says', { timeout: 120_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'rb-own-nats-'));
  const procs: ActorProcess[] = [];
  t.after(async () => {
    for (const p of procs.reverse()) await p.kill('SIGTERM');
    await rm(dir, { recursive: true, force: true });
  });
  const port = await freePort();
  const url = `nats://127.0.0.1:${port}`;
  const site = `t${randomUUID().slice(0, 8)}`;
  const rb = ['--data', join(dir, 'rb'), '--site', site];

  // 1. credentials, in a data directory no `up` has run in
  for (const [role, name] of [['scheduler', 'scheduler'], ['registry', 'registry'], ['render-server', 'node-7'], ['operator', 'ann']] as const) {
    const r = await cli([...rb, 'credentials', 'add', role, name, '--url', url, '--out', join(dir, `${name}.creds`)], dir);
    assert.equal(r.code, 0, r.stderr);
  }

  // 2. the server's config, the generated accounts linked beside it
  const etc = join(dir, 'etc');
  await mkdir(etc);
  await symlink(join(dir, 'rb', 'nats', 'auth.conf'), join(etc, 'renderbus-auth.conf'));
  await writeFile(join(etc, 'nats.conf'), [
    `listen: "127.0.0.1:${port}"`,
    'server_name: "studio-nats"',
    'max_payload: 1048576',
    `jetstream { store_dir: ${JSON.stringify(join(dir, 'jetstream'))}, max_file_store: 1TB }`,
    'include "renderbus-auth.conf"',
    '',
  ].join('\n'));
  const nats = new ActorProcess('nats-server', spawn(natsServerBin(), ['-c', join(etc, 'nats.conf')], { stdio: ['ignore', 'pipe', 'pipe'] }));
  procs.push(nats);
  await waitUntil('nats-server to be ready', () => nats.output.includes('Server is ready') || !nats.running, 10_000);
  assert.ok(nats.running, nats.output);

  // 3. the actors, each alone with its own file
  const actor = (name: string, args: string[]) => {
    const p = new ActorProcess(name, spawn(process.execPath, [CLI, ...args, '--creds', join(dir, `${name}.creds`)], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] }));
    procs.push(p);
    return p;
  };
  actor('scheduler', ['scheduler']);
  actor('registry', ['registry']);
  actor('node-7', ['render-server', '--slots', '1']);
  const ann = ['--creds', join(dir, 'ann.creds')];
  const logs = () => procs.map((p) => `--- ${p.name}\n${p.output.slice(-2000)}`).join('\n');
  let last = '';
  await waitUntil('node-7 in the hosts', async () => {
    const r = await cli([...ann, 'hosts', '--json'], dir);
    last = r.stderr;
    return r.stdout.includes('"node-7"');
  }, 40_000).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}: ${last}\n${logs()}`);
  });
  await writeFile(join(dir, 'in.txt'), 'x');
  const job = await cli([...ann, 'submit', 'in.txt', '--frames', '1-3', '--command', 'sh -c "echo {frame} > {output}"', '--pattern', 'f_####.txt', '--output', join(dir, 'out'), '--wait'], dir);
  assert.equal(job.code, 0, `${job.stderr}\n${logs()}`);
  assert.deepEqual((await readdir(join(dir, 'out'))).filter((n) => n.startsWith('f_')).sort(), ['f_0001.txt', 'f_0002.txt', 'f_0003.txt']);

  // a credential added later gets in once the server is told to reload
  const bob = await cli([...rb, 'credentials', 'add', 'artist', 'bob', '--url', url, '--out', join(dir, 'bob.creds')], dir);
  assert.equal(bob.code, 0, bob.stderr);
  nats.proc.kill('SIGHUP');
  await waitUntil('bob to get in after the reload', async () => (await cli(['--creds', join(dir, 'bob.creds'), 'jobs'], dir)).code === 0, 20_000);
});
