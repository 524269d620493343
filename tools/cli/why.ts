import { PROTOCOL_MAJOR, codecs, subjects, type JobSummary } from '../../protocol/index.ts';
import { ExitCode } from './cli-error.ts';
import type { CommandContext } from './command-context.ts';
import { ask, openFarm } from './farm-client.ts';
import { json, paint, stateColour, type Paint } from './format.ts';
import { parseToken } from './option-values.ts';

/** `renderbus why <id>`: why a job is not rendering (or that it is), with what to do about it. */
export async function whyCommand(c: CommandContext<{ json?: boolean }>): Promise<number> {
  const jobId = parseToken('job id', c.args[0] ?? '');
  const fc = await openFarm(c.globals, 'renderbus-why');
  try {
    const { job } = await ask(fc, 'scheduler', subjects.schedQuery(fc.site), codecs.queryRequest, { v: PROTOCOL_MAJOR, what: 'job', jobId }, codecs.jobReply);
    c.io.stdout.write(c.opts.json ? json({ jobId: job.jobId, state: job.state, counts: job.counts, why: job.why ?? null, ...(job.error ? { error: job.error } : {}), ...(job.placement ? { placement: job.placement } : {}) }) : explainWhy(job, paint(c.io.stdout)));
    return ExitCode.Ok;
  } finally {
    await fc.close();
  }
}

/** The answer in words: the reason, then its details (the nearest hosts and what they lack, who holds the slots). */
export function explainWhy(job: JobSummary, p: Paint): string {
  const text = whyText(job, p);
  // site: auto: every quote and why the choice, unless the reason already says it (an outsourced job's does)
  const placed = job.placement && !(job.why?.text.includes(job.placement.text) ?? false) ? `where: ${job.placement.text}\n` : '';
  return `${text}${placed}`;
}

function whyText(job: JobSummary, p: Paint): string {
  const c = job.counts;
  const head = `job ${job.jobId} (${job.name}) is ${stateColour(p, job.state)}: ${c.done}/${c.total} done, ${c.running} running${c.inHand ? `, ${c.inHand} in hand` : ''}, ${c.queued} queued`;
  const w = job.why;
  if (!w) {
    if (job.error && job.outsourced) return `${head}\nit failed at ${job.outsourced.site}: ${p.red(job.error)}\nan outsourced job is not retried: submit it again\n`;
    if (job.error) return `${head}\nit failed: ${p.red(job.error)}\nfix it, then: renderbus retry ${job.jobId}\n`;
    if (['done', 'failed', 'cancelled'].includes(job.state)) return `${head}\nit has ended: nothing waits${job.retryable ? ` (renderbus retry ${job.jobId} queues its failed frames again)` : ''}\n`;
    return `${head}\nnothing holds it back${c.running > 0 ? ': its frames are rendering' : ': it starts at the next dispatch'}\n`;
  }
  const lines = [head, `why: ${p.yellow(w.text)}`];
  for (const near of w.closest ?? []) lines.push(`  ${near.host} lacks ${near.missing.join(', ')}`);
  if (w.busy) lines.push(`  slots running more urgent jobs: ${w.busy.moreUrgent}; jobs of its priority submitted earlier: ${w.busy.samePriority}; less urgent jobs started first: ${w.busy.lessUrgent}`);
  if (w.hosts) lines.push(`  kept away from: ${w.hosts.join(', ')}${job.retryable ? ` (renderbus retry ${job.jobId} forgives them)` : ''}`);
  if (w.share) lines.push(`  see: renderbus share (projects, their weights and the slots they hold)`);
  if (w.job) lines.push(`  see: renderbus why ${w.job}`);
  return `${lines.join('\n')}\n`;
}
