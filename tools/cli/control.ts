import { FarmError, PROTOCOL_MAJOR, codecs, parseFrames, subjects, type CtlRequest } from '../../protocol/index.ts';
import { ExitCode, UsageError } from './cli-error.ts';
import type { CommandContext } from './command-context.ts';
import { ask, ctlSubject, openFarm } from './farm-client.ts';
import { json, plural } from './format.ts';
import { parseCount, parseToken } from './option-values.ts';

export type ControlAction = CtlRequest['action'];

const DONE_TEXT: Record<ControlAction, string> = {
  cancel: 'cancelled',
  pause: 'paused: no new frames start, running ones finish',
  resume: 'resumed',
  release: 'released',
  retry: 'frames queued again',
  priority: 'priority changed',
};

/**
 * `renderbus cancel|pause|resume|release|retry|priority <id> …`: one request on `sched.ctl`.
 * The scheduler journals the action before it answers, so an answered action is durable.
 */
export async function controlCommand(action: ControlAction, c: CommandContext<{ json?: boolean; frames?: string }>): Promise<number> {
  const jobId = parseToken('job id', c.args[0] ?? '');
  const req: CtlRequest = { v: PROTOCOL_MAJOR, action, jobId };
  if (action === 'priority') {
    if (c.args[1] === undefined) throw new UsageError('priority: give the new priority, e.g. renderbus priority <id> 10 (0-1000, lower is more urgent)');
    req.priority = parseCount('priority', c.args[1], { min: 0, max: 1000 });
  }
  if (c.opts.frames !== undefined) {
    try {
      req.frames = parseFrames(c.opts.frames);
    } catch (err) {
      throw new UsageError(`--frames: ${(err as FarmError).message}`);
    }
  }
  const fc = await openFarm(c.globals, `renderbus-${action}`);
  try {
    const { job, retried } = await ask(fc, 'scheduler', ctlSubject(fc), codecs.ctlRequest, req, codecs.ctlReply);
    const c2 = job.counts;
    const did = action === 'retry' && retried ? retryText(retried) : DONE_TEXT[action];
    c.io.stdout.write(c.opts.json ? json(job) : `job ${job.jobId} (${job.name}): ${did}; now ${job.state}, priority ${job.priority}, ${c2.done}/${c2.total} frames done\n`);
    return ExitCode.Ok;
  } finally {
    await fc.close();
  }
}

/** What a retry did, as the scheduler answered: frames queued again, hosts forgiven. */
function retryText(r: { frames: number; hosts: string[] }): string {
  const parts = [r.frames > 0 ? `${plural(r.frames, 'frame')} queued again` : 'no frame queued again'];
  if (r.hosts.length > 0) parts.push(`${plural(r.hosts.length, 'host')} forgiven (${r.hosts.slice(0, 5).join(', ')}${r.hosts.length > 5 ? ', …' : ''})`);
  return parts.join(', ');
}
