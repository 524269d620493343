import { PROTOCOL_MAJOR, codecs, subjects, type SharesRequest, type ShareUse } from '../../protocol/index.ts';
import { ExitCode, UsageError } from './cli-error.ts';
import type { CommandContext } from './command-context.ts';
import { ask, isOperator, openFarm } from './farm-client.ts';
import { json, table } from './format.ts';
import { parseCount, parseToken } from './option-values.ts';

export interface ShareOptions {
  remove?: boolean;
  json?: boolean;
}

/**
 * `renderbus share`: fair share between projects. No arguments lists the projects with their
 * weights and use; `PROJECT WEIGHT` sets one (fair share is on once any is set); `PROJECT --remove`.
 */
export async function shareCommand(c: CommandContext<ShareOptions>): Promise<number> {
  const [project, weight] = c.args;
  let req: SharesRequest = { v: PROTOCOL_MAJOR, action: 'list' };
  if (c.opts.remove) {
    if (project === undefined || weight !== undefined) throw new UsageError('share --remove: give the project alone, e.g. renderbus share show-a --remove');
    req = { v: PROTOCOL_MAJOR, action: 'remove', project: parseToken('project', project) };
  } else if (project !== undefined) {
    if (weight === undefined) throw new UsageError(`share ${project}: give its weight too, e.g. renderbus share ${project} 3`);
    req = { v: PROTOCOL_MAJOR, action: 'set', share: { project: parseToken('project', project), weight: parseCount('weight', weight, { min: 1, max: 10_000 }) } };
  }
  const fc = await openFarm(c.globals, 'renderbus-share');
  try {
    const reply = await ask(fc, 'scheduler', (isOperator(fc) ? subjects.opShares(fc.site) : subjects.schedShares(fc.site)), codecs.sharesRequest, req, codecs.sharesReply);
    c.io.stdout.write(c.opts.json ? json(reply) : describeShares(reply.enabled, reply.projects));
    return ExitCode.Ok;
  } finally {
    await fc.close();
  }
}

function describeShares(enabled: boolean, projects: ShareUse[]): string {
  const head = enabled
    ? 'fair share is on: busy projects split the slots by weight (projects not named weigh 1)\n'
    : 'fair share is off: jobs go by priority alone (turn it on: renderbus share show-a 3)\n';
  if (projects.length === 0) return head;
  const rows = projects.map((p) => [p.project, `${p.weight}${p.set ? '' : ' (default)'}`, p.share > 0 ? `${Math.round(p.share * 100)}%` : '-', String(p.running), String(p.queued)]);
  return head + table(['project', 'weight', 'share', 'slots held', 'tasks queued'], rows);
}
