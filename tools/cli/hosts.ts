import { PROTOCOL_MAJOR, codecs, FarmError, subjects } from '../../protocol/index.ts';
import { ExitCode } from './cli-error.ts';
import type { CommandContext } from './command-context.ts';
import { ask, askAllHosts, openFarm, type FarmClient } from './farm-client.ts';
import { json, paint } from './format.ts';
import { describeHosts, hostViews, type HostTurn, type HostView, type SickList } from './manager-format.ts';

/** How long the scheduler may take: past that the hosts are listed without sickness and without the hosts that left. */
const EXTRA_TIMEOUT_MS = 2_000;

/** `renderbus hosts`: every render host, up (the registry's records), down (dropped), sick (the scheduler). */
export async function hostsCommand(c: CommandContext<{ json?: boolean }>): Promise<number> {
  const fc = await openFarm(c.globals, 'renderbus-hosts');
  try {
    const { views, sickUnknown } = await loadHosts(fc);
    if (c.opts.json) {
      c.io.stdout.write(json(views));
      if (sickUnknown !== undefined) c.io.stderr.write(`renderbus hosts: sickness and hosts that left unknown: ${sickUnknown}\n`);
      return ExitCode.Ok;
    }
    if (views.length === 0) {
      c.io.stdout.write(`no render hosts on site ${fc.site} (start one: renderbus render-server)\n`);
      return ExitCode.Ok;
    }
    c.io.stdout.write(describeHosts(views, paint(c.io.stdout), Date.now(), sickUnknown));
    return ExitCode.Ok;
  } finally {
    await fc.close();
  }
}

/**
 * The hosts as the manager commands show them: the registry's records (it must answer), the
 * hosts it dropped from the site's event stream, and the sick ones from the scheduler.
 * `sickUnknown` says why sickness is unknown when the scheduler did not answer.
 */
export async function loadHosts(fc: FarmClient): Promise<{ views: HostView[]; sickUnknown?: string }> {
  const [list, sick] = await Promise.all([askAllHosts(fc), sickHosts(fc)]);
  const views = hostViews(list.hosts, sick.turns, sick.list);
  return sick.unknown !== undefined ? { views, sickUnknown: sick.unknown } : { views };
}

/** The sick hosts and the hosts' last up and down events (which hosts left), both from the scheduler. */
async function sickHosts(fc: FarmClient): Promise<{ list: SickList; turns: HostTurn[]; unknown?: string }> {
  try {
    const { sick, turns } = await ask(fc, 'scheduler', subjects.schedHosts(fc.site), codecs.hostsRequest, { v: PROTOCOL_MAJOR, action: 'sick', turns: true }, codecs.hostsReply, EXTRA_TIMEOUT_MS);
    return { list: sick, turns: turns ?? [] };
  } catch (err) {
    if (err instanceof FarmError) return { list: null, turns: [], unknown: err.message };
    throw err;
  }
}
