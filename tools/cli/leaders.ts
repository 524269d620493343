import { readLeases } from '../../actors/leadership/index.ts';
import { FarmError } from '../../protocol/index.ts';
import { ExitCode } from './cli-error.ts';
import type { CommandContext } from './command-context.ts';
import { isOperator, openFarm } from './farm-client.ts';
import { ago, dateTime, json, table } from './format.ts';

/**
 * `renderbus leaders`: which process leads the site's scheduler and registry (host, pid),
 * since when, and how long ago it renewed its lease, read from the site's leaders bucket. Standbys
 * write nothing there: they are the other processes of the same role (docs/running-actors.md).
 */
export async function leadersCommand(c: CommandContext<{ json?: boolean }>): Promise<number> {
  const fc = await openFarm(c.globals, 'renderbus-leaders');
  try {
    if (!isOperator(fc)) throw new FarmError('RB_FORBIDDEN', `leaders is for operators: this credential is ${fc.creds.role} ${fc.creds.name} (renderbus credentials add operator <name>)`);
    const leases = await readLeases(fc.nc, fc.site).catch((err: unknown) => {
      throw new FarmError('RB_STORE_UNAVAILABLE', `cannot read the leaders bucket of site ${fc.site}: ${(err as Error).message}`, { cause: err, retryable: true });
    });
    const now = Date.now();
    if (c.opts.json) {
      c.io.stdout.write(json({ site: fc.site, leases: leases ?? [] }));
      return ExitCode.Ok;
    }
    if (leases === null) {
      c.io.stdout.write(`no scheduler or registry has run on site ${fc.site} yet (it has no leaders bucket)\n`);
      return ExitCode.Ok;
    }
    const rows = leases.map(({ role, lease, unreadable }) =>
      lease
        ? [role, lease.host, String(lease.pid), dateTime(lease.since), ago(lease.renewedAt, now)]
        : [role, unreadable ? 'unreadable lease (a standby takes it over once it lapses)' : 'none (no leader: released or never taken)', '', '', '']);
    c.io.stdout.write(table(['role', 'host', 'pid', 'leads since', 'renewed'], rows));
    c.io.stdout.write("(times are the leader's clock; a standby takes over once a lease has not been renewed for 4 s)\n");
    return ExitCode.Ok;
  } finally {
    await fc.close();
  }
}
