import type { MonitorOptions } from '../../actors/monitor/index.ts';
import type { CommandContext } from './command-context.ts';
import { parseCount, parsePort } from './option-values.ts';

/** The monitor's flags (`renderbus monitor`) as commander hands them over. */
export interface MonitorFlags {
  port?: string;
  listen?: string;
  interval?: string;
}

/** The flags' help texts, shared by `monitor` and `up`. */
export const MONITOR_FLAG_HELP = {
  port: 'HTTP port of the web monitor, /metrics and /healthz; -1 picks a free one (default: 8080, or a free port if 8080 is taken)',
  listen: 'address the HTTP server listens on, e.g. 0.0.0.0 for a Prometheus on another machine (default: 127.0.0.1)',
  interval: 'seconds between snapshots of the scheduler\'s jobs and sick hosts and the registry\'s hosts (default: 5)',
} as const;

/** The monitor's settings from its flags: an explicit port must be free, the default one may fall back. */
export function monitorSettings(flags: MonitorFlags): Pick<MonitorOptions, 'port' | 'listen' | 'portFallback' | 'snapshotMs'> {
  return {
    ...(flags.port !== undefined ? { port: Math.max(0, parsePort('--port', flags.port)), portFallback: false } : { portFallback: true }),
    ...(flags.listen !== undefined ? { listen: flags.listen } : {}),
    ...(flags.interval !== undefined ? { snapshotMs: parseCount('--interval', flags.interval, { min: 1, max: 3_600 }) * 1000 } : {}),
  };
}

/** `renderbus monitor`: the farm monitor alone (Prometheus /metrics), against the farm's NATS. */
export async function monitorCommand(c: CommandContext<MonitorFlags>): Promise<number> {
  const settings = monitorSettings(c.opts); // bad flags fail before anything connects
  const { runActor } = await import('./actor-commands.ts');
  return runActor(c, 'monitor', async (nc, site, log) => {
    const { startMonitor } = await import('../../actors/monitor/index.ts');
    const { addWebMonitor } = await import('../web/index.ts');
    const m = await startMonitor({ nc, site, log, ...settings });
    addWebMonitor(m, { nc, site });
    c.io.stderr.write(`renderbus monitor: web monitor on ${m.url}/ (metrics on ${m.url}/metrics)\n`);
    return m;
  });
}
