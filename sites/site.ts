import { mkdir, rm } from 'node:fs/promises';
import { availableParallelism, hostname } from 'node:os';
import { join, resolve } from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { FarmError, hostToken, isToken } from '../protocol/index.ts';
import { connectBus } from '../actors/bus/index.ts';
import { startRegistry } from '../actors/registry/index.ts';
import { startScheduler } from '../actors/scheduler/index.ts';
import { startRenderServer } from '../actors/render-server/index.ts';
import { startNotifier, type NotifierOptions } from '../actors/notifier/index.ts';
import { startMonitor, type MonitorHandle, type MonitorOptions } from '../actors/monitor/index.ts';
import { DEFAULT_SITE, farmFilePath, pidAlive, readFarmFile, writeFarmFile } from './farm-file.ts';
import { startNatsServer } from './nats-server.ts';

export interface FarmOptions {
  dataDir: string;
  site?: string;
  /** Render slots of the local render server; 0 starts none. Default: one per CPU. */
  slots?: number;
  host?: string;
  /** NATS port; -1 picks a free one. Default 4222. */
  port?: number;
  /** Address nats-server listens on. Default 127.0.0.1 (only this machine). */
  listen?: string;
  /** The notifier's mail server, webhook secret, allowed webhook addresses and retries. */
  notifier?: Pick<NotifierOptions, 'smtp' | 'webhookSecret' | 'webhookAllow' | 'retry'>;
  /** Where the monitor serves /metrics (default 127.0.0.1, whatever `listen` is; port 8080, a free one when taken) and its access token. */
  monitor?: Pick<MonitorOptions, 'port' | 'listen' | 'portFallback' | 'snapshotMs' | 'token' | 'hosts'>;
  /** Called once the monitor runs, with its own connection: the entry point adds the web monitor here. */
  onMonitor?: (monitor: MonitorHandle, o: { nc: NatsConnection; site: string }) => void | Promise<void>;
  log: Logger;
}

export interface FarmHandle {
  url: string;
  site: string;
  dataDir: string;
  outputDir: string;
  host: string | null;
  nc: NatsConnection;
  /** The monitor's address (`/metrics`), the address it is bound to, and whether port 8080 was taken. */
  monitor: { url: string; bound: string; fellBack: boolean };
  /** Stops the farm; the local render server drains first for up to `graceMs` (default 0: stop at once, handing frames back). */
  stop(o?: { graceMs?: number }): Promise<void>;
}

/**
 * One whole site on this machine (`renderbus up`): a nats-server child with JetStream under
 * `<data>/nats`, then the registry, the scheduler, the notifier, the monitor (to which the entry
 * point adds the web monitor, `onMonitor`) and a render server, each an actor with its own
 * connection, talking only over NATS. Writes `<data>/farm.json` so
 * other commands find it. They stop in the reverse order: the render server drains first, so
 * jobs that end meanwhile are still told and counted.
 */
export async function startFarm(o: FarmOptions): Promise<FarmHandle> {
  const dataDir = resolve(o.dataDir);
  const site = o.site ?? DEFAULT_SITE;
  if (!isToken(site)) throw new FarmError('RB_BAD_ARGUMENT', `site '${site}' must be lower-case letters, digits, '-' or '_'`);
  const existing = await readFarmFile(dataDir).catch(() => null);
  if (existing && existing.pid !== process.pid && pidAlive(existing.pid)) {
    throw new FarmError('RB_BAD_ARGUMENT', `a farm is already running on ${dataDir} (pid ${existing.pid}, ${existing.url}); stop it first or use another --data`);
  }
  const outputDir = join(dataDir, 'output');
  await mkdir(outputDir, { recursive: true });
  const log = o.log;
  const nats = await startNatsServer({ dir: join(dataDir, 'nats'), host: o.listen ?? '127.0.0.1', port: o.port ?? 4222, serverName: `renderbus-${site}` });
  let graceMs = 0;
  const stops: (() => Promise<void>)[] = [nats.stop];
  const conns: NatsConnection[] = [];
  const conn = async (name: string) => {
    const c = await connectBus({ servers: nats.url, name: `${site}-${name}`, log: log.child({ conn: name }) });
    conns.push(c);
    return c;
  };
  const stopAll = async () => {
    for (const s of stops.splice(0).reverse()) await s().catch((err: unknown) => log.warn({ err }, 'stop failed'));
  };
  try {
    const nc = await conn('farm');
    stops.push(() => nc.drain());
    const regNc = await conn('registry');
    stops.push(() => regNc.drain());
    const registry = await startRegistry({ nc: regNc, site, log });
    stops.push(registry.stop);
    const schedNc = await conn('scheduler');
    stops.push(() => schedNc.drain());
    const scheduler = await startScheduler({ nc: schedNc, site, log });
    stops.push(scheduler.stop);
    const notifierNc = await conn('notifier');
    stops.push(() => notifierNc.drain());
    const notifier = await startNotifier({ nc: notifierNc, site, log, ...o.notifier });
    stops.push(notifier.stop);
    const monitorNc = await conn('monitor');
    stops.push(() => monitorNc.drain());
    const monitor = await startMonitor({ nc: monitorNc, site, log, portFallback: true, ...o.monitor });
    stops.push(monitor.stop);
    await o.onMonitor?.(monitor, { nc: monitorNc, site });
    const slots = o.slots ?? availableParallelism();
    let host: string | null = null;
    if (slots > 0) {
      host = o.host ?? hostToken(hostname().split('.')[0] ?? '');
      const rsNc = await conn('render-server');
      stops.push(() => rsNc.drain());
      const rs = await startRenderServer({ nc: rsNc, site, host, slots, log });
      stops.push(() => rs.stop({ graceMs }));
    }
    const token = o.monitor?.token;
    await writeFarmFile({ site, url: nats.url, pid: process.pid, dataDir, outputDir, startedAt: Date.now(), ...(token !== undefined ? { monitor: { url: monitor.url, token } } : {}) });
    stops.push(() => rm(farmFilePath(dataDir), { force: true }));
    log.info({ url: nats.url, dataDir, slots, host }, 'farm up');
    const stop = (so: { graceMs?: number } = {}) => {
      graceMs = so.graceMs ?? 0;
      return stopAll();
    };
    return { url: nats.url, site, dataDir, outputDir, host, nc, monitor: { url: monitor.url, bound: monitor.bound, fellBack: monitor.fellBack }, stop };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
