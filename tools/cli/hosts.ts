import { DeliverPolicy, jetstream } from '@nats-io/jetstream';
import { PROTOCOL_MAJOR, codecs, FarmError, streams, subjects } from '../../protocol/index.ts';
import { ExitCode } from './cli-error.ts';
import type { CommandContext } from './command-context.ts';
import { ask, askAllHosts, openFarm, type FarmClient } from './farm-client.ts';
import { json, paint } from './format.ts';
import { describeHosts, hostViews, type HostTurn, type HostView, type SickList } from './manager-format.ts';

/** How long the scheduler and the event stream may take: past that the hosts are listed without them. */
const EXTRA_TIMEOUT_MS = 2_000;

/** `renderbus hosts`: every render host, up (the registry's records), down (dropped), sick (the scheduler). */
export async function hostsCommand(c: CommandContext<{ json?: boolean }>): Promise<number> {
  const fc = await openFarm(c.globals, 'renderbus-hosts');
  try {
    const { views, sickUnknown } = await loadHosts(fc);
    if (c.opts.json) {
      c.io.stdout.write(json(views));
      if (sickUnknown !== undefined) c.io.stderr.write(`renderbus hosts: sickness unknown: ${sickUnknown}\n`);
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
  const [list, turns, sick] = await Promise.all([
    askAllHosts(fc),
    hostTurns(fc),
    sickHosts(fc),
  ]);
  const views = hostViews(list.hosts, turns, sick.list);
  return sick.unknown !== undefined ? { views, sickUnknown: sick.unknown } : { views };
}

async function sickHosts(fc: FarmClient): Promise<{ list: SickList; unknown?: string }> {
  try {
    const { sick } = await ask(fc, 'scheduler', subjects.schedHosts(fc.site), codecs.hostsRequest, { v: PROTOCOL_MAJOR, action: 'sick' }, codecs.hostsReply, EXTRA_TIMEOUT_MS);
    return { list: sick };
  } catch (err) {
    if (err instanceof FarmError) return { list: null, unknown: err.message };
    throw err;
  }
}

/**
 * Each host's last `up` and `down` event from the site's event stream (kept 7 days; the
 * scheduler creates it). No stream, or no JetStream: no down hosts are known, and that is all.
 */
async function hostTurns(fc: FarmClient): Promise<HostTurn[]> {
  try {
    const js = jetstream(fc.nc, { timeout: EXTRA_TIMEOUT_MS });
    const consumer = await js.consumers.get(streams.events(fc.site), { filter_subjects: subjects.allHostEvents(fc.site), deliver_policy: DeliverPolicy.LastPerSubject });
    const pending = (await consumer.info()).num_pending;
    if (pending === 0) return [];
    const turns: HostTurn[] = [];
    const messages = await consumer.fetch({ max_messages: pending, expires: EXTRA_TIMEOUT_MS });
    for await (const m of messages) {
      const event = m.subject.split('.')[5];
      if (event === 'up' || event === 'down') {
        try {
          const e = codecs.hostEvent.decode(m.data);
          const turn: HostTurn = { host: e.host, event, at: e.at };
          if (e.reason !== undefined) turn.reason = e.reason;
          if (e.serverId !== undefined) turn.serverId = e.serverId;
          turns.push(turn);
        } catch {
          // an event that no longer decodes says nothing about the host
        }
      }
      if (m.info.pending === 0) break;
    }
    return turns;
  } catch {
    return [];
  }
}
