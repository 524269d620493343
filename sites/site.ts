import { watch, type FSWatcher } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { availableParallelism, hostname, tmpdir } from 'node:os';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { join, resolve } from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { FarmError, hostToken, isToken, Role, type Principal } from '../protocol/index.ts';
import { connectBus } from '../actors/bus/index.ts';
import { startRegistry } from '../actors/registry/index.ts';
import { startScheduler, type SchedulerOptions } from '../actors/scheduler/index.ts';
import { startRenderServer } from '../actors/render-server/index.ts';
import { startNotifier, type NotifierOptions } from '../actors/notifier/index.ts';
import { startMonitor, type MonitorHandle, type MonitorOptions } from '../actors/monitor/index.ts';
import { DEFAULT_SITE, farmFilePath, pidAlive, readFarmFile, writeFarmFile } from './farm-file.ts';
import { reloadNatsServer, startNatsServer, writeAuthConfig, type NatsServerHandle } from './nats-server.ts';
import { CLUSTER_SIZES, startCluster, type ClusterHandle } from './cluster.ts';
import { startSiteServices, type SiteServices, type SiteServicesInput } from './site-services.ts';
import { ensureSite, LinkChange, linkChange, linksConfig, linksOf, readSiteStore, siteStorePath, type SiteStore, type StoredPeer } from './links/index.ts';
import { isAddressInUse, PortInUseError } from './port-in-use.ts';
import { authUsers, keyOf, localCredsPath, localPrincipals, natsDir, prepareSiteAuth } from './auth/index.ts';
import { DEFAULT_STORE_MIN_FREE_BYTES, freeBytes, guardStore, nextStoreMode, type StoreMode } from './store-guard.ts';

/** NATS's own client port: `up` takes it when it is free. */
export const DEFAULT_NATS_PORT = 4222;

export interface FarmOptions {
  dataDir: string;
  site?: string;
  /** Render slots of the local render server; 0 starts none. Default: one per CPU. */
  slots?: number;
  host?: string;
  /** NATS port; -1 picks a free one. Given and taken: PortInUseError. Absent: `defaultPort`, else a free one when it is taken. */
  port?: number;
  /** The port tried when `port` is absent (default 4222, NATS's own; tests pass a port they hold). */
  defaultPort?: number;
  /** Address nats-server listens on. Default 127.0.0.1 (only this machine). */
  listen?: string;
  /** The operator credential `up` makes for whoever runs it (default 'admin'). */
  operator?: string;
  /** The notifier's mail server, webhook secret, allowed webhook addresses and retries. */
  notifier?: Pick<NotifierOptions, 'smtp' | 'webhookSecret' | 'webhookAllow' | 'retry'>;
  /** Where the monitor serves /metrics (default 127.0.0.1, whatever `listen` is; port 8080, a free one when taken) and its access token. */
  monitor?: Pick<MonitorOptions, 'port' | 'listen' | 'portFallback' | 'snapshotMs' | 'token' | 'hosts'>;
  /** Called once the monitor runs, with its own connection: the entry point adds the web monitor here. */
  onMonitor?: (monitor: MonitorHandle, o: { nc: NatsConnection; site: string }) => void | Promise<void>;
  /** Free bytes on the data disk under which nats-server stops storing (store-guard.ts; default 256 MiB). */
  storeMinFreeBytes?: number;
  /** The scheduler's queue limits, retention of finished jobs, the site's linked peers and its outsourcing policy. */
  scheduler?: Pick<SchedulerOptions, 'limits' | 'retention' | 'peers' | 'outsourceUnrenderable' | 'outsourceOverflow' | 'sandboxAll'>;
  /**
   * Run as a site that links to peers (`renderbus up --site`): `<data>/fed/site.json` is made (or
   * checked: a site keeps its name), with the leaf listener when one is given. A data directory
   * that has a store runs linked even without this (its peers' links must not vanish).
   */
  federation?: { listen?: SiteStore['listen']; encryptResults?: SiteServicesInput['encryptResults']; keepInputsMs?: number };
  /**
   * NATS servers (`renderbus up --cluster 3`): 1, one nats-server; 3, a cluster of three on this
   * machine (sites/cluster.ts), streams R3, every actor given all three URLs. Not with links.
   */
  cluster?: number;
  log: Logger;
}

export interface FarmHandle {
  /** The first NATS server's URL. */
  url: string;
  /** Every NATS server: one, or each member of the cluster. */
  servers: string[];
  /** The cluster's members, to kill and restart one (tests, the chaos driver); null with one server. */
  cluster: ClusterHandle | null;
  site: string;
  dataDir: string;
  outputDir: string;
  host: string | null;
  nc: NatsConnection;
  /** The operator credential of whoever ran the farm (the CLI on this machine finds it in farm.json). */
  creds: string;
  /** The monitor's address (`/metrics`), the address it is bound to, and whether port 8080 was taken. */
  monitor: { url: string; bound: string; fellBack: boolean };
  /** The default NATS port was taken, so NATS listens on a free one (named in `url` and farm.json). */
  natsFellBack: boolean;
  /** A linked site: its leaf listener and its peers as it started (null: a farm with no links). */
  links: { listen?: SiteStore['listen']; peers: string[] } | null;
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
  const stored = await readSiteStore(dataDir); // a damaged store stops the start: its links must not silently vanish
  const site = o.site ?? stored?.site ?? DEFAULT_SITE;
  if (!isToken(site)) throw new FarmError('RB_BAD_ARGUMENT', `site '${site}' must be lower-case letters, digits, '-' or '_'`);
  if (stored && stored.site !== site) throw new FarmError('RB_BAD_ARGUMENT', `${siteStorePath(dataDir)} is site '${stored.site}', not '${site}': a linked site keeps its name (its peers know it by it)`);
  const clusterSize = o.cluster ?? 1;
  if (!CLUSTER_SIZES.includes(clusterSize)) throw new FarmError('RB_BAD_ARGUMENT', `--cluster ${clusterSize}: a farm runs on 1 NATS server or a cluster of 3 (R3 keeps every stream through the loss of one)`);
  // a cluster's members would each need the site's leaf listener and remotes: not built (docs/cluster.md)
  if (clusterSize > 1 && (o.federation || stored)) throw new FarmError('RB_BAD_ARGUMENT', `--cluster ${clusterSize} with linked sites (--site, or the site store in ${siteStorePath(dataDir)}) is not supported: run the site on one NATS server`);
  const existing = await readFarmFile(dataDir).catch(() => null);
  if (existing && existing.pid !== process.pid && pidAlive(existing.pid)) {
    throw new FarmError('RB_BAD_ARGUMENT', `a farm is already running on ${dataDir} (pid ${existing.pid}, ${existing.url}); stop it first or use another --data`);
  }
  const outputDir = join(dataDir, 'output');
  await mkdir(outputDir, { recursive: true });
  const log = o.log;
  const slots = o.slots ?? availableParallelism();
  const host = slots > 0 ? (o.host ?? hostToken(hostname().split('.')[0] ?? '')) : null;
  // every actor logs in with a credential of its own; the server lets in nobody else
  const operator: Principal = { role: Role.Operator, name: o.operator ?? 'admin' };
  // a linked site: the store made or checked before anything starts; its link and intake get credentials of their own
  let siteStore = o.federation ? await ensureSite(dataDir, site, o.federation.listen) : stored;
  const linked = siteStore !== null;
  const auth = await prepareSiteAuth(dataDir, site, localPrincipals({ host, operator: operator.name, linked }));
  const credsOf = (role: Role, name: string) => auth.creds.get(keyOf({ role, name }))!;
  // nats-server must not meet a full disk (store-guard.ts): on a nearly full one it starts refusing writes
  const storeDir = natsDir(dataDir);
  const minFree = o.storeMinFreeBytes ?? DEFAULT_STORE_MIN_FREE_BYTES;
  // the queue lives in the store of the shape the farm ran with: starting the other shape would not see it
  const other = clusterSize > 1 ? join(storeDir, 'jetstream') : join(storeDir, 'n1', 'jetstream');
  if (await readdir(other).then((l) => l.length > 0, () => false)) {
    const was = clusterSize > 1 ? 'one nats-server' : 'a NATS cluster (renderbus up --cluster 3)';
    throw new FarmError('RB_BAD_ARGUMENT', `${dataDir} holds the JetStream store of a farm that ran on ${was} (${other}): start it as it was, or move ${storeDir} away to start afresh (its jobs would not be seen; docs/cluster.md, "Limits")`);
  }
  await mkdir(storeDir, { recursive: true });
  let storeMode: StoreMode = nextStoreMode('normal', await freeBytes(storeDir), minFree, false)?.restart ?? 'normal';
  const listen = o.listen ?? '127.0.0.1';
  const startNats = async (mode: StoreMode, port: number): Promise<NatsServerHandle> => {
    // the users as the store has them now: credentials issued since the start stay valid
    const links = siteStore ? { links: linksOf(siteStore) } : {};
    const common = { dir: storeDir, host: listen, port, serverName: `renderbus-${site}`, auth: { users: await authUsers(dataDir) }, ...links };
    if (mode === 'normal') return startNatsServer(common);
    // its config and ports file go elsewhere: the data disk has no room for them
    const runDir = await mkdtemp(join(tmpdir(), 'rb-nats-run-'));
    const h = await startNatsServer({ ...common, maxFileStore: 1, runDir });
    return { ...h, stop: async () => { await h.stop(); await rm(runDir, { recursive: true, force: true }); } };
  };
  // the default port is a convenience, a port the caller named is a promise: only the first gives way
  let natsFellBack = false;
  let nats: Pick<NatsServerHandle, 'url' | 'pid' | 'stop'>;
  let cluster: ClusterHandle | null = null;
  if (clusterSize > 1) {
    // ports named: port, port+1, port+2; else free ones (4222 is one server's convention)
    const ports = o.port !== undefined && o.port !== -1 ? Array.from({ length: clusterSize }, (_, i) => o.port! + i) : undefined;
    cluster = await startCluster({
      dir: storeDir, size: clusterSize, host: listen, name: `renderbus-${site}`, auth: { users: await authUsers(dataDir) },
      probe: credsOf(Role.Scheduler, 'scheduler'), ...(ports ? { ports } : {}),
    });
    log.info({ servers: cluster.servers, readyMs: cluster.readyMs }, 'NATS cluster up: JetStream has a meta leader');
    nats = { url: cluster.servers[0]!, pid: cluster.nodes()[0]!.pid, stop: cluster.stop };
  } else try {
    nats = await startNats(storeMode, o.port ?? o.defaultPort ?? DEFAULT_NATS_PORT);
  } catch (err) {
    if (!isAddressInUse(err) || o.port === -1) throw err;
    if (o.port !== undefined) throw new PortInUseError('nats', o.port, listen, err);
    log.warn({ port: o.defaultPort ?? DEFAULT_NATS_PORT }, 'the default NATS port is taken: NATS listens on a free one');
    natsFellBack = true;
    nats = await startNats(storeMode, -1);
  }
  const servers = () => cluster?.servers ?? [nats.url];
  if (storeMode === 'full' && cluster) log.error({ dir: storeDir }, 'the data disk is nearly full: the store guard does not watch a cluster (docs/cluster.md); free space on it');
  else if (storeMode === 'full') log.error({ dir: storeDir, minFreeMb: Math.floor(minFree / 2 ** 20) }, 'the data disk is nearly full: nats-server refuses writes until space is freed');
  let farmFileWritten = false;
  let monitorEntry: { url: string; token: string } | undefined; // the web monitor's, once it runs
  const startedAt = Date.now();
  const writeFarm = () =>
    writeFarmFile({ site, url: nats.url, ...(cluster ? { servers: servers(), natsPids: cluster.nodes().map((n) => n.pid) } : {}), pid: process.pid, dataDir, outputDir, startedAt, natsPid: nats.pid, credsFile: localCredsPath(dataDir, operator), ...(monitorEntry ? { monitor: monitorEntry } : {}) });
  let graceMs = 0;
  const stops: (() => Promise<void>)[] = [() => nats.stop()];
  const conn = (name: string, role: Role, as = name) =>
    connectBus({ servers: servers(), name: `${site}-${name}`, creds: credsOf(role, as), log: log.child({ conn: name }) });
  const stopAll = async () => {
    for (const s of stops.splice(0).reverse()) await s().catch((err: unknown) => log.warn({ err }, 'stop failed'));
  };
  // the store guard and a change of the site's links both restart nats-server: one at a time
  let natsOp = Promise.resolve();
  const restartNats = (mode: StoreMode): Promise<void> => {
    const next = natsOp.then(async () => {
      await nats.stop();
      nats = await startNats(mode, Number(new URL(nats.url).port)); // the same port: every actor reconnects to it
      storeMode = mode;
      // its new pid, for renderbus credentials' reload (a full disk may refuse it: the next restart writes it)
      if (farmFileWritten) await writeFarm().catch((err: unknown) => log.warn({ err }, 'could not record the new nats-server in farm.json'));
    });
    natsOp = next.catch(() => {});
    return next;
  };
  try {
    const nc = await conn('farm', Role.Operator, operator.name);
    stops.push(() => nc.drain());
    // the guard asks JetStream with a service credential: only the farm's services may. One server
    // only: restarting a cluster member refusing writes would not stop the others (docs/cluster.md)
    if (!cluster) {
      const guardNc = await conn('store-guard', Role.Scheduler, 'scheduler');
      stops.push(() => guardNc.drain());
      let jsm: JetStreamManager | null = null;
      const stopGuard = guardStore({
        dir: storeDir, minFreeBytes: minFree, mode: storeMode, log,
        probe: async () => {
          try {
            jsm ??= await jetstreamManager(guardNc, { timeout: 5_000 }); // a loaded machine is slow, not stuck
            await jsm.getAccountInfo();
            return true;
          } catch {
            return false;
          }
        },
        restart: restartNats,
      });
      stops.push(stopGuard);
    }
    const regNc = await conn('registry', Role.Registry);
    stops.push(() => regNc.drain());
    const registry = await startRegistry({ nc: regNc, site, log });
    stops.push(registry.stop);
    const schedNc = await conn('scheduler', Role.Scheduler);
    stops.push(() => schedNc.drain());
    // a linked site's jobs may name its peers as they are now (invite and remove change them while it runs)
    const peers = siteStore ? { peers: () => (siteStore?.peers ?? []).map((p) => p.name) } : {};
    const scheduler = await startScheduler({ nc: schedNc, site, log, ...peers, ...o.scheduler });
    stops.push(scheduler.stop);
    const notifierNc = await conn('notifier', Role.Notifier);
    stops.push(() => notifierNc.drain());
    const notifier = await startNotifier({ nc: notifierNc, site, log, ...o.notifier });
    stops.push(notifier.stop);
    const monitorNc = await conn('monitor', Role.Monitor);
    stops.push(() => monitorNc.drain());
    const monitor = await startMonitor({ nc: monitorNc, site, log, portFallback: true, ...o.monitor }).catch((err: unknown) => {
      const port = o.monitor?.port;
      throw isAddressInUse(err) && port !== undefined ? new PortInUseError('monitor', port, o.monitor?.listen ?? '127.0.0.1', err) : err;
    });
    stops.push(monitor.stop);
    await o.onMonitor?.(monitor, { nc: monitorNc, site });
    if (o.monitor?.token !== undefined) monitorEntry = { url: monitor.url, token: o.monitor.token };
    if (host !== null) {
      const rsNc = await conn('render-server', Role.RenderServer, host);
      stops.push(() => rsNc.drain());
      const rs = await startRenderServer({ nc: rsNc, site, host, slots, log });
      stops.push(() => rs.stop({ graceMs }));
    }
    let services: SiteServices | null = null;
    if (siteStore) {
      services = await startSiteServices({
        site, dataDir, url: nats.url, log: log.child({ part: 'site-links' }), peers: siteStore.peers,
        ...(o.federation?.encryptResults !== undefined ? { encryptResults: o.federation.encryptResults } : {}),
        creds: { link: credsOf(Role.SiteLink, 'link'), intake: credsOf(Role.Intake, 'intake') },
        ...(o.federation?.keepInputsMs !== undefined ? { keepInputsMs: o.federation.keepInputsMs } : {}),
        ...(o.scheduler?.outsourceUnrenderable ? { outsourceUnrenderable: o.scheduler.outsourceUnrenderable } : {}),
      });
      stops.push(services.stop);
      // `renderbus site invite/join/remove` only write the store: the running site applies it
      const w = watchSiteStore(dataDir, log, async () => {
        const next = await readSiteStore(dataDir);
        if (!next || !siteStore || JSON.stringify(next) === JSON.stringify(siteStore)) return;
        const change = linkChange(siteStore, next);
        siteStore = next;
        const peers = next.peers.map((p) => p.name);
        // in a full-disk mode the config lives in a temp run dir, which only a restart writes
        if (change === LinkChange.Restart || (change === LinkChange.Reload && storeMode !== 'normal')) {
          log.info({ peers }, 'the site\'s leaf connections changed: restarting nats-server');
          await restartNats(storeMode);
        } else if (change === LinkChange.Reload) {
          // a leaf peer at a hub is a new account and its users: a reload, the other links stay up
          await writeAuthConfig(storeDir, await authUsers(dataDir), linksConfig(linksOf(next)));
          reloadNatsServer(nats.pid);
          log.info({ peers }, 'the site\'s peers changed: nats-server reloaded');
        }
        await services?.peersChanged(next.peers);
      });
      stops.push(async () => w.close());
    }
    await writeFarm();
    farmFileWritten = true;
    stops.push(() => rm(farmFilePath(dataDir), { force: true }));
    log.info({ servers: servers(), dataDir, slots, host }, 'farm up');
    const stop = (so: { graceMs?: number } = {}) => {
      graceMs = so.graceMs ?? 0;
      return stopAll();
    };
    const links = siteStore ? { ...(siteStore.listen ? { listen: siteStore.listen } : {}), peers: siteStore.peers.map((p) => p.name) } : null;
    return { url: nats.url, servers: servers(), cluster, site, dataDir, outputDir, host, nc, creds: localCredsPath(dataDir, operator), monitor: { url: monitor.url, bound: monitor.bound, fellBack: monitor.fellBack }, natsFellBack, links, stop };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/**
 * Calls `apply` after `<data>/fed/site.json` changed (written by rename, so the folder is watched),
 * once the writes settle; one apply at a time, and a failure is logged, never thrown.
 */
function watchSiteStore(dataDir: string, log: Logger, apply: () => Promise<void>): FSWatcher {
  let timer: NodeJS.Timeout | undefined;
  let chain = Promise.resolve();
  const w = watch(join(dataDir, 'fed'), (_event, name) => {
    if (name !== null && name !== 'site.json') return;
    clearTimeout(timer);
    timer = setTimeout(() => {
      chain = chain.then(apply).catch((err: unknown) => log.error({ err }, 'could not apply the changed site store'));
    }, 100);
  });
  w.on('error', (err) => log.warn({ err }, 'stopped watching the site store'));
  w.on('close', () => clearTimeout(timer));
  return w;
}
