import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { pidAlive, readFarmFile } from '../../sites/farm-file.ts';
import { PortInUseError } from '../../sites/port-in-use.ts';
import { DEFAULT_NATS_PORT } from '../../sites/site.ts';
import { rootLogger } from '../../sites/logger.ts';
import { ExitCode, UsageError } from './cli-error.ts';
import type { CommandContext } from './command-context.ts';
import { paint } from './format.ts';
import { checkGlobals, dataDirOf, logFormatOf } from './global-options.ts';
import { DEFAULT_GRACE_MS } from '../../actors/render-server/runtime.ts';
import { notifierSettings, type NotifierFlags } from './notifier.ts';
import { schedulerSettings, type SchedulerFlags } from './scheduler-flags.ts';
import { monitorSettings } from './monitor.ts';
import { loadOrCreateSecret } from '../../sites/secret-file.ts';
import { hostToken, parseCount, parsePort, parseToken } from './option-values.ts';
import { currentUser } from './os-user.ts';
import { untilSignal } from './signals.ts';
import { DEMO_RESOLUTION, DEMO_SCENE } from './demo.ts';
import { RENDERBUS_BIN, selfCommand, selfCommandLine } from './self-command.ts';
import { parseKeepDuration } from '../../sites/remote-jobs/index.ts';

export interface UpOptions extends NotifierFlags, SchedulerFlags {
  slots?: string;
  port?: string;
  listen?: string;
  host?: string;
  grace?: string;
  monitorPort?: string;
  storeMinFree?: string;
  monitorListen?: string;
  monitorHost?: string[];
  leafListen?: string;
  advertise?: string;
  /** `--encrypt-results [mode]`: true without a mode. */
  encryptResults?: boolean | string;
  keepInputs?: string;
  cluster?: string;
}

/**
 * `renderbus up`: one whole farm on this machine (nats-server, registry, scheduler, one
 * render server), logging to <data>/logs/farm.log, until Ctrl-C or SIGTERM.
 */
export async function upCommand(c: CommandContext<UpOptions>): Promise<number> {
  const g = checkGlobals(c.globals);
  const slots = c.opts.slots !== undefined ? parseCount('--slots', c.opts.slots, { min: 0, max: 1024 }) : availableParallelism();
  const port = c.opts.port !== undefined ? parsePort('--port', c.opts.port) : undefined;
  const host = c.opts.host !== undefined ? parseToken('--host', c.opts.host) : undefined;
  const graceMs = c.opts.grace !== undefined ? parseCount('--grace', c.opts.grace, { min: 0, max: 86_400 }) * 1000 : DEFAULT_GRACE_MS;
  const storeMinFreeMb = c.opts.storeMinFree !== undefined ? parseCount('--store-min-free', c.opts.storeMinFree, { min: 0, max: 1024 * 1024 }) : undefined;
  const dataDir = dataDirOf(g);
  const federation = federationOf(g.site, c.opts);
  const cluster = clusterOf(c.opts.cluster, federation !== undefined);
  const notifierOptions = notifierSettings(c.opts);
  const schedulerOptions = schedulerSettings(c.opts, g.site);
  // the monitor stays on 127.0.0.1 whatever --listen (NATS) says: opening it is its own decision
  const monitorOptions = monitorSettings(
    { ...(c.opts.monitorPort !== undefined ? { port: c.opts.monitorPort } : {}), ...(c.opts.monitorListen !== undefined ? { listen: c.opts.monitorListen } : {}), ...(c.opts.monitorHost !== undefined ? { monitorHost: c.opts.monitorHost } : {}) },
    { port: '--monitor-port', listen: '--monitor-listen' },
  );

  const running = await readFarmFile(dataDir).catch(() => null);
  if (running && running.pid !== process.pid && pidAlive(running.pid)) {
    throw new UsageError(`a farm is already running in ${dataDir} (pid ${running.pid}, ${running.url}): stop it first, or give another --data DIR`);
  }

  // secrets of the farm, made on the first `up` and kept in the data directory (mode 0600)
  const tokenFile = join(dataDir, 'monitor-token');
  const secretFile = join(dataDir, 'webhook-secret');
  const token = await loadOrCreateSecret(tokenFile);
  const generatedSecret = notifierOptions.webhookSecret === undefined;
  if (generatedSecret) notifierOptions.webhookSecret = await loadOrCreateSecret(secretFile);

  const logFile = join(dataDir, 'logs', 'farm.log');
  const log = rootLogger({ name: 'renderbus', file: logFile, format: logFormatOf(g) });
  const { startFarm } = await import('../../sites/site.ts');
  const sig = untilSignal();
  let farm: Awaited<ReturnType<typeof startFarm>>;
  try {
    const { addWebMonitor } = await import('../web/index.ts');
    farm = await startFarm({
      dataDir, site: g.site, slots, host, port, listen: c.opts.listen, operator: hostToken(currentUser().user), notifier: notifierOptions, monitor: { ...monitorOptions, token }, scheduler: schedulerOptions, log,
      ...(storeMinFreeMb !== undefined ? { storeMinFreeBytes: storeMinFreeMb * 2 ** 20 } : {}),
      ...(federation ? { federation } : {}),
      ...(cluster > 1 ? { cluster } : {}),
      onMonitor: addWebMonitor,
    });
  } catch (err) {
    sig.dispose();
    log.error({ err }, 'farm failed to start');
    log.flush();
    if (err instanceof PortInUseError) {
      const flag = err.listener === 'nats' ? '--port' : '--monitor-port';
      throw new UsageError(`${err.message}: give another with ${flag} N, or ${flag} -1 for any free port`, { cause: err });
    }
    throw err;
  }


  const p = paint(c.io.stdout);
  // commands that work as printed, from any folder: this checkout's CLI, and the data directory in full
  const rb = (...args: string[]) => selfCommandLine(['--data', farm.dataDir, ...args]);
  const local = /\/\/(127\.|localhost|\[::1\])/.test(farm.url);
  c.io.stdout.write(
    [
      `${p.bold(`renderbus farm '${farm.site}' is up`)} (pid ${process.pid}, ${slots} slots on this machine)`,
      farm.cluster
        ? `  NATS      ${farm.servers.join(',')} (a cluster of ${farm.servers.length}, ready in ${farm.cluster.readyMs} ms; docs/cluster.md)`
        : `  NATS URL  ${farm.url}${farm.natsFellBack ? ` (port ${DEFAULT_NATS_PORT} was taken; --port N chooses one)` : ''}`,
      `  data      ${farm.dataDir}`,
      `  output    ${farm.outputDir}`,
      `  log       ${logFile}`,
      `  you       ${farm.creds} (operator '${hostToken(currentUser().user)}': the CLI on this machine uses it; never share it)`,
      `  monitor   ${farm.monitor.url}/#token=${token}`,
      `            (web monitor, Prometheus at /metrics; ${boundText(farm.monitor.bound)}${farm.monitor.fellBack ? '; port 8080 was taken' : ''}; token in ${tokenFile})`,
      ...linkLines(farm.links, rb, schedulerOptions.outsourceUnrenderable, schedulerOptions.outsourceOverflow),
      ...(federation?.encryptResults ? [`  results   outsourced jobs' files come back encrypted to ${join(farm.dataDir, 'fed', 'result-key.txt')} (back it up); the vendor ${federation.encryptResults.purge ? 'purges' : 'may keep'} its clear copies`] : []),
      `  notify    webhooks signed (secret ${generatedSecret ? `in ${secretFile}` : 'given'}), ${notifierOptions.smtp ? `email via ${new URL(notifierOptions.smtp.url).host}` : 'no email (no --smtp)'}`,
      '',
      'In another terminal, from any folder:',
      `  ${rb('submit', DEMO_SCENE, '--frames', '1-12', '--resolution', DEMO_RESOLUTION, '--wait')}`,
      `  ${rb('jobs')}`,
      `  ${rb('hosts')}`,
      `  ${rb('tail')}`,
      ...(selfCommand() === 'renderbus' ? [] : [`(${RENDERBUS_BIN} is this checkout's renderbus: 'sh tools/bootstrap.sh' puts it on PATH)`]),
      local
        ? `Other machines cannot join: NATS listens on ${farm.servers.join(',')} only (use --listen 0.0.0.0 to change that).`
        : `Other machines join with a credential each: ${rb('credentials', 'add', 'render-server', 'HOST', '--url', farm.servers.join(','))}, then on HOST: renderbus render-server --creds render-server-HOST.creds (docs/running-actors.md)`,
      'Stop with Ctrl-C.',
      '',
    ].join('\n'),
  );

  const signal = await sig.signal;
  c.io.stdout.write(`${signal === 'SIGINT' ? '\n' : ''}stopping the farm: running frames may finish for ${graceMs / 1000} s...\n`);
  log.info({ signal, graceMs }, 'stopping the farm');
  try {
    await farm.stop({ graceMs });
  } finally {
    sig.dispose();
    log.flush();
  }
  c.io.stdout.write('farm stopped\n');
  return ExitCode.Ok;
}

/** Where the monitor listens, as the system bound it. */
function boundText(bound: string): string {
  if (bound === '0.0.0.0' || bound === '::') return `listening on every address (${bound}): other machines need the token`;
  return `listening on ${bound} only`;
}

/**
 * `--site NAME` runs a site that links to peers; `--leaf-listen` and `--advertise` give it the leaf
 * listener its peers dial (a hub). Without `--site` nothing of this applies (a data directory
 * already linked keeps its links: startFarm reads them from its store).
 */
/**
 * `--cluster N`: 1 (one nats-server) or 3. Not with --site: every member would need the site's
 * leaf listener and its remotes, and a peer would have to dial all three (not built).
 */
function clusterOf(value: string | undefined, linked: boolean): number {
  if (value === undefined) return 1;
  const n = parseCount('--cluster', value, { min: 1, max: 99 });
  if (n !== 1 && n !== 3) throw new UsageError(`--cluster ${n}: give 3 (a cluster of three NATS servers on this machine) or 1; a cluster of ${n} is not supported`);
  if (n > 1 && linked) throw new UsageError('--cluster 3 with --site: a linked site runs on one NATS server (docs/cluster.md, "Limits")');
  return n;
}

function federationOf(site: string | undefined, o: UpOptions): { listen?: { host: string; port: number; advertise: string }; encryptResults?: { purge: boolean }; keepInputsMs?: number } | undefined {
  if (site === undefined) {
    if (o.leafListen !== undefined || o.advertise !== undefined || o.keepInputs !== undefined) throw new UsageError('--leaf-listen, --advertise and --keep-inputs are for a linked site: give --site NAME too');
    if (o.encryptResults !== undefined) throw new UsageError('--encrypt-results is for a linked site: give --site NAME too');
    return undefined;
  }
  const enc = encryptResultsOf(o.encryptResults);
  const extra = { ...(enc ? { encryptResults: enc } : {}), ...(o.keepInputs !== undefined ? { keepInputsMs: keepInputsOf(o.keepInputs) } : {}) };
  if (o.leafListen === undefined) {
    if (o.advertise !== undefined) throw new UsageError('--advertise goes with --leaf-listen HOST:PORT');
    return extra;
  }
  const m = /^([^\s"/@:]+):(\d{1,5})$/.exec(o.leafListen);
  if (!m) throw new UsageError(`--leaf-listen: '${o.leafListen}' is not HOST:PORT (e.g. 0.0.0.0:7422)`);
  const port = parsePort('--leaf-listen', m[2]!);
  if (o.advertise === undefined) {
    throw new UsageError(
      "--leaf-listen needs --advertise HOST:PORT, the address the peers dial (e.g. farm.studio.example:7422): nats-server tells its leafs its own listen address, and a peer behind NAT, a port forward or a proxy would reconnect to the wrong one",
    );
  }
  if (!/^[^\s"/@]+:\d{1,5}$/.test(o.advertise)) throw new UsageError(`--advertise: '${o.advertise}' is not HOST:PORT`);
  return { listen: { host: m[1]!, port, advertise: o.advertise }, ...extra };
}

/** `--encrypt-results [purge|keep]`: whether the vendors must purge their clear copies. */
function encryptResultsOf(v: boolean | string | undefined): { purge: boolean } | undefined {
  if (v === undefined || v === false) return undefined;
  if (v === true || v === 'purge') return { purge: true };
  if (v === 'keep') return { purge: false };
  throw new UsageError(`--encrypt-results: '${v}' is not a mode: 'purge' (the default: the vendor removes its clear copies once the result is sent) or 'keep'`);
}

/** `--keep-inputs 7d`: how long a peer's ended job's inputs are kept (sites/remote-jobs/retention.ts). */
function keepInputsOf(value: string): number {
  try {
    return parseKeepDuration(value);
  } catch (err) {
    throw new UsageError(`--keep-inputs: ${(err as Error).message}`);
  }
}

function linkLines(links: { listen?: { host: string; port: number; advertise: string }; peers: string[] } | null, rb: (...args: string[]) => string, policy?: readonly string[], overflow?: readonly string[]): string[] {
  if (!links) {
    return [
      ...(policy ? [`  policy    --outsource-unrenderable has no effect: this farm is no linked site (run it with --site NAME)`] : []),
      ...(overflow ? [`  policy    --outsource-overflow has no effect: this farm is no linked site (run it with --site NAME)`] : []),
    ];
  }
  const peers = links.peers.length > 0 ? links.peers.join(', ') : 'none yet';
  const unlinked = (policy ?? []).filter((p) => !links.peers.includes(p));
  return [
    `  links     ${links.listen ? `leaf listener ${links.listen.host}:${links.listen.port}, advertised as ${links.listen.advertise}; ` : ''}peers: ${peers}`,
    `            (${links.listen ? `invite one: ${rb('site', 'invite', 'PEER')}; ` : ''}join one: ${rb('site', 'join', 'TOKEN')}; list: ${rb('sites')})`,
    ...(policy ? [`  policy    a job no host here can render goes to the first linked of: ${policy.join(', ')}${unlinked.length > 0 ? ` (not linked yet: ${unlinked.join(', ')})` : ''}`] : []),
    ...(overflow ? [`  policy    a job submitted while the farm here is busy is quoted by: ${overflow.join(', ')} (overflow)`] : []),
  ];
}
