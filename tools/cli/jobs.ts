import { pageAllJobs } from '../../actors/scheduler/query-client.ts';
import { codecs, subjects, type JobSummary } from '../../protocol/index.ts';
import { ExitCode } from './cli-error.ts';
import type { CommandContext } from './command-context.ts';
import { ask, openFarm, type FarmClient } from './farm-client.ts';
import { cut, json, originText, paint, stateColour, table } from './format.ts';

/**
 * Every job the scheduler holds, in its order, page after page of `sched.query` (thousands of
 * jobs do not fit one reply). The loader of `renderbus jobs`, `queue` and the web monitor's queue.
 */
export function loadJobs(fc: FarmClient, timeoutMs = 5_000): Promise<JobSummary[]> {
  return pageAllJobs((req) => ask(fc, 'scheduler', subjects.schedQuery(fc.site), codecs.queryRequest, req, codecs.jobsReply, timeoutMs));
}

/** `renderbus jobs`: the scheduler's queue, most urgent first as the scheduler orders it. */
export async function jobsCommand(c: CommandContext<{ json?: boolean }>): Promise<number> {
  const fc = await openFarm(c.globals, 'renderbus-jobs');
  try {
    const jobs = await loadJobs(fc);
    if (c.opts.json) {
      c.io.stdout.write(json(jobs));
      return ExitCode.Ok;
    }
    if (jobs.length === 0) {
      c.io.stdout.write(`no jobs on site ${fc.site} (submit one: renderbus submit SCENE --frames 1-24)\n`);
      return ExitCode.Ok;
    }
    const p = paint(c.io.stdout);
    const rows = jobs.map((j) => [
      j.jobId,
      cut(j.name, 30),
      stateColour(p, j.state),
      String(j.priority),
      `${j.counts.done}/${j.counts.total}${j.counts.failed > 0 ? p.red(` (${j.counts.failed} failed)`) : ''}`,
      // running: slots rendering it; in hand: handed to slots that have not started them yet
      `${j.counts.running}${j.counts.inHand ? ` +${j.counts.inHand} in hand` : ''}`,
      // a peer's job says whose it is: the vendor's operators answer to that studio for it
      // a split job's part says whose part it is
      [j.partOf !== undefined ? `part of ${j.partOf}` : '', j.origin ? originText(j.origin) : '', j.waiting ?? ''].filter((t) => t !== '').join('; '),
    ]);
    c.io.stdout.write(table(['ID', 'NAME', 'STATE', 'PRI', 'DONE/TOTAL', 'RUNNING', 'WAITING'], rows));
    return ExitCode.Ok;
  } finally {
    await fc.close();
  }
}
