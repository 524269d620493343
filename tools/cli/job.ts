import { pageWholeJob, type WholeJob } from '../../actors/scheduler/index.ts';
import { codecs, subjects, type FrameRecord, type JobDetail } from '../../protocol/index.ts';
import { ExitCode } from './cli-error.ts';
import type { CommandContext } from './command-context.ts';
import { ask, openFarm, type FarmClient } from './farm-client.ts';
import { ago, countsText, dateTime, duration, frameStateText, json, originText, paint, stateColour, table, type Paint } from './format.ts';
import { parseToken } from './option-values.ts';

/**
 * One job's whole view, every frame, asking for its frames page after page (a large job's do
 * not fit one reply); a job that left the scheduler's memory is read back from its journal
 * (`archived`). The loader of `renderbus job`, `why`, `frame`, `contact-sheet` and the web monitor.
 */
export function loadWholeJob(fc: FarmClient, jobId: string, timeoutMs = 5_000): Promise<WholeJob> {
  return pageWholeJob((req) => ask(fc, 'scheduler', subjects.schedQuery(fc.site), codecs.queryRequest, req, codecs.jobReply, timeoutMs), jobId);
}

/** One job's whole view (loadWholeJob without where it came from). */
export async function loadJob(fc: FarmClient, jobId: string, timeoutMs = 5_000): Promise<JobDetail> {
  return (await loadWholeJob(fc, jobId, timeoutMs)).job;
}

/** `renderbus job <id>`: one job's summary and every frame (state, host/slot, attempt, time, error). */
export async function jobCommand(c: CommandContext<{ json?: boolean }>): Promise<number> {
  const jobId = parseToken('job id', c.args[0] ?? '');
  const fc = await openFarm(c.globals, 'renderbus-job');
  try {
    const { job, archived } = await loadWholeJob(fc, jobId);
    if (archived && !c.opts.json) c.io.stderr.write(`job ${jobId} left the scheduler's memory when it finished (retention): read back from the journal\n`);
    c.io.stdout.write(c.opts.json ? json(job) : describeJob(job, paint(c.io.stdout)));
    return ExitCode.Ok;
  } finally {
    await fc.close();
  }
}

export function describeJob(job: JobDetail, p: Paint, now = Date.now()): string {
  const c = job.counts;
  const spec = job.spec;
  const lines: [string, string][] = [
    ['job', `${job.jobId}  ${p.bold(job.name)}`],
    ['state', `${stateColour(p, job.state)}: ${countsText(c)}`],
  ];
  if (job.waiting) lines.push(['waiting', p.yellow(job.waiting)]);
  if (job.error) lines.push(['failed', p.red(job.error)]);
  if (job.retryable) lines.push(['retry', `renderbus retry ${job.jobId}`]);
  if (job.etaMs !== undefined && job.state === 'rendering') lines.push(['eta', duration(job.etaMs)]);
  const sent = job.outsourced;
  if (sent) {
    lines.push(['site', `outsourced to ${[sent.site, ...(sent.via ?? [])].join(' → ')}: ${sent.state} there${sent.remoteJob ? ` as ${sent.remoteJob}` : ''}, ${sent.back}/${c.total} frames back; bundle ${sent.bundleId}${sent.heardAt !== undefined ? `; last news ${ago(sent.heardAt, now)}` : ''}`]);
    if (sent.why !== undefined && !job.placement) lines.push(['sent by', `the site's policy: ${sent.why}`]);
    // early looks: the vendor's sample frames as thumbnails, before (or without) the frames
    if (sent.samples?.length) lines.push(['samples', `${sent.samples.length === 1 ? 'frame' : 'frames'} ${sent.samples.map((x) => x.frame).join(', ')}: ${sent.samples.map((x) => x.path).join('  ')}`]);
    const bill = sent.bill;
    if (bill) lines.push(['bill', `${(bill.amountMinor / 100).toFixed(2)} ${bill.currency} for ${bill.frames} frames (${duration(bill.cpuMs)} CPU)${bill.signed ? `, signed by ${sent.site}` : p.yellow(', NOT signed')}${bill.file ? ` (${bill.file})` : ''}`]);
    for (const v of bill?.via ?? []) {
      const proof = v.verified === true ? `signed by ${v.site}, verified here` : v.verified === false ? p.red(`its signature does NOT verify with ${v.site}'s key`) : `signed by ${v.site}; its key is not known here`;
      lines.push(['', `of which ${v.site}'s bill: ${(v.amountMinor / 100).toFixed(2)} ${v.currency} for ${v.frames} frames, ${proof}${bill?.marginMinor ? `; ${sent.site}'s margin ${(bill.marginMinor / 100).toFixed(2)} ${bill.currency}` : ''}`]);
    }
  }
  // site: auto: where it was placed, every quote, and why (docs/federation.md, "Choosing where to render: quotes")
  if (job.placement) lines.push(['placed', job.placement.text]);
  // a split job: its parts, each an ordinary job (docs/federation.md, "Split jobs")
  for (const [i, part] of (job.parts ?? []).entries()) lines.push([i === 0 ? 'parts' : '', `${part.jobId}  frames ${part.frames} ${part.here ? 'here' : `at ${part.site}`}: ${stateColour(p, part.state)}, ${part.counts.done}/${part.counts.total} done`]);
  if (job.partOf !== undefined) lines.push(['part of', `job ${job.partOf} (split; renderbus job ${job.partOf})`]);
  if (spec.budget !== undefined) lines.push(['budget', spec.budget]);
  lines.push(['priority', `${job.priority} (lower is more urgent)`]);
  lines.push(['user', `${job.user} / ${job.group}`]);
  if (job.origin) lines.push(['origin', originText(job.origin)]);
  if (spec.rerenderOf) lines.push(['re-render', `of job ${spec.rerenderOf}${sent ? `, from the inputs ${sent.site} kept of it` : ''}`]);
  lines.push(['scene', `${spec.scene} (${spec.renderer ?? 'povray'}${spec.resolution ? `, ${spec.resolution}` : ''})`]);
  if (spec.command) lines.push(['command', spec.command]);
  lines.push(['frames', `${spec.frames}${spec.chunk ? `, chunks of ${spec.chunk}` : ''}`]);
  const req = spec.requirements;
  if (req && Object.keys(req).length > 0) lines.push(['requires', requirementsText(req)]);
  lines.push(['output', job.outputDir]);
  lines.push(['submitted', `${dateTime(job.submittedAt)} (${ago(job.submittedAt, now)})`]);
  if (job.startedAt !== undefined) lines.push(['started', dateTime(job.startedAt)]);
  if (job.finishedAt !== undefined) {
    const took = job.startedAt !== undefined ? `, took ${duration(job.finishedAt - job.startedAt)}` : '';
    lines.push(['finished', `${dateTime(job.finishedAt)}${took}`]);
  }
  const width = Math.max(...lines.map(([k]) => k.length));
  let out = lines.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n');
  out += '\n\n';
  out += job.frames.length === 0 ? 'no frames\n' : table(['FRAME', 'STATE', 'HOST/SLOT', 'ATTEMPT', 'TIME', 'ERROR'], job.frames.map((f) => frameRow(f, p, now)));
  return out;
}

function frameRow(f: FrameRecord, p: Paint, now: number): string[] {
  const where = f.host !== undefined ? `${f.host}/${f.slot ?? '-'}` : '-';
  let time = '-';
  if (f.stats) time = duration(f.stats.wallMs);
  else if (f.startedAt !== undefined && f.finishedAt !== undefined) time = duration(f.finishedAt - f.startedAt);
  else if (f.startedAt !== undefined && f.state === 'running') time = `${duration(now - f.startedAt)}…`;
  else if (f.inHand) time = 'waiting on its slot';
  const tries = f.attempts && f.attempts.length > 0 ? `${f.attempt} (${f.attempts.length} failed)` : String(f.attempt);
  return [String(f.frame), frameStateText(p, f), where, tries, time, f.error ? p.red(oneLine(f.error)) : ''];
}

function oneLine(s: string): string {
  const t = s.replace(/\s+/g, ' ').trim();
  return t.length > 120 ? `${t.slice(0, 119)}…` : t;
}

function requirementsText(r: NonNullable<JobDetail['spec']['requirements']>): string {
  const parts: string[] = [];
  if (r.machine) parts.push(`machine ${r.machine}`);
  if (r.os) parts.push(`os ${r.os}`);
  if (r.cpu) parts.push(`cpu ${r.cpu}`);
  if (r.cpuCount) parts.push(`${r.cpuCount}+ CPUs`);
  if (r.cpuMhz) parts.push(`${r.cpuMhz}+ MHz`);
  if (r.ramMb) parts.push(`${r.ramMb}+ MB RAM`);
  if (r.swapMb) parts.push(`${r.swapMb}+ MB swap`);
  for (const pk of r.packages ?? []) parts.push(pk);
  for (const l of r.licenses ?? []) parts.push(`license ${l}`);
  return parts.join(', ');
}
