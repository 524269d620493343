import type { Notification } from './notification.ts';

/** How many failed frames an email lists; the rest are counted. */
export const FAILURES_LISTED = 20;

export interface EmailText {
  subject: string;
  text: string;
}

const plural = (n: number, one: string) => `${n} ${one}${n === 1 ? '' : 's'}`;

/** '3 h 12 min', '4 min 5 s', '12 s'. */
export function spoken(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (h > 0) return `${h} h ${m} min`;
  if (m > 0) return `${m} min ${s % 60} s`;
  return `${s} s`;
}

/**
 * The subject and plain text of a job's email, for the artist who submitted it: which job,
 * how it stands, frames done and failed, the failures, where the frames are, and what to do
 * next. `thumbnail`: a thumbnail of the sample frame is attached.
 */
export function emailText(note: Notification, site: string, thumbnail: boolean): EmailText {
  const job = note.event.job;
  const { total, done, failed } = job.counts;
  const name = job.name;
  const lines: string[] = [];
  let subject: string;
  switch (note.trigger) {
    case 'done':
      subject = `[renderbus] ${name} is done: ${plural(done, 'frame')} rendered`;
      lines.push(`Job ${name} (${job.jobId}) is done: all ${plural(done, 'frame')} rendered.`);
      break;
    case 'failed':
      subject = `[renderbus] ${name} failed: ${failed} of ${plural(total, 'frame')} failed`;
      lines.push(`Job ${name} (${job.jobId}) failed: ${failed} of ${plural(total, 'frame')} failed, ${done} rendered.`);
      break;
    case 'cancelled':
      subject = `[renderbus] ${name} was cancelled: ${done} of ${plural(total, 'frame')} rendered`;
      lines.push(`Job ${name} (${job.jobId}) was cancelled with ${done} of ${plural(total, 'frame')} rendered${failed > 0 ? ` and ${failed} failed` : ''}.`);
      break;
    case 'progress':
      subject = `[renderbus] ${name} is ${note.percent ?? 0}% rendered (${done + failed} of ${plural(total, 'frame')})`;
      lines.push(`Job ${name} (${job.jobId}) is ${note.percent ?? 0}% through: ${done} of ${plural(total, 'frame')} rendered${failed > 0 ? `, ${failed} failed` : ''}.`);
      break;
  }
  lines.push('');
  if (job.startedAt !== undefined) {
    const end = job.finishedAt ?? note.event.at;
    lines.push(`${job.finishedAt !== undefined ? 'Took' : 'Running for'}: ${spoken(end - job.startedAt)}`);
  }
  if (note.trigger === 'progress' && job.etaMs !== undefined) lines.push(`Expected to finish in about ${spoken(job.etaMs)}`);
  lines.push(`Frames are in: ${job.outputDir}`);
  const failures = note.event.failures ?? [];
  if (failures.length > 0) {
    lines.push('', 'Failed frames:');
    for (const f of failures.slice(0, FAILURES_LISTED)) lines.push(`  frame ${f.frame}: ${f.error}`);
    if (failures.length > FAILURES_LISTED) lines.push(`  ... and ${failures.length - FAILURES_LISTED} more (renderbus job ${job.jobId})`);
  }
  if (note.sample) {
    lines.push('', `A recent frame, ${note.sample.frame}${thumbnail ? ' (thumbnail attached)' : ''}:`, `  ${note.sample.output}`);
  }
  lines.push('');
  if (note.trigger === 'progress') lines.push(`Not what you expected? Stop it early: renderbus cancel ${job.jobId}`);
  if (note.trigger === 'failed') lines.push(`Render the failed frames again: renderbus retry ${job.jobId}`);
  lines.push(`Every frame: renderbus job ${job.jobId}`);
  lines.push('', '-- ', `renderbus on site '${site}', for ${job.user}. You get this because the job's "notify" names you.`);
  return { subject, text: `${lines.join('\n')}\n` };
}
