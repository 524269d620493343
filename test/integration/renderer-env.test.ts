import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, symlink, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAdapters, deliverTask, Launcher, prepareTask, renderTask } from '../../actors/render-slot/index.ts';
import { aTaskAssignment } from '../helpers/builders.ts';
import { rb, TestFarm, waitUntil } from '../helpers/farm.ts';

// What `renderbus up` holds in its environment: none of it may reach a renderer.
const FARM_SECRETS = {
  RB_WEBHOOK_SECRET: 'whsec-7f3a9c-never-in-a-log',
  RB_SMTP_URL: 'smtp://farm:hunter2-smtp-password@mail.example:25',
  RB_SECRET_X: 'made-up-secret-x',
};
const LEAKS = /whsec-7f3a9c|hunter2-smtp-password|made-up-secret-x|RB_WEBHOOK_SECRET|RB_SMTP_URL|RB_SECRET_X/;

/** The farm's secrets in this process's environment (inherited by the actors it starts) for one test. */
function withFarmSecrets(t: TestContext): void {
  Object.assign(process.env, FARM_SECRETS);
  t.after(() => {
    for (const k of Object.keys(FARM_SECRETS)) delete process.env[k];
  });
}

/** A task's log once written (it reaches the disk just after the task ends). */
async function logOf(path: string): Promise<string> {
  return waitUntil(`the log ${path}`, async () => {
    const text = await readFile(path, 'utf8').catch(() => '');
    return /\[(exit|could not start)/.test(text) ? text : undefined;
  }, 5_000, 20);
}

/** Checks an `env` listing: the job's variable and PATH are there, the farm's secrets are not. */
function assertCleanEnv(log: string, where: string): void {
  assert.doesNotMatch(log, LEAKS, `${where} shows the farm's environment:\n${log}`);
  assert.match(log, /^PATH=\//m, `${where} has no PATH:\n${log}`);
  assert.match(log, /^SHOT=sq010 sh020$/m, `${where} lacks the job's own variable:\n${log}`);
}

for (const path of ['fork server', 'direct spawn'] as const) {
  test(`renderer env - a renderer started by ${path} sees the job's variables, never the render server's`, async (t) => {
    withFarmSecrets(t);
    const dir = await mkdtemp(join(tmpdir(), 'rb-env-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const scene = join(dir, 'scene.txt');
    await writeFile(scene, 'scene');
    const launcher = path === 'fork server' ? new Launcher() : undefined;
    t.after(() => launcher?.close());
    const adapters = createAdapters();
    const task = aTaskAssignment({ jobId: 'jenv', scene, outputDir: join(dir, 'out'), frames: [1], renderer: 'command', command: 'env', env: { SHOT: 'sq010 sh020' } });
    const prepared = await prepareTask(task, adapters);
    const outcome = await renderTask(task, prepared, { adapters, ...(launcher ? { launcher } : {}) });
    const r = await deliverTask(task, prepared, outcome, task.slot);
    assert.equal(r.status, 'done', r.error?.message);
    assertCleanEnv(await logOf(prepared.logFile), 'the task log');
  });
}

/** A bin folder with what a render host runs, but no perl: its render server starts renderers directly. */
async function binWithoutPerl(dir: string): Promise<string> {
  const bin = join(dir, 'bin-no-perl');
  await mkdir(bin);
  for (const tool of ['sh', 'env', 'uname', 'cat']) await symlink(`/usr/bin/${tool}`, join(bin, tool)).catch(() => symlink(`/bin/${tool}`, join(bin, tool)));
  return bin;
}

for (const path of ['fork server', 'direct spawn'] as const) {
  test(`renderer env - on a farm started with secrets in its environment, a job's log and the monitor's log view show none (${path})`, async (t) => {
    withFarmSecrets(t);
    const farm = await TestFarm.start();
    t.after(() => farm.stop());
    await farm.registry();
    await farm.scheduler();
    if (path === 'direct spawn') {
      // the render server gets this PATH (no perl on it): Launcher.available() is false there
      const server = await farm.renderServer('envhost', 1, [], { PATH: await binWithoutPerl(farm.dir) });
      await waitUntil('the render server to say it spawns directly', () => /perl not found/.test(server.output), 10_000);
    } else {
      await farm.renderServer('envhost', 1);
    }
    const { base } = await farm.monitor();
    const scene = await farm.writeScene('notes.txt', 'scene');
    const out = join(farm.dir, 'out');
    const sub = rb(farm, 'submit', scene, '--frames', '1', '--command', 'env', '--env', 'SHOT=sq010 sh020', '--output', out, '--wait');
    assert.equal(sub.code, 0, `${sub.stderr}\n${farm.logs()}`);
    const jobId = sub.stdout.trim();

    assertCleanEnv(await logOf(join(out, '.rb-logs', `${jobId}.0-a1.log`)), 'the task log');
    const view = await waitUntil('the monitor to show the log', async () => {
      const r = await fetch(`${base}/api/jobs/${jobId}/frames/1`);
      const body = (await r.json()) as { log: string | null };
      return body.log && /\[exit/.test(body.log) ? body.log : undefined;
    }, 10_000);
    assertCleanEnv(view, "the monitor's log view");
    const frame = rb(farm, 'frame', `${jobId}:1`, '--log');
    assert.equal(frame.code, 0, frame.stderr);
    assertCleanEnv(frame.stdout, 'renderbus frame --log');
  });
}
