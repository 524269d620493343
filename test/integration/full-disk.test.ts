import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, openSync, writeSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DiscardPolicy, jetstreamManager } from '@nats-io/jetstream';
import { codecs, Role, streams, subjects } from '../../protocol/index.ts';
import { CLI, readLedger, rb, TestFarm, waitUntil } from '../helpers/farm.ts';

/**
 * A small file system of its own (tmpfs), or null when this machine does not let the test
 * mount one (it needs root): the test is then skipped, saying why.
 */
async function smallDisk(t: TestContext, size: string): Promise<string | null> {
  const dir = await mkdtemp(join(tmpdir(), 'rb-small-disk-'));
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { encoding: 'utf8' });
  if (r.status !== 0) {
    await rm(dir, { recursive: true, force: true });
    t.skip(`cannot mount a ${size} tmpfs here (${(r.stderr || r.error?.message || 'not permitted').trim()}): this test needs a small file system to fill`);
    return null;
  }
  t.after(async () => {
    spawnSync('umount', ['-l', dir]); // lazy: a process still holding a file there does not keep it mounted
    await rm(dir, { recursive: true, force: true });
  });
  return dir;
}

/** Fills the file system holding `dir` to its last byte; returns the file to delete to free it. */
function fill(dir: string): string {
  const ballast = join(dir, 'ballast');
  const fd = openSync(ballast, 'w');
  const chunk = Buffer.alloc(256 * 1024, 7);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
    // the last partial chunk: write what still fits
    for (let b = 4096; ; ) {
      try {
        writeSync(fd, chunk, 0, b);
      } catch {
        if (b === 1) break;
        b = Math.max(1, b >> 1);
      }
    }
  } finally {
    closeSync(fd);
  }
  return ballast;
}

test('full disk - a full output disk fails frames with a clear reason, makes no host sick, and the jobs complete once space is freed', async (t) => {
  const out = await smallDisk(t, '4m');
  if (!out) return;
  const farm = await TestFarm.start();
  t.after(() => farm.stop());
  await farm.registry();
  await farm.scheduler();
  await farm.renderServer('disky', 2);
  const ballast = fill(out);
  // three jobs: on the old code their failures made the host sick (failed frames of three jobs),
  // and with one attempt each they failed for good at once
  const jobs: { jobId: string; ledger: string; dir: string }[] = [];
  for (const n of [1, 2, 3]) {
    const dir = join(out, `job${n}`);
    const { spec, ledger } = await farm.ledgerJob(`full${n}`, '1-2', 0, { output: { dir, pattern: 'f_####.txt' }, maxAttempts: 1 });
    jobs.push({ jobId: await farm.submit(spec), ledger, dir });
  }
  for (const { jobId } of jobs) {
    const j = await waitUntil(`a frame of ${jobId} to fail on the full disk`, async () => {
      const d = await farm.job(jobId);
      assert.notEqual(d.state, 'failed', `${jobId} failed for good: ${JSON.stringify(d.frames)}\n${farm.logs()}`);
      return d.frames.some((f) => f.error?.startsWith('RB_OUTPUT_DISK_FULL')) ? d : undefined;
    }, 30_000);
    const f = j.frames.find((x) => x.error)!;
    assert.match(f.error!, /^RB_OUTPUT_DISK_FULL: no space left on the output disk \(.*KB free\)/, 'the reason names the disk');
  }
  const waiting = await waitUntil('a job to say why it waits', async () => (await farm.job(jobs[0]!.jobId)).waiting, 20_000);
  assert.match(waiting, /its output disk is full; its frames are tried again every 10 s/);
  const sick = rb(farm, 'sick', '--json');
  assert.equal(sick.code, 0, sick.stderr);
  assert.deepEqual(JSON.parse(sick.stdout), [], 'the host is not sick: the disk was to blame');
  assert.equal((await farm.hosts()).find((h) => h.host === 'disky')?.host, 'disky');

  await unlink(ballast);
  for (const { jobId, ledger, dir } of jobs) {
    const job = await farm.waitJob(jobId, 'done', 60_000);
    assert.deepEqual(job.frames.map((f) => [f.frame, f.state]), [[1, 'done'], [2, 'done']]);
    assert.deepEqual((await readdir(dir)).filter((n) => !n.startsWith('.')).sort(), ['f_0001.txt', 'f_0002.txt']);
    assert.equal(await readFile(join(dir, 'f_0002.txt'), 'utf8'), 'frame 2\n');
    assert.ok([...(await readLedger(ledger)).values()].some((n) => n >= 2), 'frames were tried again after failing on the full disk');
  }
});

/** One CLI command against the farm `renderbus up` runs on `data` (it finds it by <data>/farm.json). */
function rbData(data: string, ...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, '--data', data, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('full disk - a full data disk (the JetStream store) refuses submits as "storage full", keeps results on the render servers, and the farm goes on once space is back, no frame lost', async (t) => {
  const data = await smallDisk(t, '64m');
  if (!data) return;
  const work = await mkdtemp(join(tmpdir(), 'rb-full-data-'));
  t.after(() => rm(work, { recursive: true, force: true }));
  const up = spawn(process.execPath, [CLI, 'up', '--data', data, '--port', '-1', '--slots', '2', '--host', 'site', '--monitor-port', '-1', '--store-min-free', '8'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let said = '';
  up.stdout.on('data', (d: Buffer) => (said += d.toString()));
  up.stderr.on('data', (d: Buffer) => (said += d.toString()));
  const exited = once(up, 'exit');
  t.after(() => void up.kill('SIGKILL'));
  await waitUntil('the farm up', () => readFile(join(data, 'farm.json'), 'utf8').then(() => true, () => undefined), 30_000);

  // frames past 4 wait for the gate: they end while the disk is full, so their results must wait
  const ledger = join(work, 'frames.ledger');
  const gate = join(work, 'gate');
  const scene = join(work, 'scene.txt');
  await writeFile(scene, 'x');
  const frames = 12;
  const command = `sh -c 'echo {frame} >> ${ledger}; while [ {frame} -gt 4 ] && [ ! -e ${gate} ]; do sleep 0.1; done; echo frame {frame} > {output}'`;
  const submit = (name: string) => rbData(data, 'submit', scene, '--renderer', 'command', '--command', command, '--frames', `1-${frames}`, '--name', name, '--output', join(work, name), '--pattern', 'f_####.txt', '--json');
  const first = submit('before');
  assert.equal(first.code, 0, `${first.stderr}\n${said}`);
  const { jobId } = JSON.parse(first.stdout) as { jobId: string };
  await waitUntil('frames 1-4 done', async () => {
    const j = rbData(data, 'job', jobId, '--json');
    return j.code === 0 && (JSON.parse(j.stdout) as { counts: { done: number } }).counts.done >= 4 ? true : undefined;
  }, 30_000);

  const ballast = fill(data);
  const refused = await waitUntil('a submit refused for storage', async () => {
    const r = submit('during');
    assert.notEqual(r.code, 0, 'nothing may be queued while the store is full');
    return /data disk is full/.test(r.stderr) ? r : undefined;
  }, 45_000, 500);
  assert.match(refused.stderr, /the site's data disk is full: nats-server could not store the submit record \(insufficient resources\); try again once space is freed/);
  await writeFile(gate, ''); // now the frames running end, and their results meet the full store
  const out = join(work, 'before');
  await waitUntil('frames 5 and 6 delivered', async () => {
    const names = await readdir(out);
    return names.includes('f_0005.txt') && names.includes('f_0006.txt') ? true : undefined;
  }, 30_000);
  const during = rbData(data, 'job', jobId, '--json');
  assert.equal(during.code, 0, `the scheduler still answers queries while the store is full: ${during.stderr}`);

  await unlink(ballast);
  const done = await waitUntil('the job done once space is back', async () => {
    const j = rbData(data, 'job', jobId, '--json');
    const job = j.code === 0 ? (JSON.parse(j.stdout) as { state: string; frames: { frame: number; state: string }[] }) : undefined;
    return job?.state === 'done' ? job : undefined;
  }, 60_000, 500).catch(async (err: unknown) => {
    const log = await readFile(join(data, 'logs', 'farm.log'), 'utf8').catch(() => '');
    throw new Error(`${(err as Error).message}\n${rbData(data, 'hosts', '--json').stdout}\n${rbData(data, 'job', jobId).stdout}\n${log.split('\n').filter((l) => /"level":[45]0/.test(l)).slice(-25).join('\n')}`);
  });
  assert.deepEqual(done.frames.map((f) => f.state), Array(frames).fill('done'));
  assert.equal((await readdir(out)).filter((n) => n.endsWith('.txt')).length, frames, 'every frame on disk');
  const runs = await readLedger(ledger);
  assert.deepEqual([...runs.keys()].sort((a, b) => a - b), Array.from({ length: frames }, (_, i) => i + 1));
  const again = submit('after');
  assert.equal(again.code, 0, `submits are taken again: ${again.stderr}`);

  up.kill('SIGTERM');
  assert.deepEqual(await exited, [0, null], said);
});

test('full disk - a result applied while its journal write failed is announced (the end of its job) once a resend stores it', async (t) => {
  const farm = await TestFarm.start();
  t.after(() => farm.stop());
  await farm.registry();
  await farm.scheduler();
  await farm.renderServer('resend', 1);
  const gate = join(farm.dir, 'gate');
  const { spec } = await farm.ledgerJob('last', '1', 0, { command: `sh -c 'while [ ! -e ${gate} ]; do sleep 0.1; done; echo frame {frame} > {output}'` });
  const jobId = await farm.submit(spec);
  const seen: string[] = [];
  const sub = farm.nc.subscribe(subjects.jobEvents(farm.site, jobId), { callback: (_err, m) => void seen.push(codecs.jobEvent.decode(m.data).event) });
  t.after(() => sub.unsubscribe());
  await waitUntil('the frame running', async () => ((await farm.job(jobId)).frames[0]?.state === 'running' ? true : undefined), 20_000);

  // the journal takes no more records, as a full store would not: refused, not lost
  const admin = await farm.connectAs(Role.Scheduler); // only the farm's services touch JetStream
  t.after(() => admin.close());
  const jsm = await jetstreamManager(admin);
  const journal = streams.journal(farm.site);
  const info = await jsm.streams.info(journal);
  await jsm.streams.update(journal, { max_msgs: info.state.messages, discard: DiscardPolicy.New });
  await writeFile(gate, '');
  await waitUntil('the result applied, its record refused', async () => ((await farm.job(jobId)).state === 'done' ? true : undefined), 20_000);
  assert.ok(!seen.includes('done'), 'not announced before it is stored');
  await jsm.streams.update(journal, { max_msgs: -1, discard: DiscardPolicy.Old });
  await waitUntil(`the job's end announced (events seen: ${seen.join(', ')})`, async () => (seen.includes('done') ? true : undefined), 30_000);
  assert.equal((await jsm.streams.info(journal)).state.messages, info.state.messages + 1, 'the result stored once');
});
