import { PROTOCOL_MAJOR, codecs, subjects, type HostsRequest } from '../../protocol/index.ts';
import { ExitCode, UsageError } from './cli-error.ts';
import type { CommandContext } from './command-context.ts';
import { ask, isOperator, openFarm } from './farm-client.ts';
import { dateTime, json, table } from './format.ts';
import { parseToken } from './option-values.ts';

/**
 * `renderbus sick [HOST --clear]`: the hosts that failed frames of several jobs and get no work
 * for a while, with the jobs and until when; `HOST --clear` gives one work again once it is fixed.
 */
export async function sickCommand(c: CommandContext<{ clear?: boolean; json?: boolean }>): Promise<number> {
  const host = c.args[0];
  if (host !== undefined && !c.opts.clear) throw new UsageError(`sick ${host}: add --clear to give it work again, or give no host to list the sick ones`);
  if (c.opts.clear && host === undefined) throw new UsageError('sick --clear: name the host, e.g. renderbus sick node-7 --clear');
  const req: HostsRequest = host !== undefined ? { v: PROTOCOL_MAJOR, action: 'clear', host: parseToken('host', host) } : { v: PROTOCOL_MAJOR, action: 'sick' };
  const fc = await openFarm(c.globals, 'renderbus-sick');
  try {
    const { sick } = await ask(fc, 'scheduler', (isOperator(fc) ? subjects.opHosts(fc.site) : subjects.schedHosts(fc.site)), codecs.hostsRequest, req, codecs.hostsReply);
    if (c.opts.json) c.io.stdout.write(json(sick));
    else {
      if (host !== undefined) c.io.stdout.write(`${host} cleared: it gets work again\n`);
      c.io.stdout.write(sick.length === 0 ? 'no sick hosts\n' : table(['host', 'sick until', 'failed frames of'], sick.map((s) => [s.host, dateTime(s.until), s.jobs.join(', ')])));
    }
    return ExitCode.Ok;
  } finally {
    await fc.close();
  }
}
