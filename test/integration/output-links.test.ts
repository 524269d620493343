import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TestFarm, waitUntil } from '../helpers/farm.ts';
import { WRITE_PNG } from '../helpers/tiny-image.ts';

const SECRET = 'root:$6$farm-only-hash:19000:0:99999:7:::\n';

// One farm for the whole file: a job per planted link.
let farm: TestFarm;
let base: string;
let victim: string;
let shadow: string;

test.before(async () => {
  farm = await TestFarm.start();
  await farm.registry();
  await farm.scheduler();
  await farm.renderServer('linkhost', 2);
  ({ base } = await farm.monitor());
  // the farm's own files, which the artist may neither read nor write (a stand-in for /etc/shadow)
  victim = join(farm.dir, 'victim');
  await mkdir(victim);
  shadow = join(victim, 'shadow');
  await writeFile(shadow, SECRET);
});
test.after(() => farm.stop());

async function assertVictimUntouched(): Promise<void> {
  assert.deepEqual(await readdir(victim), ['shadow'], 'nothing was created in the victim folder');
  assert.equal(await readFile(shadow, 'utf8'), SECRET, 'the victim file was not written');
}

/** A one-frame command job into `out`, which the artist prepared beforehand. */
async function submitInto(name: string, out: string): Promise<string> {
  const scene = await farm.writeScene(`${name}.txt`, 'scene');
  return farm.submit({ name, scene, renderer: 'command', command: `sh -c 'echo rendering {frame}; ${WRITE_PNG}'`, frames: '1', maxAttempts: 1, output: { dir: out, pattern: 'f_####.png' } });
}

for (const planted of ['.rb-logs', '.rb-partial'] as const) {
  test(`output links - a ${planted} folder planted as a link fails the frame with that reason, and nothing is written through it`, async () => {
    const out = join(farm.dir, `out-${planted.slice(4)}`);
    await mkdir(out);
    await symlink(victim, join(out, planted));
    const jobId = await submitInto(`planted${planted.slice(4)}`, out);
    const job = await farm.waitJob(jobId, 'failed');
    assert.match(job.frames[0]!.error ?? '', new RegExp(`^RB_UNSAFE_PATH: .*${planted.replace('.', '\\.')} is a symbolic link`), JSON.stringify(job.frames[0]));
    await assertVictimUntouched();
  });
}

test('output links - the monitor shows neither a frame nor a log that was swapped for a link', async () => {
  const out = join(farm.dir, 'out-swapped');
  const jobId = await submitInto('swapped', out);
  await farm.waitJob(jobId);
  const log = join(out, '.rb-logs', `${jobId}.0-a1.log`);
  await waitUntil('the task log', () => readFile(log, 'utf8').then((t) => /\[exit/.test(t), () => false), 5_000);
  const view = async () => (await (await fetch(`${base}/api/jobs/${jobId}/frames/1`)).json()) as { log: string | null };
  assert.match((await view()).log ?? '', /rendering 1/, 'the real log is shown');

  // the artist swaps the delivered frame and the log for links to the farm's secret
  const frame = join(out, 'f_0001.png');
  await rm(frame);
  await symlink(shadow, frame);
  await rm(log);
  await symlink(shadow, log);

  const thumb = await fetch(`${base}/api/jobs/${jobId}/frames/1/thumbnail`);
  const body = await thumb.text();
  assert.equal(thumb.status, 404, body);
  assert.match(body, /symbolic link/);
  assert.doesNotMatch(body, /root:|farm-only-hash/, 'not a byte of the target is shown');
  const after = await view();
  assert.equal(after.log, null, 'a log that is a link reads as no log');
  assert.doesNotMatch(JSON.stringify(after), /farm-only-hash/);
  await assertVictimUntouched();
});
