import type { Command } from 'commander';
import type { PackageInfo } from '../../protocol/index.ts';
import { isToken } from '../../protocol/subjects.ts';
// sim-stats.ts imports nothing: `renderbus --help` stays fast
import { Histogram, type SimStatsSnapshot } from '../../actors/render-slot/sim-stats.ts';
import { ExitCode, UsageError } from './cli-error.ts';
import type { CommandContext } from './command-context.ts';
import type { Io } from './format.ts';
import { checkGlobals } from './global-options.ts';
import { parseCount, parseList, parsePackages } from './option-values.ts';

export interface SimFarmOptions {
  hosts?: string;
  slots?: string;
  frameMs?: string;
  jitter?: string;
  failRate?: string;
  heartbeat?: string;
  spread?: string;
  hostPrefix?: string;
  first?: string;
  packages?: string;
  licenses?: string;
  stats?: string;
  json?: boolean;
}

const HELP = `
Every host is a real render server (it registers, heartbeats, reports its leases, takes
assignments and results carry its next tasks) whose slots render by waiting --frame-ms per
frame (± --jitter) and report a done result with plausible figures; no process runs and no file
is written. All hosts of the process share one NATS connection. Hosts are named
<host-prefix><n> for n from --first: run several processes with distinct ranges.

Prints what the slots did every --stats seconds (--json: one JSON object per line, with
latency histograms); logs (RENDERBUS_LOG, default warn) go to stderr.

Example, 10,000 hosts × 16 slots in four processes:
  renderbus sim-farm --nats nats://head:4222 --hosts 2500 --slots 16 --frame-ms 8000 --first 0
  renderbus sim-farm --nats nats://head:4222 --hosts 2500 --slots 16 --frame-ms 8000 --first 2500   (and so on)`;

/** Adds `renderbus sim-farm` to the command tree (main.ts); the farm's modules load only when it runs. */
export function addSimFarmCommand(program: Command, io: Io, onResult: (code: number, command: string) => void): void {
  program
    .command('sim-farm')
    .summary('run many simulated render hosts whose slots render by waiting (scale tests)')
    .description('run many simulated render hosts in this process, against the farm\'s NATS: real render servers whose slots render by waiting (for scale tests of the scheduler and the registry)')
    .option('--hosts <n>', 'simulated render hosts (default: 100)')
    .option('--slots <n>', 'slots per host (default: 16)')
    .option('--frame-ms <ms>', 'how long a frame renders, in ms (default: 8000)')
    .option('--jitter <fraction>', 'each render lasts frame-ms × (1 ± jitter), 0 to 1 (default: 0.1)')
    .option('--fail-rate <fraction>', 'the fraction of tasks that fail, 0 to 1 (default: 0); a job fails after its maxTaskErrors failed attempts (default 50): raise it for long runs')
    .option('--heartbeat <seconds>', 'heartbeat and lease-report period of each host (default: 10)')
    .option('--spread <seconds>', 'hosts start spread over this long, so their heartbeats are too (default: the heartbeat period)')
    .option('--host-prefix <prefix>', "host names are <prefix><n> (default: 'sim-')")
    .option('--first <n>', 'number of the first host (default: 0)')
    .option('--packages <list>', "packages every host offers, as name@version (default: 'povray@3.7.0.10,blender@4.1')")
    .option('--licenses <list>', 'licenses every host holds, comma-separated')
    .option('--stats <seconds>', 'print what the slots did this often; 0 prints only at the end (default: 10)')
    .option('--json', 'print the figures as JSON lines')
    .addHelpText('after', HELP)
    .action(async (...params: unknown[]) => {
      const cmd = params[params.length - 1] as Command;
      const code = await simFarmCommand({ args: [], opts: cmd.opts<SimFarmOptions>(), globals: program.opts(), io });
      onResult(code, 'sim-farm');
    });
}

/** The sim-farm flags, checked (exported for tests). */
export function simFarmOptions(o: SimFarmOptions) {
  const heartbeatMs = o.heartbeat !== undefined ? parseSeconds('--heartbeat', o.heartbeat, 0.05, 3_600) : 10_000;
  const hostPrefix = o.hostPrefix ?? 'sim-';
  const hosts = o.hosts !== undefined ? parseCount('--hosts', o.hosts, { min: 1, max: 100_000 }) : 100;
  const firstHost = o.first !== undefined ? parseCount('--first', o.first, { min: 0, max: 10_000_000 }) : 0;
  if (!isToken(`${hostPrefix}${firstHost + hosts - 1}`)) {
    throw new UsageError(`--host-prefix: '${hostPrefix}' must be lower-case letters, digits, '-' or '_', starting with a letter or digit (host names are <prefix><n>, at most 64 characters)`);
  }
  return {
    hosts,
    slots: o.slots !== undefined ? parseCount('--slots', o.slots, { min: 1, max: 1024 }) : 16,
    frameMs: o.frameMs !== undefined ? parseNumber('--frame-ms', o.frameMs, 0, 86_400_000) : 8_000,
    jitter: o.jitter !== undefined ? parseNumber('--jitter', o.jitter, 0, 1) : 0.1,
    failRate: o.failRate !== undefined ? parseNumber('--fail-rate', o.failRate, 0, 1) : 0,
    heartbeatMs,
    spreadMs: o.spread !== undefined ? parseSeconds('--spread', o.spread, 0, 3_600) : heartbeatMs,
    hostPrefix,
    firstHost,
    packages: o.packages !== undefined ? parsePackages('--packages', o.packages) : undefined as PackageInfo[] | undefined,
    licenses: o.licenses !== undefined ? parseList('--licenses', o.licenses) : undefined,
    statsMs: o.stats !== undefined ? parseSeconds('--stats', o.stats, 0, 86_400) : 10_000,
    json: o.json === true,
  };
}

function parseNumber(flag: string, value: string, min: number, max: number): number {
  const text = String(value).trim();
  const n = /^\d+(\.\d+)?$/.test(text) ? Number(text) : NaN;
  if (!Number.isFinite(n)) throw new UsageError(`${flag}: '${value}' is not a number (${min}-${max})`);
  if (n < min || n > max) throw new UsageError(`${flag}: ${n} is out of range (${min}-${max})`);
  return n;
}

/** Seconds (decimals allowed) → whole ms. */
function parseSeconds(flag: string, value: string, min: number, max: number): number {
  return Math.round(parseNumber(flag, value, min, max) * 1000);
}

/** `renderbus sim-farm`: runs the simulated hosts until SIGINT/SIGTERM. */
export async function simFarmCommand(c: CommandContext<SimFarmOptions>): Promise<number> {
  const o = simFarmOptions(c.opts);
  const [{ default: pino }, { connectBus }, { locateFarm }, { startSimulatedFarm }, { untilSignal }] = await Promise.all([
    import('pino'),
    import('../../actors/bus/index.ts'),
    import('../../sites/locate-farm.ts'),
    import('../../actors/render-server/index.ts'),
    import('./signals.ts'),
  ]);
  const where = await locateFarm(checkGlobals(c.globals));
  // stdout carries the figures; the root logger of this command writes to stderr
  const log = pino({ name: 'renderbus-sim-farm', level: process.env.RENDERBUS_LOG ?? 'warn' }, pino.destination({ dest: 2, sync: false }));
  const nc = await connectBus({ servers: where.servers, name: 'renderbus-sim-farm', creds: where.creds, log });
  const sig = untilSignal();
  const farm = startSimulatedFarm({
    nc, site: where.site, log, hosts: o.hosts, slots: o.slots, frameMs: o.frameMs, jitter: o.jitter, failRate: o.failRate,
    heartbeatMs: o.heartbeatMs, spreadMs: o.spreadMs, hostPrefix: o.hostPrefix, firstHost: o.firstHost,
    ...(o.packages ? { packages: o.packages } : {}), ...(o.licenses ? { licenses: o.licenses } : {}),
  });
  const t0 = performance.now();
  let last = { at: t0, snap: farm.stats.snapshot(true) };
  const print = () => {
    const at = performance.now();
    const snap = farm.stats.snapshot(true);
    const line = { kind: 'sim-farm', at: Date.now(), uptimeMs: Math.round(at - t0), intervalMs: Math.round(at - last.at), hosts: o.hosts, hostsStarted: farm.servers.length, slots: o.slots, ...snap };
    c.io.stdout.write(o.json ? `${JSON.stringify(line)}\n` : `${describe(line, last.snap)}\n`);
    last = { at, snap };
  };
  const timer = o.statsMs > 0 ? setInterval(print, o.statsMs) : undefined;
  // runs until a signal, or until a host could not start
  const failed = farm.ready.then(() => new Promise<never>(() => {}), (err: unknown) => err);
  const first = await Promise.race([sig.signal.then(() => null), failed]);
  clearInterval(timer);
  try {
    await farm.stop();
    print();
    await nc.drain().catch(() => nc.close());
  } finally {
    sig.dispose();
    log.flush();
  }
  if (first) throw first;
  return ExitCode.Ok;
}

const ms = (x: number) => (Number.isFinite(x) ? x.toFixed(x < 10 ? 2 : 0) : '-');

/** One line for people: the slots, the rates over the interval, the latencies. */
function describe(l: SimStatsSnapshot & { uptimeMs: number; intervalMs: number; hosts: number; hostsStarted: number; slots: number }, prev: SimStatsSnapshot): string {
  const per = (n: number) => ((n * 1000) / Math.max(1, l.intervalMs)).toFixed(0);
  const wait = Histogram.from(l.wait);
  const rtt = Histogram.from(l.resultRtt);
  const started = l.started - prev.started;
  const share = (k: keyof SimStatsSnapshot['startedFrom']) => (started > 0 ? `${Math.round(((l.startedFrom[k] - prev.startedFrom[k]) * 100) / started)}%` : '-');
  return [
    `[${(l.uptimeMs / 1000).toFixed(1)} s] hosts ${l.hostsStarted}/${l.hosts}`,
    `slots busy ${l.busy}/${l.hosts * l.slots}`,
    `started ${per(started)}/s (in hand ${share('hand')}, with a result ${share('reply')}, assigned ${share('assign')})`,
    `done ${per(l.done - prev.done)}/s`,
    `wait p50 ${ms(wait.quantile(0.5))} p99 ${ms(wait.quantile(0.99))} max ${ms(wait.max)} ms`,
    `result round trip p50 ${ms(rtt.quantile(0.5))} p99 ${ms(rtt.quantile(0.99))} ms`,
    `retries ${l.resultRetries - prev.resultRetries}`,
  ].join(' · ');
}
