import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { waitUntil } from '../helpers/farm.ts';
import { Launcher, rendererEnv, runProcess, type LaunchHandlers } from '../../actors/render-slot/index.ts';

interface Seen { pid?: number; out: string; err: string; exit?: [number | null, NodeJS.Signals | null]; error?: NodeJS.ErrnoException }

function run(l: Launcher, argv: string[], cwd = tmpdir(), env = rendererEnv(undefined)): Promise<Seen> {
  return new Promise((resolve) => {
    const seen: Seen = { out: '', err: '' };
    const h: LaunchHandlers = {
      onStart: (pid) => (seen.pid = pid),
      onOutput: (s, t) => (s === 'stdout' ? (seen.out += t) : (seen.err += t)),
      onExit: (code, signal) => resolve({ ...seen, exit: [code, signal] }),
      onError: (error) => resolve({ ...seen, error }),
    };
    l.launch(argv, cwd, env, h);
  });
}

test('launcher - relays output, exit codes and signals of the processes it starts', async (t) => {
  const l = new Launcher();
  t.after(() => l.close());
  const a = await run(l, ['sh', '-c', 'echo out; echo err >&2; printf "é"; exit 3']);
  assert.ok(a.pid && a.pid > 1);
  assert.equal(a.out, 'out\né');
  assert.equal(a.err, 'err\n');
  assert.deepEqual(a.exit, [3, null]);
  const b = await run(l, ['sh', '-c', 'kill -TERM $$']);
  assert.deepEqual(b.exit, [null, 'SIGTERM']);
  const big = await run(l, ['sh', '-c', 'head -c 300000 /dev/zero | tr "\\0" x']);
  assert.equal(big.out.length, 300_000, 'large output arrives whole');
});

test('launcher - says why a process could not start', async (t) => {
  const l = new Launcher();
  t.after(() => l.close());
  assert.equal((await run(l, ['no-such-renderer-here'])).error?.code, 'ENOENT');
  assert.equal((await run(l, ['true'], '/no/such/dir')).error?.code, 'ENOENT');
  const dir = await mkdtemp(join(tmpdir(), 'rb-launch-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const plain = join(dir, 'not-a-program');
  await writeFile(plain, 'text', { mode: 0o644 });
  assert.equal((await run(l, [plain])).error?.code, 'EACCES');
  assert.equal((await run(l, ['echo', 'a\0b'])).error?.code, 'EINVAL');
  assert.equal((await run(l, ['true'], tmpdir(), { A: 'x\0y' })).error?.code, 'EINVAL');
  assert.equal((await run(l, ['true'], tmpdir(), { 'A=B': 'x' })).error?.code, 'EINVAL');
});

test('launcher - a process gets exactly the environment of its launch, never the fork server\'s', async (t) => {
  // set before the fork server starts: it would inherit these if it inherited anything
  process.env.RB_SECRET_X = 'launcher-secret';
  t.after(() => delete process.env.RB_SECRET_X);
  const l = new Launcher();
  t.after(() => l.close());
  const a = await run(l, ['env'], tmpdir(), { PATH: '/usr/bin:/bin', HOME: '/nowhere', SHOT: 'sq010 sh020', EQ: 'a=b', EMPTY: '' });
  assert.deepEqual(a.exit, [0, null], a.err);
  assert.deepEqual(a.out.trim().split('\n').sort(), ['EMPTY=', 'EQ=a=b', 'HOME=/nowhere', 'PATH=/usr/bin:/bin', 'SHOT=sq010 sh020']);
  const b = await run(l, ['env'], tmpdir(), { PATH: '/usr/bin:/bin', OTHER: '1' });
  assert.deepEqual(b.out.trim().split('\n').sort(), ['OTHER=1', 'PATH=/usr/bin:/bin'], 'nothing stays behind from the launch before');
  // the program is looked up on the launch's PATH, not the fork server's
  const c = await run(l, ['env'], tmpdir(), { PATH: '/no/such/dir' });
  assert.equal(c.error?.code, 'ENOENT');
});

test('launcher - runs many processes at once and keeps them apart', async (t) => {
  const l = new Launcher();
  t.after(() => l.close());
  const all = await Promise.all(Array.from({ length: 40 }, (_, i) => run(l, ['sh', '-c', `sleep 0.0$((${i} % 5)); echo ${i}`])));
  assert.deepEqual(all.map((s) => s.out), Array.from({ length: 40 }, (_, i) => `${i}\n`));
});

test('launcher - a process that leaves a child holding its pipes still ends', async (t) => {
  const l = new Launcher();
  t.after(() => l.close());
  const t0 = performance.now();
  const s = await run(l, ['sh', '-c', 'sleep 30 & echo started']);
  assert.deepEqual(s.exit, [0, null]);
  assert.ok(performance.now() - t0 < 6_000, 'not held by the background sleep');
});

test('launcher - a process started through it is measured and can be cancelled as a group', async (t) => {
  const l = new Launcher();
  t.after(() => l.close());
  const busy = runProcess({ argv: ['sh', '-c', 'i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done'], cwd: tmpdir(), launcher: l });
  const done = await busy.exited;
  assert.equal(done.code, 0);
  assert.ok(done.usage.cpuMs > 0, `cpu ${done.usage.cpuMs}`);
  assert.ok(done.usage.peakRssKb > 0);
  const ac = new AbortController();
  const slow = runProcess({ argv: ['sh', '-c', 'sleep 30; echo never'], cwd: tmpdir(), launcher: l, signal: ac.signal, killGraceMs: 500 });
  setTimeout(() => ac.abort(), 100);
  const cancelled = await slow.exited;
  assert.equal(cancelled.cancelled, true);
  assert.ok(cancelled.usage.wallMs < 5_000);
});

/** Pids of processes alive (not zombies) whose command line holds `text`, from /proc. */
async function liveProcessesWith(text: string): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const [cmdline, stat] = await Promise.all([readFile(`/proc/${name}/cmdline`, 'utf8'), readFile(`/proc/${name}/stat`, 'utf8')]).catch(() => ['', '']);
    // the state follows the command name in parentheses: Z is a zombie, which runs nothing
    if (cmdline.includes(text) && stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z') pids.push(Number(name));
  }
  return pids;
}

test('launcher - a render server that dies while a renderer is being started takes that renderer with it', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'rb-launcher-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const marker = join(dir, 'ran-to-the-end');
  // stdout is a pipe nobody reads (the render server is dead); stdin stays open
  const script = resolve(import.meta.dirname, '../../actors/render-slot/launcher.pl');
  const p = spawn('perl', [script], { stdio: ['pipe', 'pipe', 'inherit'] });
  p.stdout.destroy();
  const payload = [dir, 'PATH=/usr/bin:/bin', 'sh', '-c', `sleep 1; touch ${marker}`].join('\0');
  p.stdin.write(`R 1 ${Buffer.byteLength(payload)} 1\n${payload}`);
  const [code] = (await once(p, 'exit')) as [number | null];
  assert.equal(code, 0, 'it stops once its renderer has ended');
  // a renderer left running would touch the marker and end within a second: wait for none to be left, then look
  await waitUntil('no process of the renderer left', async () => (await liveProcessesWith(marker)).length === 0, 10_000, 50);
  assert.equal(existsSync(marker), false, 'the renderer was stopped, not left to run on its own');
  p.stdin.destroy();
});
