import { availableParallelism } from 'node:os';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { connectBus } from '../../actors/bus/index.ts';
import { locateFarm } from '../../sites/locate-farm.ts';
import { ANY_HOST, describePrincipal, FarmError, Role, type Credentials } from '../../protocol/index.ts';
import { rootLogger } from '../../sites/logger.ts';
import { ExitCode } from './cli-error.ts';
import type { CommandContext } from './command-context.ts';
import { checkGlobals, logFormatOf, type GlobalOptions } from './global-options.ts';
import { DEFAULT_GRACE_MS } from '../../actors/render-server/runtime.ts';
import { notifierSettings, type NotifierFlags } from './notifier.ts';
import { schedulerSettings, type SchedulerFlags } from './scheduler-flags.ts';
import { parseCount, parseList, parsePackages, parseToken } from './option-values.ts';
import { untilSignal } from './signals.ts';

interface Stoppable {
  stop(o?: { graceMs?: number }): Promise<void>;
  /** Settles when the actor stopped by itself (a render server told to stop over the bus). */
  readonly stopped?: Promise<void>;
}

/** `renderbus registry`: the resource registry alone, against the farm's NATS. */
export async function registryCommand(c: CommandContext): Promise<number> {
  return runActor(c, Role.Registry, async (nc, site, log) => {
    const { startRegistry } = await import('../../actors/registry/index.ts');
    return startRegistry({ nc, site, log });
  });
}

/** `renderbus scheduler`: the scheduler alone, against the farm's NATS. */
export async function schedulerCommand(c: CommandContext<SchedulerFlags>): Promise<number> {
  const settings = schedulerSettings(c.opts, c.globals.site); // bad flags fail before anything connects
  return runActor(c, Role.Scheduler, async (nc, site, log) => {
    const { startScheduler } = await import('../../actors/scheduler/index.ts');
    return startScheduler({ nc, site, log, ...settings });
  });
}

/** `renderbus notifier`: the notifier alone (webhooks, email), against the farm's NATS. */
export async function notifierCommand(c: CommandContext<NotifierFlags>): Promise<number> {
  const settings = notifierSettings(c.opts); // bad flags fail before anything connects
  return runActor(c, Role.Notifier, async (nc, site, log) => {
    const { startNotifier } = await import('../../actors/notifier/index.ts');
    return startNotifier({ nc, site, log, ...settings });
  });
}

export interface RenderServerOptions {
  slots?: string;
  host?: string;
  packages?: string;
  licenses?: string;
  grace?: string;
}

/** `renderbus render-server`: one render host with its slots, joining the farm. */
export async function renderServerCommand(c: CommandContext<RenderServerOptions>): Promise<number> {
  const { graceMs, ...o } = renderServerOptions(c.opts);
  return runActor(
    c,
    Role.RenderServer,
    async (nc, site, log, creds) => {
      if (o.host !== undefined && o.host !== creds.name) {
        throw new FarmError('RB_BAD_CREDENTIALS', `this credential is for render host '${creds.name}', not '${o.host}': each host needs its own (renderbus credentials add render-server ${o.host})`);
      }
      const { startRenderServer } = await import('../../actors/render-server/index.ts');
      return startRenderServer({ nc, site, log, ...o, host: creds.name, graceMs });
    },
    { graceMs },
  );
}

/** The render server's flags, checked (exported for tests). */
export function renderServerOptions(opts: RenderServerOptions) {
  return {
    // absent: the host its credential names
    host: opts.host !== undefined ? parseToken('--host', opts.host) : undefined,
    slots: opts.slots !== undefined ? parseCount('--slots', opts.slots, { min: 1, max: 1024 }) : availableParallelism(),
    ...(opts.packages !== undefined ? { packages: parsePackages('--packages', opts.packages) } : {}),
    ...(opts.licenses !== undefined ? { licenses: parseList('--licenses', opts.licenses) } : {}),
    graceMs: opts.grace !== undefined ? parseCount('--grace', opts.grace, { min: 0, max: 86_400 }) * 1000 : DEFAULT_GRACE_MS,
  };
}

/**
 * Runs one actor until SIGINT/SIGTERM with JSON logs on stdout: finds the farm, connects as
 * a daemon (reconnecting forever), starts the actor, and on a signal stops it (with a grace
 * period for the actor's work, when it has one) and drains the connection.
 */
export async function runActor(
  c: { globals: GlobalOptions },
  kind: Role,
  start: (nc: NatsConnection, site: string, log: Logger, creds: Credentials) => Promise<Stoppable>,
  stopOptions: { graceMs?: number } = {},
): Promise<number> {
  const g = checkGlobals(c.globals);
  const where = await locateFarm(g);
  if (where.creds.role !== kind) {
    throw new FarmError('RB_BAD_CREDENTIALS', `a ${kind} needs a ${kind} credential (--creds FILE from 'renderbus credentials add ${kind} …'); this one is of ${describePrincipal(where.creds)}`);
  }
  if (where.creds.name === ANY_HOST) throw new FarmError('RB_BAD_CREDENTIALS', 'a credential for any host is for simulated farms (renderbus sim-farm) only');
  const log = rootLogger({ name: `renderbus-${kind}`, format: logFormatOf(g) });
  const nc = await connectBus({ servers: where.servers, name: `renderbus-${kind}`, creds: where.creds, log });
  const sig = untilSignal();
  let actor: Stoppable;
  try {
    actor = await start(nc, where.site, log, where.creds);
  } catch (err) {
    sig.dispose();
    await nc.close();
    throw err;
  }
  log.info({ servers: where.servers, site: where.site }, 'actor running');
  // a signal, or the actor stopping by itself: either way the process ends
  const signal = await Promise.race([sig.signal, actor.stopped?.then(() => 'stopped over the bus' as const) ?? new Promise<never>(() => {})]);
  log.info({ signal }, 'stopping');
  try {
    await actor.stop(stopOptions);
    await nc.drain().catch(() => nc.close());
  } finally {
    sig.dispose();
    log.flush();
  }
  return ExitCode.Ok;
}
