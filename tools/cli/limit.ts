import { PROTOCOL_MAJOR, codecs, subjects, type LimitUse, type LimitsRequest } from '../../protocol/index.ts';
import { ExitCode, UsageError } from './cli-error.ts';
import type { CommandContext } from './command-context.ts';
import { ask, isOperator, openFarm } from './farm-client.ts';
import { json, table } from './format.ts';
import { parseCount, parseToken } from './option-values.ts';

export interface LimitOptions {
  perHost?: boolean;
  remove?: boolean;
  json?: boolean;
}

/**
 * `renderbus limit`: the site's named limits (licences). No arguments lists them; `NAME MAX`
 * sets one (`--per-host`: a host counts once however many of its slots use it); `NAME --remove`.
 */
export async function limitCommand(c: CommandContext<LimitOptions>): Promise<number> {
  const [name, max] = c.args;
  let req: LimitsRequest = { v: PROTOCOL_MAJOR, action: 'list' };
  if (c.opts.remove) {
    if (name === undefined || max !== undefined) throw new UsageError('limit --remove: give the limit\'s name alone, e.g. renderbus limit maya --remove');
    req = { v: PROTOCOL_MAJOR, action: 'remove', name: parseToken('limit name', name) };
  } else if (name !== undefined) {
    if (max === undefined) throw new UsageError(`limit ${name}: give its maximum too, e.g. renderbus limit ${name} 5`);
    req = { v: PROTOCOL_MAJOR, action: 'set', limit: { name: parseToken('limit name', name), max: parseCount('max', max, { min: 0, max: 1_000_000 }), per: c.opts.perHost ? 'host' : 'task' } };
  } else if (c.opts.perHost) {
    throw new UsageError('limit --per-host goes with NAME MAX');
  }
  const fc = await openFarm(c.globals, 'renderbus-limit');
  try {
    const { limits } = await ask(fc, 'scheduler', (isOperator(fc) ? subjects.opLimits(fc.site) : subjects.schedLimits(fc.site)), codecs.limitsRequest, req, codecs.limitsReply);
    c.io.stdout.write(c.opts.json ? json(limits) : describeLimits(limits));
    return ExitCode.Ok;
  } finally {
    await fc.close();
  }
}

function describeLimits(limits: LimitUse[]): string {
  if (limits.length === 0) return 'no limits on this farm (set one: renderbus limit maya 5)\n';
  return table(['limit', 'in use', 'max', 'counts'], limits.map((l) => [l.name, String(l.inUse), String(l.max), l.per === 'host' ? 'hosts' : 'running tasks']));
}
