import { call } from '../../actors/bus/index.ts';
import { DEFAULT_GRACE_MS } from '../../actors/render-server/runtime.ts';
import { PROTOCOL_MAJOR, codecs, FarmError, subjects, type HostCtl } from '../../protocol/index.ts';
import { ExitCode, UsageError } from './cli-error.ts';
import type { CommandContext } from './command-context.ts';
import { askAllHosts, openFarm, type FarmClient } from './farm-client.ts';
import { dateTime, json, paint } from './format.ts';
import { loadHosts } from './hosts.ts';
import { describeHost, type HostView, type UpHost } from './manager-format.ts';
import { parseToken } from './option-values.ts';

export interface HostOptions {
  drain?: boolean;
  undrain?: boolean;
  stop?: boolean;
  json?: boolean;
}

type Steering = Exclude<HostCtl['action'], 'kill-task'>;

/**
 * `renderbus host <name>`: one render host's inventory, packages, licenses and slots (the
 * registry's record). `--drain` asks its render server to take no new work and finish what it
 * runs; `--undrain` to take work again; `--stop` to drain and leave the farm (`host.<host>.ctl`).
 */
export async function hostCommand(c: CommandContext<HostOptions>): Promise<number> {
  const name = parseToken('host name', c.args[0] ?? '');
  const action = steering(c.opts);
  const fc = await openFarm(c.globals, 'renderbus-host');
  try {
    if (action !== undefined) return await steer(c, fc, name, action);
    const { views, sickUnknown } = await loadHosts(fc);
    const h = views.find((v): v is UpHost => v.host === name && v.state === 'up');
    if (!h) throw unknownHost(fc, name, views);
    c.io.stdout.write(c.opts.json ? json(h) : describeHost(h, paint(c.io.stdout), Date.now(), sickUnknown));
    return ExitCode.Ok;
  } finally {
    await fc.close();
  }
}

/** The one steering flag given, if any; two of them are a usage error saying what each does. */
function steering(o: HostOptions): Steering | undefined {
  const given = (['drain', 'undrain', 'stop'] as const).filter((a) => o[a]);
  if (given.length > 1) {
    throw new UsageError(`${given.map((a) => `--${a}`).join(' and ')} go alone: --drain keeps the server on the farm without new work, --undrain gives it work again, --stop makes it leave`);
  }
  return given[0];
}

async function steer(c: CommandContext<HostOptions>, fc: FarmClient, name: string, action: Steering): Promise<number> {
  const subject = subjects.hostCtl(fc.site, name);
  let body: { host: string; action: string };
  try {
    body = await call(fc.nc, subject, codecs.hostCtl, { v: PROTOCOL_MAJOR, action }, codecs.hostCtlReply, { timeoutMs: 5_000, unavailable: 'RB_UNKNOWN_HOST' });
  } catch (err) {
    if (!(err instanceof FarmError) || err.code !== 'RB_UNKNOWN_HOST') throw err;
    // nobody serves the host: name the hosts there are, when the registry can say
    const hosts = await askAllHosts(fc, 2_000).then((l) => l.hosts, () => null);
    if (hosts === null || !hosts.some((h) => h.host === name)) {
      const known = hosts === null ? 'the registry did not answer either' : hosts.length === 0 ? 'no render host is up' : `hosts up: ${hosts.map((h) => h.host).join(', ')}`;
      throw new FarmError('RB_UNKNOWN_HOST', `no render server answers for host '${name}' on site ${fc.site} (${known})`, { cause: err });
    }
    throw new FarmError('RB_UNKNOWN_HOST', `render server ${name} is in the registry but did not answer on ${subject}: ${err.message}`, { cause: err });
  }
  if (c.opts.json) c.io.stdout.write(json(body));
  else if (action === 'drain') {
    c.io.stdout.write(`${name} is draining: it takes no new frames, hands back the ones it held and finishes the running ones; it stays on the farm until stopped (renderbus host ${name} --stop) or undrained (renderbus host ${name} --undrain)\n`);
  } else if (action === 'undrain') {
    c.io.stdout.write(`${name} takes new frames again\n`);
  } else {
    c.io.stdout.write(`${name} is stopping: it takes no new frames, running ones may finish (up to ${DEFAULT_GRACE_MS / 1000} s, then they are handed back), then it leaves the farm\n`);
  }
  return ExitCode.Ok;
}

/** The error for a host the registry does not hold: it is down, or there is no such host; either way, the hosts there are. */
function unknownHost(fc: FarmClient, name: string, views: HostView[]): FarmError {
  const up = views.filter((v) => v.state === 'up').map((v) => v.host);
  const down = views.filter((v) => v.state === 'down').map((v) => v.host);
  const known = [up.length > 0 ? `up: ${up.join(', ')}` : 'no host is up', ...(down.length > 0 ? [`down: ${down.join(', ')}`] : [])].join('; ');
  const gone = views.find((v) => v.host === name && v.state === 'down');
  const what = gone?.state === 'down' ? `render host ${name} is down since ${dateTime(gone.downAt)} (${gone.reason})` : `no render host '${name}' on site ${fc.site}`;
  return new FarmError('RB_UNKNOWN_HOST', `${what}; known hosts: ${known}`);
}
