import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runChaos } from '../../tools/chaos/driver.ts';
import { formatReport } from '../../tools/chaos/report.ts';

// A short chaos run (tools/chaos/driver.ts): a real farm as separate processes, processes killed
// with SIGKILL every few seconds and a whole-site kill, while command frames and a POV-Ray
// animation render. `npm run chaos -- --minutes N` runs longer. CHAOS_SEED replays a run.
test('chaos - under kill -9 of any process and of the whole site, every job ends done with every output valid', { timeout: 15 * 60_000 }, async (t) => {
  const seed = process.env.CHAOS_SEED ? Number(process.env.CHAOS_SEED) : Math.floor(Math.random() * 1_000_000);
  const lines: string[] = [];
  const report = await runChaos({
    seconds: 45,
    seed,
    load: 0.5,
    povFrames: 10,
    siteKill: true,
    settleTimeoutMs: 240_000,
    log: (l) => lines.push(l),
  });
  const text = formatReport(report);
  t.diagnostic(`seed ${report.seed}: ${report.kills.length} kills, ${report.renderedTwice.length} frames rendered twice, ${report.interruptedRuns} runs interrupted`);
  for (const k of report.kills) {
    t.diagnostic(`kill #${k.n} ${k.victim} at ${(k.at / 1000).toFixed(1)} s: ${k.status}, ready ${k.readyMs ?? '-'} ms, progress ${k.progressMs ?? '-'} ms after the restart`);
  }
  const failed = report.checks.filter((c) => !c.ok && c.severity === 'fail');
  const why = `${text}\n\n--- driver log\n${lines.join('\n')}`;
  assert.equal(report.interrupted, false, 'the run was interrupted');
  assert.ok(report.kills.length >= 5, `at least 5 kills happened\n${why}`);
  assert.ok(report.kills.some((k) => k.kind === 'site'), `the whole-site kill happened\n${why}`);
  for (const name of ['every job accepted by the scheduler', 'every job done', 'every frame output present exactly once and valid', 'no actor died on its own']) {
    const c = report.checks.find((x) => x.name === name);
    assert.ok(c, `check '${name}' ran`);
    assert.ok(c.ok, `${name}: ${c.detail.slice(0, 10).join('; ')}\n${why}`);
  }
  assert.deepEqual(failed.map((c) => c.name), [], why);
  assert.equal(report.jobs.reduce((n, j) => n + j.valid, 0), report.framesTotal, `every frame's output valid\n${why}`);
});
