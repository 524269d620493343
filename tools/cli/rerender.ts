import { FarmError, JobState, newJobId, parseFrames, type JobDetail, type JobSpec } from '../../protocol/index.ts';
import { ExitCode, UsageError } from './cli-error.ts';
import type { CommandContext } from './command-context.ts';
import { openFarm } from './farm-client.ts';
import { json, plural } from './format.ts';
import { loadJob } from './job.ts';
import { parseToken } from './option-values.ts';
import { followJob, reportOutcome, submitJob } from './submit.ts';

export interface RerenderOptions {
  frames?: string;
  wait?: boolean;
  json?: boolean;
}

const ENDED: readonly string[] = [JobState.Done, JobState.Failed, JobState.Cancelled];

/**
 * The new job that renders `frames` of an ended job again (pure): the same description, those
 * frames, the same output folder, the same site for an outsourced job, and `rerenderOf` naming
 * the first job of the chain (a re-render of a re-render names the original, whose inputs the
 * vendor kept). What the original waited for, or was held for, is over. Refused by name: a job
 * not ended, frames that are not the job's.
 */
export function rerenderSpec(job: Pick<JobDetail, 'jobId' | 'name' | 'state' | 'spec' | 'outputDir' | 'outsourced'>, framesText: string): JobSpec {
  if (!ENDED.includes(job.state)) {
    throw new FarmError('RB_BAD_ARGUMENT', `job ${job.jobId} is ${job.state}: only a job that ended (done, failed or cancelled) is rendered again as a new job; to render frames of it again now, renderbus retry ${job.jobId} --frames ${framesText}`);
  }
  let frames: number[];
  try {
    frames = parseFrames(framesText);
  } catch (err) {
    throw new UsageError(`--frames: ${(err as FarmError).message}`);
  }
  const of = new Set(parseFrames(job.spec.frames));
  const strangers = frames.filter((f) => !of.has(f));
  if (strangers.length > 0) {
    throw new UsageError(`--frames: ${plural(strangers.length, 'frame')} (${strangers.slice(0, 10).join(', ')}${strangers.length > 10 ? ', …' : ''}) ${strangers.length > 1 ? 'are' : 'is'} not of job ${job.jobId}, whose frames are ${job.spec.frames}`);
  }
  const { hold: _hold, after: _after, afterFrames: _afterFrames, site: _site, ...kept } = job.spec;
  // a job outsourced by the site's policy does not name its site: the scheduler's view does
  const site = job.outsourced?.site ?? job.spec.site;
  const name = `re-render of ${job.jobId}: ${job.name}`;
  return {
    ...kept,
    name: name.length > 200 ? `${name.slice(0, 199)}…` : name,
    frames: framesText.trim(),
    output: { ...job.spec.output, dir: job.outputDir },
    rerenderOf: job.spec.rerenderOf ?? job.jobId,
    ...(site !== undefined ? { site } : {}),
  };
}

/**
 * `renderbus rerender <job> --frames 3,7-9`: a new job for those frames of an ended job. An
 * outsourced job's goes to the same site, which renders it from the inputs it kept (no file is
 * sent, docs/federation.md "Retention and re-renders"); a local job's renders here.
 */
export async function rerenderCommand(c: CommandContext<RerenderOptions>): Promise<number> {
  const jobId = parseToken('job id', c.args[0] ?? '');
  if (c.opts.frames === undefined) throw new UsageError(`give the frames to render again, e.g. renderbus rerender ${jobId} --frames 3,7-9`);
  const fc = await openFarm(c.globals, 'renderbus-rerender');
  try {
    const job = await loadJob(fc, jobId).catch((err: unknown) => {
      if (err instanceof FarmError && err.code === 'RB_UNKNOWN_JOB') throw new FarmError('RB_UNKNOWN_JOB', `job ${jobId} is not known at ${fc.site} (renderbus jobs lists the jobs)`, { cause: err });
      throw err;
    });
    const spec = rerenderSpec(job, c.opts.frames);
    const newId = newJobId(Date.now());
    const sent = await submitJob(fc, spec, newId);
    const where = spec.site !== undefined ? `at ${spec.site}, from the inputs it kept of ${spec.rerenderOf}` : `here, from ${spec.scene}`;
    if (c.opts.json && !c.opts.wait) {
      c.io.stdout.write(json({ ...sent, rerenderOf: spec.rerenderOf, site: spec.site ?? fc.site, spec }));
      return ExitCode.Ok;
    }
    if (!c.opts.json) {
      c.io.stdout.write(`${sent.jobId}\n`);
      c.io.stderr.write(`submitted job ${sent.jobId}: ${plural(sent.frames, 'frame')} of ${jobId} rendered again ${where}, output in ${job.outputDir}\n`);
    }
    if (!c.opts.wait) return ExitCode.Ok;
    const outcome = await followJob(fc, sent.jobId, c.io, c.opts.json ? 'none' : c.io.stderr.isTTY ? 'bar' : 'lines', sent.frames);
    if (outcome === 'interrupted') return ExitCode.Interrupted;
    if (c.opts.json) c.io.stdout.write(json({ ...sent, rerenderOf: spec.rerenderOf, state: outcome.summary.state, counts: outcome.summary.counts, ...(outcome.summary.error ? { error: outcome.summary.error } : {}) }));
    else reportOutcome(c.io, outcome);
    return outcome.summary.state === 'done' ? ExitCode.Ok : ExitCode.Failed;
  } finally {
    await fc.close();
  }
}
