import { PROTOCOL_MAJOR, codecs, subjects } from '../../protocol/index.ts';
import { ExitCode } from './cli-error.ts';
import type { CommandContext } from './command-context.ts';
import { ask, openFarm } from './farm-client.ts';
import { json } from './format.ts';
import { parseToken } from './option-values.ts';

/** `renderbus cancel <id>`: asks the scheduler to cancel a job (`sched.ctl`). */
export async function cancelCommand(c: CommandContext<{ json?: boolean }>): Promise<number> {
  const jobId = parseToken('job id', c.args[0] ?? '');
  const fc = await openFarm(c.globals, 'renderbus-cancel');
  try {
    const { job } = await ask(fc, 'scheduler', subjects.schedCtl(fc.site), codecs.ctlRequest, { v: PROTOCOL_MAJOR, action: 'cancel', jobId }, codecs.ctlReply);
    c.io.stdout.write(c.opts.json ? json(job) : `job ${job.jobId} (${job.name}): ${job.state}, ${job.counts.done}/${job.counts.total} frames were done\n`);
    return ExitCode.Ok;
  } finally {
    await fc.close();
  }
}
