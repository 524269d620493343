import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, realpathSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { readFarmFile } from '../../sites/farm-file.ts';
import { silentLogger } from '../../sites/logger.ts';
import { PortInUseError } from '../../sites/port-in-use.ts';
import { startFarm } from '../../sites/site.ts';
import { CLI, waitUntil } from '../helpers/farm.ts';

const ROOT = resolve(import.meta.dirname, '../..');

async function tempDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'rb-up-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A port on 127.0.0.1 held by this test for as long as it runs: "another program" has it. */
async function holdPort(t: { after(fn: () => Promise<void>): void }): Promise<number> {
  const server: Server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  return (server.address() as { port: number }).port;
}

/** Runs a command line as a user's shell would, in `cwd`, with `env` (killed after `timeoutMs`). */
async function shell(line: string, cwd: string, env: NodeJS.ProcessEnv, timeoutMs = 120_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const proc = spawn('sh', ['-c', `exec ${line}`], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
  const [code] = (await once(proc, 'exit')) as [number | null];
  clearTimeout(timer);
  return { code, stdout, stderr };
}

test('up - the default NATS port taken, the farm takes a free one and farm.json names it', { timeout: 60_000 }, async (t) => {
  const dir = await tempDir(t);
  const taken = await holdPort(t);
  const farm = await startFarm({ dataDir: dir, slots: 0, defaultPort: taken, monitor: { port: 0 }, log: silentLogger() });
  t.after(() => farm.stop());
  const port = Number(new URL(farm.url).port);
  assert.ok(farm.natsFellBack, 'the farm says it fell back');
  assert.notEqual(port, taken);
  assert.ok(port > 0);
  assert.equal((await readFarmFile(dir))?.url, farm.url, 'farm.json names the port the farm has');
});

test('up - a NATS port asked for and taken is an error naming it; nothing is left running', { timeout: 60_000 }, async (t) => {
  const dir = await tempDir(t);
  const taken = await holdPort(t);
  await assert.rejects(
    startFarm({ dataDir: dir, slots: 0, port: taken, monitor: { port: 0 }, log: silentLogger() }),
    (err: unknown) => err instanceof PortInUseError && err.listener === 'nats' && err.port === taken && err.message === `NATS port ${taken} is already in use on 127.0.0.1 (another farm, or another program)`,
  );
  assert.equal(await readFarmFile(dir), null, 'no farm.json');
  // the store is free again: a farm starts on the same data directory at once
  const farm = await startFarm({ dataDir: dir, slots: 0, port: -1, monitor: { port: 0 }, log: silentLogger() });
  await farm.stop();
});

test('up - --port or --monitor-port taken: exit 2 naming the port and the flag', { timeout: 60_000 }, async (t) => {
  const dir = await tempDir(t);
  const taken = await holdPort(t);
  const run = (args: string[]) => spawnSync(process.execPath, [CLI, 'up', '--data', join(dir, 'farm'), '--slots', '0', ...args], { cwd: dir, encoding: 'utf8', timeout: 60_000 });
  const nats = run(['--port', String(taken), '--monitor-port', '-1']);
  assert.equal(nats.status, 2, nats.stderr);
  assert.match(nats.stderr, new RegExp(`^renderbus up: NATS port ${taken} is already in use on 127\\.0\\.0\\.1 \\(another farm, or another program\\): give another with --port N, or --port -1 for any free port\\n`));
  const monitor = run(['--port', '-1', '--monitor-port', String(taken)]);
  assert.equal(monitor.status, 2, monitor.stderr);
  assert.match(monitor.stderr, new RegExp(`^renderbus up: the monitor's port ${taken} is already in use on 127\\.0\\.0\\.1 .*: give another with --monitor-port N, or --monitor-port -1 for any free port\\n`));
  assert.ok(!existsSync(join(dir, 'farm', 'farm.json')), 'no farm.json left behind');
});

/** Why bootstrap would reinstall the npm packages (which a test must not do), or null. */
function npmStale(): string | null {
  const stamp = join(ROOT, 'node_modules', '.package-lock.json');
  if (!existsSync(stamp)) return 'no node_modules: run sh tools/bootstrap.sh first';
  const newer = ['package.json', 'package-lock.json'].filter((f) => statSync(join(ROOT, f)).mtimeMs > statSync(stamp).mtimeMs);
  return newer.length > 0 ? `${newer.join(' and ')} newer than node_modules: run sh tools/bootstrap.sh first` : null;
}

test('up - after bootstrap, the commands the banner prints work as printed from another folder', { timeout: 180_000, skip: npmStale() ?? false }, async (t) => {
  const dir = await tempDir(t);
  const bin = join(dir, 'bin');
  const [startDir, otherDir] = [join(dir, 'start'), join(dir, 'elsewhere')];
  const nodeBin = join(dir, 'node-bin');
  await Promise.all([mkdir(startDir), mkdir(otherDir), mkdir(nodeBin)]);
  // node alone from its folder: the suite's own bootstrap (as root) may have linked a renderbus
  // into /usr/local/bin, and node's folder may hold one too
  await symlink(process.execPath, join(nodeBin, 'node'));
  // a user's PATH: no checkout and no renderbus on it; bootstrap links renderbus into a folder that is
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: [bin, nodeBin, '/usr/bin', '/bin'].join(':'), RENDERBUS_BIN_DIR: bin };
  delete env.RENDERBUS_NATS;
  delete env.RENDERBUS_CREDS;
  const boot = await shell(`sh ${join(ROOT, 'tools/bootstrap.sh')}`, otherDir, env);
  assert.equal(boot.code, 0, boot.stderr);
  assert.match(boot.stderr, new RegExp(`linked ${bin}/renderbus to this checkout: 'renderbus' works from any folder`));
  assert.equal(realpathSync(join(bin, 'renderbus')), realpathSync(CLI));
  assert.equal((await shell(`sh ${join(ROOT, 'tools/bootstrap.sh')}`, otherDir, env)).stderr, '', 'bootstrap says nothing the second time');

  const up = spawn('sh', ['-c', `exec renderbus up --data ${join(dir, 'farm')} --port -1 --monitor-port -1 --slots 2`], { cwd: startDir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  up.stdout.on('data', (d: Buffer) => (out += d.toString()));
  up.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const upExit = once(up, 'exit');
  t.after(async () => {
    if (up.exitCode === null && up.signalCode === null) {
      up.kill('SIGKILL');
      await upExit;
    }
  });
  await waitUntil('the banner', () => out.includes('Stop with Ctrl-C') || up.exitCode !== null, 60_000);
  const banner = out.split('\n');
  const from = banner.indexOf('In another terminal, from any folder:');
  assert.ok(from > 0, out);
  const commands = banner.slice(from + 1).filter((l, i, all) => l.startsWith('  ') && all.slice(0, i).every((x) => x.startsWith('  '))).map((l) => l.trim());
  assert.deepEqual(commands.map((c) => c.split(' ').find((w) => !w.startsWith('-') && !w.startsWith('/') && w !== 'renderbus')), ['submit', 'jobs', 'hosts', 'tail'], out);
  for (const c of commands) assert.ok(c.startsWith('renderbus '), `'${c}' runs the renderbus on PATH`);

  for (const c of commands.filter((x) => !x.includes(' tail'))) {
    const r = await shell(c, otherDir, env);
    assert.equal(r.code, 0, `${c}\n${r.stderr}`);
  }
  const tail = spawn('sh', ['-c', `exec ${commands.find((c) => c.endsWith(' tail'))!}`], { cwd: otherDir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let tailErr = '';
  tail.stderr.on('data', (d: Buffer) => (tailErr += d.toString()));
  await waitUntil('the tail to start', () => tailErr.includes('tailing ') || tail.exitCode !== null, 30_000);
  tail.kill('SIGINT');
  assert.deepEqual(await once(tail, 'exit'), [0, null], tailErr);
  assert.ok((await readFile(join(dir, 'farm', 'farm.json'), 'utf8')).length > 0);

  up.kill('SIGTERM');
  assert.deepEqual(await upExit, [0, null], out);
});
