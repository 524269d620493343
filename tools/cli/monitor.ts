import { readFileSync } from 'node:fs';
import type { MonitorOptions } from '../../actors/monitor/index.ts';
import { splitHost } from '../../actors/monitor/http-access.ts';
import { isAddressInUse } from '../../sites/port-in-use.ts';
import { newSecret } from '../../sites/secret-file.ts';
import { UsageError } from './cli-error.ts';
import type { CommandContext } from './command-context.ts';
import { parseCount, parseList, parsePort } from './option-values.ts';

/** The monitor's flags (`renderbus monitor`) as commander hands them over. */
export interface MonitorFlags {
  port?: string;
  listen?: string;
  interval?: string;
  tokenFile?: string;
  /** Repeatable; each may be a comma list. */
  monitorHost?: string[];
}

/** The flags' help texts, shared by `monitor` and `up`. */
export const MONITOR_FLAG_HELP = {
  port: 'HTTP port of the web monitor, /metrics and /healthz; -1 picks a free one (default: 8080, or a free port if 8080 is taken)',
  listen: 'address the HTTP server listens on, e.g. 0.0.0.0 for browsers and a Prometheus on other machines, which then need the access token (default: 127.0.0.1)',
  interval: 'seconds between snapshots of the scheduler\'s jobs and sick hosts and the registry\'s hosts (default: 5)',
  tokenFile: 'file holding the access token that actions, and every request from another machine, need (default: a new token, printed at start)',
  monitorHost: 'another name the monitor is reached by (any other HTTP Host is refused), e.g. farm.studio.example or farm.studio.example:8080; comma-separated or repeated (127.0.0.1, localhost, [::1] and this machine\'s addresses always work)',
} as const;

export type MonitorSettings = Pick<MonitorOptions, 'port' | 'listen' | 'portFallback' | 'snapshotMs' | 'hosts'>;

/** The monitor's settings from its flags: an explicit port must be free, the default one may fall back. */
export function monitorSettings(flags: Omit<MonitorFlags, 'tokenFile'>, names: { port: string; listen: string } = { port: '--port', listen: '--listen' }): MonitorSettings {
  const hosts = (flags.monitorHost ?? []).flatMap((v) => parseList('--monitor-host', v));
  for (const h of hosts) if (!splitHost(h)) throw new UsageError(`--monitor-host: '${h}' is not a host name or address with an optional :port (e.g. farm.studio.example, farm.studio.example:8080)`);
  return {
    ...(flags.port !== undefined ? { port: Math.max(0, parsePort(names.port, flags.port)), portFallback: false } : { portFallback: true }),
    ...(flags.listen !== undefined ? { listen: flags.listen } : {}),
    ...(flags.interval !== undefined ? { snapshotMs: parseCount('--interval', flags.interval, { min: 1, max: 3_600 }) * 1000 } : {}),
    ...(hosts.length > 0 ? { hosts } : {}),
  };
}

/** The token in `--token-file` (a trailing newline dropped), refused when unreadable or empty. */
export function readTokenFile(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`--token-file: cannot read ${path} (${(err as Error).message})`, { cause: err });
  }
  const token = text.trim();
  if (token === '') throw new UsageError(`--token-file: ${path} is empty`);
  if (!/^[\x21-\x7e]+$/.test(token)) throw new UsageError(`--token-file: ${path} holds spaces or characters a header cannot carry`);
  return token;
}

/** `renderbus monitor`: the farm monitor alone (the web monitor, Prometheus /metrics), against the farm's NATS. */
export async function monitorCommand(c: CommandContext<MonitorFlags>): Promise<number> {
  const settings = monitorSettings(c.opts); // bad flags fail before anything connects
  const given = c.opts.tokenFile !== undefined ? readTokenFile(c.opts.tokenFile) : undefined;
  const token = given ?? newSecret();
  const { runActor } = await import('./actor-commands.ts');
  return runActor(c, 'monitor', async (nc, site, log) => {
    const { startMonitor } = await import('../../actors/monitor/index.ts');
    const { addWebMonitor } = await import('../web/index.ts');
    const m = await startMonitor({ nc, site, log, ...settings, token }).catch((err: unknown) => {
      // a port asked for by name is not swapped for another: say which flag changes it (as `up` does)
      if (!isAddressInUse(err) || settings.port === undefined || settings.portFallback) throw err;
      throw new UsageError(`the monitor's port ${settings.port} is already in use on ${settings.listen ?? '127.0.0.1'} (another farm, or another program): give another with --port N, or --port -1 for any free port`, { cause: err });
    });
    addWebMonitor(m, { nc, site });
    const link = given !== undefined ? `${m.url}/ (actions: add #token= and the token in ${c.opts.tokenFile})` : `${m.url}/#token=${token}`;
    c.io.stderr.write(`renderbus monitor: web monitor on ${link} (bound to ${m.bound}; metrics on ${m.url}/metrics)\n`);
    return m;
  });
}
