import { setTimeout as sleep } from 'node:timers/promises';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { FarmError, token, type HostInventory, type PackageInfo } from '../../protocol/index.ts';
import { SimStats, SimTimers, simulatedSlots } from '../render-slot/index.ts';
import { startRenderServer, type RenderServerHandle } from './runtime.ts';

export interface SimulatedFarmOptions {
  /** One connection for every host of the process. */
  nc: NatsConnection;
  site: string;
  log: Logger;
  hosts: number;
  /** Slots per host. */
  slots: number;
  /** Host names are `<hostPrefix><n>` for n from `firstHost` (default 'sim-' and 0): several processes take distinct ranges. */
  hostPrefix?: string;
  firstHost?: number;
  /** How long a frame renders, in ms, ± jitter (0-1, default 0.1). */
  frameMs: number;
  jitter?: number;
  /** The fraction of tasks that fail (default 0). */
  failRate?: number;
  /** Heartbeat and lease-report period of every host (default 10,000 ms: at 10,000 hosts, 1,000 of each a second). */
  heartbeatMs?: number;
  /**
   * Hosts start spread evenly over this long (default: one heartbeat period), so their
   * heartbeats and lease reports are spread over the period as on a real farm rather than all
   * coming at once.
   */
  spreadMs?: number;
  /** Packages every host offers (default povray 3.7.0.10 and blender 4.1). */
  packages?: PackageInfo[];
  licenses?: string[];
  /** Told after each host has started. */
  onHostStarted?: (started: number) => void;
}

export interface SimulatedFarm {
  /** The render servers started so far. */
  readonly servers: readonly RenderServerHandle[];
  /** Resolves once every host has started (registration goes on in the background); rejects when one could not start. */
  readonly ready: Promise<void>;
  /** What the simulated slots did (shared by all of them). */
  readonly stats: SimStats;
  /**
   * Stops every host, as `render-server --grace 0`: running tasks are stopped and handed back.
   * With `abandon` (the scheduler is gone too), results it does not take are dropped at once
   * instead of being sent again for the render server's 8 s.
   */
  stop(o?: { abandon?: boolean }): Promise<void>;
}

const MAX_HOSTS = 100_000;
/** How many hosts start at once while they are being spread out. */
const START_BATCH = 50;

/** What every simulated host says it is: a 16-core, 64 GB Linux render node. */
export function simulatedInventory(slots: number, packages: PackageInfo[], licenses: string[]): HostInventory {
  return {
    machine: { family: 'x86_64', type: 'simulated' },
    os: { family: 'unix', type: 'linux', version: '6.1.0', distro: 'debian@12' },
    cpu: { count: Math.max(1, slots), family: 'amd', type: 'simulated epyc', speedMhz: 3000 },
    ramMb: 65_536,
    swapMb: 0,
    packages,
    licenses,
  };
}

/**
 * Many render servers in one process whose slots render by waiting (a scale test stands in for a
 * whole farm with it). Each host is a real render server (startRenderServer: registration,
 * heartbeats, lease reports, `host.<h>.assign` and `.ctl`), given its inventory instead of a probe
 * and simulated slots instead of real ones. All of them share the one connection and one timer
 * for their renders. Returns at once; `ready` says when every host has started.
 */
export function startSimulatedFarm(o: SimulatedFarmOptions): SimulatedFarm {
  if (!Number.isInteger(o.hosts) || o.hosts < 1 || o.hosts > MAX_HOSTS) throw new FarmError('RB_BAD_ARGUMENT', `hosts must be a whole number from 1 to ${MAX_HOSTS}, not ${o.hosts}`);
  const prefix = o.hostPrefix ?? 'sim-';
  const first = o.firstHost ?? 0;
  if (!Number.isInteger(first) || first < 0) throw new FarmError('RB_BAD_ARGUMENT', `firstHost must be a whole number, not ${first}`);
  token('host', `${prefix}${first + o.hosts - 1}`); // a bad prefix fails here, before anything starts
  const heartbeatMs = o.heartbeatMs ?? 10_000;
  const spreadMs = o.spreadMs ?? heartbeatMs;
  if (!(spreadMs >= 0)) throw new FarmError('RB_BAD_ARGUMENT', `spreadMs must be 0 or more, not ${spreadMs}`);
  const log = o.log.child({ actor: 'sim-farm' });
  const timers = new SimTimers(5, (err) => log.error({ err }, 'simulated slot failed'));
  const stats = new SimStats();
  let abandon = false;
  const slotFactory = simulatedSlots({ frameMs: o.frameMs, jitter: o.jitter ?? 0.1, failRate: o.failRate ?? 0, timers, stats, giveUp: () => abandon });
  const inventory = simulatedInventory(o.slots, o.packages ?? [{ name: 'povray', version: '3.7.0.10' }, { name: 'blender', version: '4.1' }], o.licenses ?? []);
  const servers: RenderServerHandle[] = [];
  let stopping = false;
  const t0 = performance.now();
  const ready = (async () => {
    for (let i = 0; i < o.hosts && !stopping; i += START_BATCH) {
      const batch = Math.min(START_BATCH, o.hosts - i);
      const wait = t0 + (spreadMs * i) / o.hosts - performance.now();
      if (wait > 0) await sleep(wait);
      if (stopping) break;
      const started = await Promise.all(
        Array.from({ length: batch }, (_, k) =>
          startRenderServer({ nc: o.nc, site: o.site, host: `${prefix}${first + i + k}`, slots: o.slots, log: o.log, heartbeatMs, inventory, slotFactory }),
        ),
      );
      servers.push(...started);
      o.onHostStarted?.(servers.length);
    }
    log.info({ hosts: servers.length, slots: o.slots, frameMs: o.frameMs, heartbeatMs, startedInMs: Math.round(performance.now() - t0) }, 'simulated farm started');
  })();
  let stopped: Promise<void> | null = null;
  return {
    servers,
    ready,
    stats,
    stop(so = {}) {
      if (so.abandon) abandon = true;
      stopped ??= (async () => {
        stopping = true;
        await ready.catch(() => {});
        await Promise.all(servers.map((s) => s.stop().catch((err: unknown) => log.warn({ err, host: s.host }, 'simulated host did not stop cleanly'))));
        timers.clear();
      })();
      return stopped;
    },
  };
}
