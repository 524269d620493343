import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CLI, TestFarm, waitUntil } from '../helpers/farm.ts';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  /** When each stdout chunk arrived (ms after start) and what it said. */
  chunks: { at: number; text: string }[];
}

/** The CLI against the farm without blocking the test, so several run at once. */
function rb(farm: TestFarm, ...args: string[]): Promise<Run> {
  return start(farm, ...args).exited;
}

/** The same, with what it printed so far readable while it runs. */
function start(farm: TestFarm, ...args: string[]): { run: Run; exited: Promise<Run> } {
  const t0 = Date.now();
  const proc = spawn(process.execPath, [CLI, ...args, '--nats', farm.url, '--site', farm.site, '--creds', farm.operatorCreds], { stdio: ['ignore', 'pipe', 'pipe'] });
  const r: Run = { code: null, stdout: '', stderr: '', chunks: [] };
  proc.stdout.on('data', (d: Buffer) => {
    r.stdout += d.toString();
    r.chunks.push({ at: Date.now() - t0, text: d.toString() });
  });
  proc.stderr.on('data', (d: Buffer) => (r.stderr += d.toString()));
  // a guard against a hang, not a time limit: six at once on a loaded 2-core machine took over 30 s
  const timer = setTimeout(() => proc.kill('SIGKILL'), 120_000);
  const exited = once(proc, 'exit').then(([code]) => {
    clearTimeout(timer);
    r.code = code as number | null;
    return r;
  });
  return { run: r, exited };
}

function ok(r: Run, what: string): Run {
  assert.equal(r.code, 0, `${what}: exit ${r.code}\n${r.stderr}`);
  return r;
}

// ~40 MB held and a line every 0.25 s; then, once the gate file is there (the test opens it when the
// CLI is ready, however slowly it started), a line every 0.5 s for ~4 s and the frame's output
const SCRIPT = `$| = 1;
my $mem = "x" x 40_000_000;
until (-e $ARGV[2]) { print "frame $ARGV[0] waits for its gate\\n"; select(undef, undef, undef, 0.25); }
for my $i (1 .. 8) { print "line $i of frame $ARGV[0]\\n"; select(undef, undef, undef, 0.5); }
open(my $f, '>', $ARGV[1]) or die; print $f "ok\\n"; close $f;
`;

test('frame and slot commands - live figures, a followed log, kill, bad arguments', async (t) => {
  const farm = await TestFarm.start();
  t.after(() => farm.stop());
  await farm.registry();
  await farm.scheduler();
  await farm.renderServer('box', 1);
  const script = join(farm.dir, 'frame.pl');
  await writeFile(script, SCRIPT);
  const scene = await farm.writeScene();
  const gate = join(farm.dir, 'gate');
  const jobId = await farm.submit({
    name: 'live', scene, renderer: 'command', command: `perl ${script} {frame} {output} ${gate}`, frames: '1',
    output: { dir: join(farm.dir, 'out-live'), pattern: 'f_####.txt' },
  });
  await waitUntil('frame 1 to run', async () => (await farm.job(jobId)).frames[0]?.state === 'running', 10_000, 50);

  // the frame waits at its gate: busy for as long as the CLIs take to start
  const follow = start(farm, 'frame', `${jobId}:1`, '--follow');
  const slot = await rb(farm, 'slot', 'box/0', '--json');
  const s = JSON.parse(ok(slot, 'slot').stdout) as { state: string; jobId: string; frames: number[]; live: { cpuPercent: number; rssKb: number; peakRssKb: number; wallMs: number; writtenBytes?: number } | null };
  assert.equal(s.state, 'busy');
  assert.equal(s.jobId, jobId);
  assert.deepEqual(s.frames, [1]);
  assert.ok(s.live, 'live figures of the running frame');
  assert.ok(s.live.rssKb > 30_000, `memory now ${s.live.rssKb} KiB`);
  assert.ok(s.live.peakRssKb >= s.live.rssKb);
  assert.ok(s.live.cpuPercent >= 0 && s.live.wallMs > 0);
  assert.ok((s.live.writtenBytes ?? 0) > 0, 'bytes written by the tree (its lines)');

  await waitUntil('frame --follow to print the first line', () => /waits for its gate/.test(follow.run.stdout) || follow.run.code !== null, 30_000, 50);
  await writeFile(gate, '');
  const followed = ok(await follow.exited, 'frame --follow');
  for (let i = 1; i <= 8; i++) assert.match(followed.stdout, new RegExp(`line ${i} of frame 1`));
  // printed as they came: the lines arrived over seconds, not in one piece at the end
  const withLines = followed.chunks.filter((c) => /line \d/.test(c.text));
  assert.ok(withLines.length >= 2 && withLines.at(-1)!.at - withLines[0]!.at > 1_000, `chunks at ${withLines.map((c) => c.at).join(', ')} ms`);

  await farm.waitJob(jobId, 'done', 15_000);
  const after = JSON.parse(ok(await rb(farm, 'frame', `${jobId}:1`, '--json'), 'frame --json').stdout) as { frame: { state: string; stats: { wallMs: number; cpuMs: number; peakRssKb: number } }; log: string; logPath: string };
  assert.equal(after.frame.state, 'done');
  assert.ok(after.frame.stats.wallMs > 3_500, `wall ${after.frame.stats.wallMs} ms`);
  assert.ok(after.frame.stats.peakRssKb > 30_000, `peak ${after.frame.stats.peakRssKb} KiB`);
  assert.match(after.log, /line 8 of frame 1/);
  assert.match(after.logPath, /\.rb-logs\//);
  const text = ok(await rb(farm, 'frame', `${jobId}:1`), 'frame').stdout;
  assert.match(text, /state\s+done/);
  assert.match(text, /line 8 of frame 1/);

  // --kill: a long frame, one attempt, so the kill fails it
  const { spec } = await farm.ledgerJob('long', '1', 30, { maxAttempts: 1 });
  const longId = await farm.submit(spec);
  await waitUntil('the long frame to run', async () => (await farm.job(longId)).frames[0]?.state === 'running', 10_000, 50);
  ok(await rb(farm, 'frame', `${longId}:1`, '--kill'), 'frame --kill');
  const failed = await farm.waitJob(longId, 'failed', 15_000);
  assert.match(failed.frames[0]!.error ?? '', /cancel|kill/);

  const bad = await Promise.all([
    rb(farm, 'frame', 'abc'), rb(farm, 'slot', 'box/x'), rb(farm, 'frame', 'nosuchjob:1'), rb(farm, 'slot', 'nohost/0'), rb(farm, 'slot', 'box/5'), rb(farm, 'frame', `${jobId}:7`),
  ]);
  assert.equal(bad[0]!.code, 2);
  assert.match(bad[0]!.stderr, /'abc'/);
  assert.equal(bad[1]!.code, 2);
  assert.match(bad[1]!.stderr, /'box\/x'/);
  assert.equal(bad[2]!.code, 1, bad[2]!.stderr);
  assert.match(bad[2]!.stderr, /nosuchjob/);
  assert.equal(bad[3]!.code, 1);
  assert.match(bad[3]!.stderr, /nohost/);
  assert.equal(bad[4]!.code, 1);
  assert.match(bad[4]!.stderr, /no slot 5/);
  assert.equal(bad[5]!.code, 1);
  assert.match(bad[5]!.stderr, /no frame 7/);
});
