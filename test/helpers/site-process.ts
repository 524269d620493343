import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CLI, waitUntil } from './farm.ts';

/** `renderbus …` in `cwd`, with no credential or URL from the environment (the data dir decides). */
export function rbIn(cwd: string, ...args: string[]) {
  const env = { ...process.env };
  delete env.RENDERBUS_NATS;
  delete env.RENDERBUS_CREDS;
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd, env, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A whole site run by `renderbus up` as a child process. */
export interface UpProcess {
  proc: ChildProcess;
  /** What it printed so far (the last 200 kB). */
  out(): string;
  farm: { url: string; natsPid: number };
  /** Starts it again as it was started (same data directory and flags): after killUp. */
  again(): Promise<UpProcess>;
}

/** `renderbus up` on `data` (free ports, `slots` render slots), until its farm.json names it. */
export async function startUp(cwd: string, data: string, args: string[], o: { slots?: number } = {}): Promise<UpProcess> {
  const proc = spawn(process.execPath, [CLI, 'up', '--data', data, '--port', '-1', '--monitor-port', '-1', '--slots', String(o.slots ?? 0), ...args], {
    cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RENDERBUS_LOG: process.env.RENDERBUS_LOG ?? 'info' },
  });
  let out = '';
  const keep = (d: Buffer) => void (out = (out + d.toString()).slice(-200_000));
  proc.stdout!.on('data', keep);
  proc.stderr!.on('data', keep);
  const farm = await waitUntil('the farm up', async () => {
    if (proc.exitCode !== null) return 'exited' as const;
    const f = JSON.parse(await readFile(join(data, 'farm.json'), 'utf8').catch(() => 'null')) as { url: string; natsPid: number; pid: number } | null;
    return f && f.pid === proc.pid ? f : undefined;
  }, 60_000);
  if (farm === 'exited') throw new Error(`up exited ${String(proc.exitCode)}:\n${out}`);
  return { proc, out: () => out, farm, again: () => startUp(cwd, data, args, o) };
}

/** `kill -9` of the whole site: its `up` process, and with it its nats-server (which setpriv's pdeathsig ends). */
export async function killUp(u: UpProcess): Promise<void> {
  if (u.proc.exitCode === null && u.proc.signalCode === null) {
    const exited = once(u.proc, 'exit');
    u.proc.kill('SIGKILL');
    await exited;
  }
  await waitUntil(`nats-server ${u.farm.natsPid} gone with its site`, () => {
    try {
      process.kill(u.farm.natsPid, 0);
      return false;
    } catch {
      return true;
    }
  }, 20_000);
}

/** SIGTERM, and wait until it has stopped. */
export async function stopUp(u: UpProcess): Promise<void> {
  if (u.proc.exitCode !== null || u.proc.signalCode !== null) return;
  const exited = once(u.proc, 'exit');
  u.proc.kill('SIGTERM');
  await exited;
}
