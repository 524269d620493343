import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import pino from 'pino';
import { PeerCas } from '../../sites/cas/index.ts';
import { bundleIdFor, remoteJobPaths, RemoteJobRecords, sweepRemoteJobs } from '../../sites/remote-jobs/index.ts';

const DAY = 86_400_000;
const JOBS = 4;
const remoteJobs = pathToFileURL(join(import.meta.dirname, '../../sites/remote-jobs/index.ts')).href;

// The sweep in a process of its own, logging each removal (pino, JSON lines on stdout).
const CHILD = `
import pino from 'pino';
import { RemoteJobRecords, sweepRemoteJobs } from '${remoteJobs}';
const [dataDir, now] = process.argv.slice(-2);
const records = await RemoteJobRecords.open(dataDir);
await sweepRemoteJobs({ site: 'v1', dataDir, records, keepMs: 7 * 86400000, log: pino({ level: 'debug' }), now: Number(now) });
`;

/** Runs the sweep in a child and kills it (SIGKILL) as it starts removing its first job's files; how many job folders were left then. */
async function sweepKilled(dataDir: string, now: number): Promise<{ killed: boolean; left: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', CHILD, dataDir, String(now)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exit = once(child, 'exit');
  let left = -1;
  let buf = '';
  child.stdout.on('data', (d: Buffer) => {
    buf += d.toString('utf8');
    if (left < 0 && buf.includes('removing a peer job\'s kept inputs')) {
      child.kill('SIGKILL');
      left = 0; // counted below, once it is dead
    }
  });
  const [code, signal] = (await exit) as [number | null, string | null];
  if (left === 0) left = (await readdir(join(dataDir, 'fed', 'jobs', 'studio')).catch(() => [])).length;
  assert.ok(signal === 'SIGKILL' || code === 0, `the sweep exited ${code} ${signal}`);
  return { killed: signal === 'SIGKILL', left };
}

test('fed retention - a sweep killed (SIGKILL) mid-way leaves nothing that breaks the next: every job past its time ends removed and marked, its blobs collected', { timeout: 60_000 }, async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'rb-retention-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  const records = await RemoteJobRecords.open(dataDir);
  const cas = await PeerCas.open(dataDir, 'studio');
  const now = Date.now();
  for (let i = 0; i < JOBS; i++) {
    const job = `j-${i}`;
    const paths = remoteJobPaths(dataDir, 'studio', job);
    const hashes: string[] = [];
    for (const part of ['scene.pov', 'tex.png']) {
      const bytes = Buffer.from(`${job} ${part}`);
      const hash = createHash('sha256').update(bytes).digest('hex');
      const src = join(dataDir, `${job}-${part}`);
      await writeFile(src, bytes);
      await cas.put(src, hash, bytes.length, { deferDirSync: true });
      await rm(src);
      await cas.linkOut(hash, join(paths.root, 'proj', part));
      await utimes(cas.blobPath(hash), new Date(1_000), new Date(1_000));
      hashes.push(hash);
    }
    await cas.addRef(`job-${job}`, hashes);
    // the outputs already sent: enough files that removing a job takes a while
    await mkdir(paths.out, { recursive: true });
    await Promise.all(Array.from({ length: 400 }, (_, f) => writeFile(join(paths.out, `frame_${f}.png`), 'x')));
    await records.put({ v: 1, peer: 'studio', originJob: job, bundleId: `job-${job}`, state: 'accepted', jobId: `v-${job}`, theirSpec: { scene: '/proj/scene.pov', frames: '1', output: { dir: '/proj/out' } }, samples: [1], at: 1_000 });
    const bill = bundleIdFor('v1', job, 'bill');
    await records.markSent({ peer: 'studio', originJob: job }, bill);
    await utimes(join(dataDir, 'fed', 'remote-jobs', 'studio', `${job}.sent`, bill), new Date(now - 8 * DAY), new Date(now - 8 * DAY));
  }
  await cas.flush();

  // killed as it removes the first job's files: marked, its folder half gone
  const r = await sweepKilled(dataDir, now);
  t.diagnostic(`killed with ${r.left} of ${JOBS} job folders left`);
  assert.ok(r.killed && r.left > 0, 'the sweep was killed while jobs were left to remove');

  const after = await RemoteJobRecords.open(dataDir); // no record damaged
  const result = await sweepRemoteJobs({ site: 'v1', dataDir, records: after, keepMs: 7 * DAY, log: pino({ level: 'silent' }), now });
  t.diagnostic(`the next sweep removed ${result.removed.length} jobs and ${result.blobsRemoved} blobs`);
  assert.deepEqual(await readdir(join(dataDir, 'fed', 'jobs', 'studio')), [], 'every job folder is gone');
  assert.deepEqual(await cas.refs(), [], 'every reference is gone');
  const blobs = (await readdir(join(cas.root, 'sha256'), { recursive: true })).filter((n) => /[0-9a-f]{64}$/.test(n));
  assert.deepEqual(blobs, [], 'every blob was collected');
  for (let i = 0; i < JOBS; i++) assert.equal(after.get('studio', `j-${i}`)?.inputsGone?.keptMs, 7 * DAY, `j-${i} is marked`);
});
