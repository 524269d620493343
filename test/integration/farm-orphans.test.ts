import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, TestFarm, waitUntil } from '../helpers/farm.ts';
import { pidAlive } from '../../sites/farm-file.ts';

/** Children of a process, from /proc. */
async function childrenOf(pid: number): Promise<number[]> {
  const tids = await readdir(`/proc/${pid}/task`).catch(() => [] as string[]);
  const lists = await Promise.all(tids.map((tid) => readFile(`/proc/${pid}/task/${tid}/children`, 'utf8').catch(() => '')));
  return lists.flatMap((l) => l.split(' ').filter((x) => x.trim() !== '').map(Number));
}

const commOf = (pid: number) => readFile(`/proc/${pid}/comm`, 'utf8').then((s) => s.trim(), () => '');

test('farm - renderbus up killed outright leaves no nats-server behind', async (t) => {
  const data = await mkdtemp(join(tmpdir(), 'rb-orphan-'));
  t.after(() => rm(data, { recursive: true, force: true }));
  const up = spawn(process.execPath, [CLI, 'up', '--data', data, '--port', '-1', '--slots', '1'], { stdio: 'ignore' });
  const exited = once(up, 'exit');
  t.after(() => void up.kill('SIGKILL'));
  await waitUntil('farm.json', () => readFile(join(data, 'farm.json'), 'utf8').then(() => true), 30_000);
  const nats = await waitUntil('the nats-server child', async () => {
    for (const pid of await childrenOf(up.pid!)) if ((await commOf(pid)) === 'nats-server') return pid;
    return undefined;
  });
  up.kill('SIGKILL'); // no chance to clean up: a power cut, an OOM kill
  await exited;
  await waitUntil('the nats-server to go', () => !pidAlive(nats) || undefined, 10_000);
  assert.equal(pidAlive(nats), false);
});

test('farm - a render server killed outright leaves no renderer running', async (t) => {
  const farm = await TestFarm.start();
  t.after(() => farm.stop());
  await farm.registry();
  await farm.scheduler();
  const rs = await farm.renderServer('doomed', 1);
  const marker = `60.${Date.now() % 1_000_000}`; // a sleep argument nobody else uses
  const scene = await farm.writeScene();
  await farm.submit({ scene, renderer: 'command', command: `sleep ${marker}`, frames: '1', output: { dir: join(farm.dir, 'out') } });
  const renderer = await waitUntil('the renderer to run', async () => {
    for (const pid of (await readdir('/proc')).filter((p) => /^\d+$/.test(p))) {
      const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
      if (cmd === `sleep\0${marker}\0`) return Number(pid);
    }
    return undefined;
  });
  await rs.kill('SIGKILL');
  await waitUntil('the renderer to stop', () => !pidAlive(renderer) || undefined, 10_000);
  assert.equal(pidAlive(renderer), false);
});
