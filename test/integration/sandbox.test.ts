import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { once } from 'node:events';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import sharp from 'sharp';
import { createAdapters, detectSandbox, prepareTask, renderTask } from '../../actors/render-slot/index.ts';
import type { TaskAssignment } from '../../protocol/index.ts';
import { aTaskAssignment } from '../helpers/builders.ts';
import { TestFarm } from '../helpers/farm.ts';

/*
 * Issue 15: the I/O wrapper, from the inside. A sandboxed task runs a script that tries to get
 * out; each attempt must fail, and each is run once outside the sandbox too, where it succeeds,
 * so that the test proves the sandbox and not the script. Real bubblewrap, real processes.
 */
const adapters = createAdapters();
const sandbox = detectSandbox();

async function workspace(t: TestContext) {
  // not under /tmp: /tmp is private inside the sandbox, and a job's own folder shows there anyway
  const dir = await mkdtemp('/var/tmp/rb-sandbox-');
  t.after(() => rm(dir, { recursive: true, force: true }));
  await chmod(dir, 0o755);
  for (const d of ['job-a', 'job-b', 'data']) await mkdir(join(dir, d));
  await writeFile(join(dir, 'job-a', 'scene.txt'), 'mine');
  await writeFile(join(dir, 'job-b', 'private.txt'), 'another job of another customer');
  await writeFile(join(dir, 'data', 'secret.txt'), 'the farm data directory');
  return dir;
}

/** The task's log (what its script printed), once written. */
async function logOf(path: string): Promise<string> {
  for (let i = 0; i < 300; i++) {
    const text = await readFile(path, 'utf8').catch(() => '');
    if (/\[(exit|could not start)/.test(text)) return text;
    await new Promise((r) => setTimeout(r, 10));
  }
  return readFile(path, 'utf8').catch(() => '');
}

/** Runs `script` (sh) as a task of job-a, sandboxed or not; what it printed. */
async function runScript(dir: string, script: string, o: { sandboxed: boolean; signal?: AbortSignal; attempt?: number; task?: Partial<TaskAssignment> }): Promise<string> {
  const task: TaskAssignment = aTaskAssignment({
    jobId: 'ja', taskId: `ja.${o.sandboxed ? 1 : 2}`, attempt: o.attempt ?? 1, frames: [1], renderer: 'command',
    scene: join(dir, 'job-a', 'scene.txt'), outputDir: join(dir, 'job-a', 'out'), command: `sh -c ${JSON.stringify(script)}`,
    ...(o.sandboxed ? { sandbox: { files: [join(dir, 'job-a', 'scene.txt')] } } : {}),
    ...o.task,
  });
  const prepared = await prepareTask(task, adapters, 'box', sandbox);
  await renderTask(task, prepared, { adapters, sandbox, ...(o.signal ? { signal: o.signal } : {}), killGraceMs: 500 });
  // what the script printed: not the command line the log starts with (it holds the script)
  return (await logOf(prepared.logFile)).split('\n').filter((l) => !l.startsWith('$ ')).join('\n');
}

test('sandbox - a job cannot read, write, connect, see or outlive what it should not; outside, the same attempts succeed', { timeout: 60_000 }, async (t) => {
  if (!(await sandbox)) return t.skip('this host cannot sandbox (bubblewrap missing, or no user namespaces)');
  const dir = await workspace(t);
  const server = createServer((s) => s.end()).listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => void server.close());
  const port = (server.address() as { port: number }).port;
  const attempts = [
    `cat ${dir}/job-a/scene.txt > /dev/null && echo READ-OWN`,
    `cat ${dir}/job-b/private.txt > /dev/null && echo READ-OTHER-JOB`,
    `cat /etc/shadow > /dev/null && echo READ-SHADOW`,
    `cat ${dir}/data/secret.txt > /dev/null && echo READ-DATA`,
    `echo x > ${dir}/job-a/written.txt && echo WROTE-INPUT-FOLDER`,
    `echo x > /var/tmp/rb-sandbox-escape-$$ && rm /var/tmp/rb-sandbox-escape-$$ && echo WROTE-OUTSIDE`,
    `perl -MIO::Socket::INET -e 'exit(IO::Socket::INET->new(PeerAddr => "127.0.0.1:${port}", Timeout => 2) ? 0 : 1)' && echo CONNECTED`,
    // outside, the farm's own processes are there to see; inside, only the sandbox's
    `[ "$(ls /proc | grep -c '^[0-9]')" -gt 10 ] && echo SAW-PROCESSES`,
    `id -u | grep -qv '^0$' && echo NOT-ROOT`,
  ].join('; ');
  const inside = await runScript(dir, attempts, { sandboxed: true });
  const outside = await runScript(dir, attempts, { sandboxed: false });
  // the job's own input: readable both ways
  assert.match(inside, /READ-OWN/, inside);
  for (const escape of ['READ-OTHER-JOB', 'READ-SHADOW', 'READ-DATA', 'WROTE-INPUT-FOLDER', 'WROTE-OUTSIDE', 'CONNECTED', 'SAW-PROCESSES']) {
    assert.doesNotMatch(inside, new RegExp(escape), `inside the sandbox: ${escape}\n${inside}`);
    assert.match(outside, new RegExp(escape), `the control run outside the sandbox: ${escape}\n${outside}`);
  }
  if (process.getuid?.() === 0) assert.match(inside, /NOT-ROOT/, 'a root render server runs sandboxed renderers as an unprivileged user');
});

test('sandbox - a cancel ends the whole tree: nothing the job started outlives it', { timeout: 30_000 }, async (t) => {
  if (!(await sandbox)) return t.skip('this host cannot sandbox');
  const dir = await workspace(t);
  const marker = `${process.pid}.${Date.now() % 100000}`;
  const ac = new AbortController();
  // a daemon of its own, in a session of its own, that would survive a kill of its parent's group
  const run = runScript(dir, `setsid sleep 1${marker} & sleep 2${marker}`, { sandboxed: true, signal: ac.signal });
  // every process whose command line names the marker: the sleeps, and the shell and bwrap around them
  const alive = async () => {
    const found: string[] = [];
    for (const pid of await readdir('/proc')) {
      if (!/^\d+$/.test(pid)) continue;
      const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
      if (cmd.includes(marker)) found.push(cmd.replaceAll('\0', ' '));
    }
    return found;
  };
  const sleeps = async () => (await alive()).filter((c) => c.startsWith('sleep '));
  for (let i = 0; i < 200 && (await sleeps()).length < 2; i++) await new Promise((r) => setTimeout(r, 25));
  assert.equal((await sleeps()).length, 2, 'both sleeps started');
  ac.abort();
  await run;
  for (let i = 0; i < 100 && (await alive()).length > 0; i++) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(await alive(), [], 'no process of the job is left');
});

test("sandbox - the task's memory and time are kernel limits inside (prlimit): address space and CPU seconds", { timeout: 30_000 }, async (t) => {
  if (!(await sandbox)) return t.skip('this host cannot sandbox');
  const dir = await workspace(t);
  const limits = { memoryLimitMb: 300, timeLimitMs: 20_000 };
  const inside = await runScript(dir, 'echo "AS $(ulimit -v) CPU $(ulimit -t)"', { sandboxed: true, task: limits });
  const cpuSeconds = Math.ceil(20 * cpus().length * 1.2);
  assert.match(inside, new RegExp(`AS ${300 * 4 * 1024} CPU ${cpuSeconds}\\b`), inside);
  const outside = await runScript(dir, 'echo "AS $(ulimit -v) CPU $(ulimit -t)"', { sandboxed: false, task: limits });
  assert.doesNotMatch(outside, new RegExp(`AS ${300 * 4 * 1024}`), 'outside, the slot watches; the kernel does not limit');
});

test('sandbox - a program named by its path outside the system is shown with its folder, read-only', { timeout: 30_000 }, async (t) => {
  if (!(await sandbox)) return t.skip('this host cannot sandbox');
  const dir = await workspace(t);
  await mkdir(join(dir, 'tools'), { mode: 0o755 });
  const tool = join(dir, 'tools', 'render.sh');
  await writeFile(tool, '#!/bin/sh\necho TOOL-RAN; echo x > "$(dirname "$0")/changed" || echo TOOL-FOLDER-READ-ONLY\n', { mode: 0o755 });
  const task: TaskAssignment = aTaskAssignment({
    jobId: 'jt', taskId: 'jt.1', frames: [1], renderer: 'command', scene: join(dir, 'job-a', 'scene.txt'), outputDir: join(dir, 'job-a', 'out'),
    command: tool, sandbox: { files: [join(dir, 'job-a', 'scene.txt')] },
  });
  const prepared = await prepareTask(task, adapters, 'box', sandbox);
  const outcome = await renderTask(task, prepared, { adapters, sandbox });
  const log = await logOf(prepared.logFile);
  assert.equal(outcome.status, 'done', log);
  assert.match(log, /^TOOL-RAN$/m);
  assert.match(log, /^TOOL-FOLDER-READ-ONLY$/m, log);
});

test('sandbox - POV-Ray renders the same pixels inside and outside', { timeout: 60_000 }, async (t) => {
  if (!(await sandbox)) return t.skip('this host cannot sandbox');
  const dir = await workspace(t);
  const scene = join(dir, 'job-a', 'shot.pov');
  await writeFile(scene, '#include "colors.inc"\ncamera { location <0, 1, -3> look_at 0 }\nlight_source { <2, 4, -3> color White }\nsphere { 0, 1 pigment { color Red } finish { phong 0.5 } }\nplane { y, -1 pigment { checker color White color Blue } }\n');
  const frame = async (sandboxed: boolean) => {
    const task = aTaskAssignment({
      jobId: 'jp', taskId: `jp.${sandboxed ? 1 : 2}`, frames: [1], renderer: 'povray', scene, resolution: { width: 96, height: 72 },
      outputDir: join(dir, 'job-a', `out-${sandboxed}`), outputPattern: 'f_####.png',
      ...(sandboxed ? { sandbox: { files: [scene] } } : {}),
    });
    const prepared = await prepareTask(task, adapters, 'box', sandbox);
    const outcome = await renderTask(task, prepared, { adapters, sandbox });
    assert.equal(outcome.status, 'done', JSON.stringify(outcome.error));
    return (await sharp(outcome.produced[0]!.file).raw().toBuffer()).toString('base64');
  };
  assert.equal(await frame(true), await frame(false));
});

test('sandbox - a site whose policy is --sandbox-all renders every job in it, on a host that advertises it', { timeout: 90_000 }, async (t) => {
  if (!(await sandbox)) return t.skip('this host cannot sandbox');
  const f = await TestFarm.start({ tmpBase: '/var/tmp' });
  t.after(() => f.stop());
  await f.registry();
  await f.scheduler(['--sandbox-all']);
  await f.renderServer('box', 1);
  const box = (await f.hosts()).find((h) => h.host === 'box');
  assert.ok(box?.inventory?.packages.some((p) => p.name === 'sandbox'), `the render server advertises the sandbox: ${JSON.stringify(box?.inventory?.packages)}`);
  await chmod(f.dir, 0o755);
  const scene = join(f.dir, 'in', 'x.txt');
  await mkdir(join(f.dir, 'in'), { recursive: true, mode: 0o755 });
  await writeFile(scene, 'x');
  // the job does not ask for the sandbox: the site's policy puts it there
  const id = await f.submit({ name: 'boxed', scene, renderer: 'command', frames: '1', command: `sh -c 'echo $(id -u) $(ls /proc | grep -c "^[0-9]") > {output}'`, output: { dir: join(f.dir, 'out'), pattern: 'f_#.txt' } });
  await f.waitJob(id);
  const [uid, procs] = (await readFile(join(f.dir, 'out', 'f_1.txt'), 'utf8')).trim().split(' ').map(Number);
  assert.ok(procs! < 10, `it saw only the sandbox's processes (${procs})`);
  if (process.getuid?.() === 0) assert.equal(uid, 65534, 'as nobody, the farm being root');
});
