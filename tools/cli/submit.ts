import { join } from 'node:path';
import { FarmError, PROTOCOL_MAJOR, codecs, newJobId, subjects, type JobSpec } from '../../protocol/index.ts';
import { readFarmFile } from '../../sites/farm-file.ts';
import { ExitCode } from './cli-error.ts';
import type { CommandContext } from './command-context.ts';
import { ask, openFarm, type FarmClient } from './farm-client.ts';
import { duration, json, paint, plural, type Io } from './format.ts';
import { checkGlobals, dataDirOf } from './global-options.ts';
import { buildJob, type SubmitFlags } from './job-file.ts';
import { currentUser } from './os-user.ts';
import { waitForJob, type Display, type JobOutcome } from './progress.ts';
import { untilSignal } from './signals.ts';

export interface SubmitOptions extends SubmitFlags {
  wait?: boolean;
  hold?: boolean;
  previewFirst?: boolean;
  chain?: boolean;
  split?: boolean;
  json?: boolean;
}

/** `renderbus submit`: builds and checks the job description, sends it, and with --wait follows it. */
export async function submitCommand(c: CommandContext<SubmitOptions>): Promise<number> {
  const g = checkGlobals(c.globals);
  const dataDir = dataDirOf(g);
  const farmFile = await readFarmFile(dataDir).catch(() => null);
  const jobId = newJobId(Date.now());
  const { spec } = buildJob({
    args: c.args,
    flags: c.opts,
    cwd: process.cwd(),
    defaults: { group: currentUser().group, outputRoot: farmFile?.outputDir ?? join(dataDir, 'output') },
    jobId,
  });
  if (c.opts.hold) spec.hold = true; // a job file may say so too
  if (c.opts.previewFirst) spec.previewFirst = true;
  if (c.opts.chain) spec.chain = true;
  if (c.opts.split) spec.split = true;

  const fc = await openFarm(g, 'renderbus-submit');
  try {
    const sent = await submitJob(fc, spec, jobId);
    const outputDir = spec.output?.dir ?? '';
    if (c.opts.json && !c.opts.wait) {
      c.io.stdout.write(json({ ...sent, outputDir, site: fc.site, spec }));
      return ExitCode.Ok;
    }
    if (!c.opts.json) {
      c.io.stdout.write(`${sent.jobId}\n`); // alone on stdout, so scripts can capture it
      c.io.stderr.write(`submitted job ${sent.jobId} '${spec.name}' to site ${fc.site}: ${plural(sent.frames, 'frame')} in ${plural(sent.tasks, 'task')}, output in ${outputDir}\n`);
    }
    if (!c.opts.wait) return ExitCode.Ok;

    const display: Display = c.opts.json ? 'none' : c.io.stderr.isTTY ? 'bar' : 'lines';
    const outcome = await followJob(fc, sent.jobId, c.io, display, sent.frames);
    if (outcome === 'interrupted') return ExitCode.Interrupted;
    if (c.opts.json) {
      c.io.stdout.write(json({ ...sent, outputDir, site: fc.site, state: outcome.summary.state, counts: outcome.summary.counts, failures: outcome.failures, ...(outcome.summary.error ? { error: outcome.summary.error } : {}) }));
    } else {
      reportOutcome(c.io, outcome);
    }
    return outcome.summary.state === 'done' ? ExitCode.Ok : ExitCode.Failed;
  } finally {
    await fc.close();
  }
}

/** Sends one job to the scheduler (`sched.submit`). The client picks the id, so a retry is idempotent. */
export async function submitJob(fc: FarmClient, spec: JobSpec, jobId: string): Promise<{ jobId: string; frames: number; tasks: number }> {
  try {
    return await ask(fc, 'scheduler', subjects.schedSubmit(fc.site, fc.creds.name), codecs.submitRequest, { v: PROTOCOL_MAJOR, spec, jobId }, codecs.submitReply, 10_000);
  } catch (err) {
    if (err instanceof FarmError && err.code !== 'RB_SCHEDULER_UNAVAILABLE') {
      throw new FarmError(err.code, `the scheduler refused the job: ${err.message}`, { cause: err });
    }
    throw err;
  }
}

/**
 * Waits for a job with the progress display. Ctrl-C stops waiting (the job keeps running)
 * and resolves 'interrupted'.
 */
export async function followJob(fc: FarmClient, jobId: string, io: Io, display: Display, total?: number): Promise<JobOutcome | 'interrupted'> {
  const abort = new AbortController();
  const sig = untilSignal();
  void sig.signal.then(() => abort.abort());
  try {
    return await waitForJob(fc, jobId, { io, display, ...(total !== undefined ? { total } : {}), signal: abort.signal });
  } catch (err) {
    if (!abort.signal.aborted) throw err;
    io.stderr.write(`\nstopped waiting; job ${jobId} keeps running (renderbus job ${jobId}, renderbus cancel ${jobId})\n`);
    return 'interrupted';
  } finally {
    sig.dispose();
  }
}

/** Says how a job ended on stderr; a failed job lists which frames failed and why. */
export function reportOutcome(io: Io, o: JobOutcome): void {
  const p = paint(io.stderr);
  const s = o.summary;
  const took = s.startedAt !== undefined && s.finishedAt !== undefined ? ` in ${duration(s.finishedAt - s.startedAt)}` : '';
  if (s.state === 'done') {
    io.stderr.write(`${p.green('done')}: job ${s.jobId}, ${plural(s.counts.done, 'frame')} rendered${took}, in ${s.outputDir}\n`);
    return;
  }
  const head = s.state === 'failed' ? p.red('failed') : p.yellow(s.state);
  const ran = took ? `, after ${took.slice(4)}` : '';
  io.stderr.write(`${head}: job ${s.jobId}, ${s.counts.done} of ${plural(s.counts.total, 'frame')} done, ${s.counts.failed} failed${ran}\n`);
  // why the whole job failed (a broken scene, its error budget spent): the renderer's own words
  if (s.error) io.stderr.write(`${s.error}\n  fix it, then: renderbus retry ${s.jobId}\n`);
  const shown = o.failures.slice(0, 20);
  for (const f of shown) io.stderr.write(`  frame ${f.frame}: ${f.error}\n`);
  if (o.failures.length > shown.length) io.stderr.write(`  ... and ${o.failures.length - shown.length} more (renderbus job ${s.jobId})\n`);
}
