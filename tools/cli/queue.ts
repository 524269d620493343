import { PROTOCOL_MAJOR, codecs, FarmError, subjects } from '../../protocol/index.ts';
import { ExitCode } from './cli-error.ts';
import type { CommandContext } from './command-context.ts';
import { ask, openFarm } from './farm-client.ts';
import { loadJobs } from './jobs.ts';
import { json, paint } from './format.ts';
import { describeQueue, queueEntries } from './manager-format.ts';

/**
 * `renderbus queue`: the jobs that have not ended, in the scheduler's queue order, each with its
 * position, priority, project, frames queued/running/done and why it waits; with fair share on,
 * the projects' shares above them.
 */
export async function queueCommand(c: CommandContext<{ json?: boolean }>): Promise<number> {
  const fc = await openFarm(c.globals, 'renderbus-queue');
  try {
    const [jobs, shares] = await Promise.all([
      loadJobs(fc),
      // the queue stands without the shares: an answer that fails leaves them out
      ask(fc, 'scheduler', subjects.schedShares(fc.site), codecs.sharesRequest, { v: PROTOCOL_MAJOR, action: 'list' }, codecs.sharesReply).catch((err: unknown) => {
        if (err instanceof FarmError) return null;
        throw err;
      }),
    ]);
    const entries = queueEntries(jobs);
    c.io.stdout.write(c.opts.json ? json({ shares, jobs: entries }) : describeQueue(entries, shares, paint(c.io.stdout), fc.site));
    return ExitCode.Ok;
  } finally {
    await fc.close();
  }
}
