import { parseArgs } from 'node:util';
import { runChaos, type ChaosOptions } from './driver.ts';
import { formatReport } from './report.ts';
import { fuzzOwnFarm } from './fuzz-main.ts';
import { formatReport as formatFuzzReport, passed as fuzzPassed } from './fuzz.ts';
import { fedPassed, formatFedRun, fuzzFedSites } from './fuzz-fed-main.ts';

/*
 * npm run chaos -- [--minutes N | --seconds N] [--seed N] [--json] [--keep]
 *   [--render-servers N] [--slots N] [--load F] [--pov-frames N] [--no-site-kill] [--fuzz-cases N]
 *   [--fed [--fed-cases N]] [--cluster] [--schedulers N] [--registries N]
 * --cluster runs three clustered nats-servers (killed one at a time, same ports and store), every
 * actor given the three URLs; --schedulers/--registries start more of each (one leads, the others
 * stand by; default 2 each with --cluster, else 1).
 * First fuzzes every request subject (tools/chaos/fuzz.ts, N cases each, default 1000; 0 skips
 * it); with --fed, a site's federation subjects on three linked nats-servers (tools/chaos/fuzz-fed.ts,
 * N cases a subject, default 500); then runs a real farm as separate processes under chaos (tools/chaos/driver.ts), prints
 * both reports and exits 0 when every check passed, 1 when one failed, 2 on bad usage, 130 when
 * interrupted.
 */
const USAGE = `usage: npm run chaos -- [--minutes N | --seconds N] [--seed N] [--json] [--keep]
         [--render-servers N] [--slots N] [--load F] [--pov-frames N] [--no-site-kill] [--fuzz-cases N]
         [--fed [--fed-cases N]] [--cluster] [--schedulers N] [--registries N]`;

function num(name: string, v: string | undefined, o: { min: number; integer?: boolean }): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < o.min || (o.integer && !Number.isInteger(n))) {
    process.stderr.write(`chaos: --${name} must be ${o.integer ? 'a whole number' : 'a number'} of at least ${o.min}, not '${v}'\n${USAGE}\n`);
    process.exit(2);
  }
  return n;
}

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        minutes: { type: 'string' },
        seconds: { type: 'string' },
        seed: { type: 'string' },
        json: { type: 'boolean' },
        keep: { type: 'boolean' },
        'render-servers': { type: 'string' },
        slots: { type: 'string' },
        load: { type: 'string' },
        'pov-frames': { type: 'string' },
        'no-site-kill': { type: 'boolean' },
        'fuzz-cases': { type: 'string' },
        fed: { type: 'boolean' },
        'fed-cases': { type: 'string' },
        cluster: { type: 'boolean' },
        schedulers: { type: 'string' },
        registries: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    process.stderr.write(`chaos: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const o: ChaosOptions = {};
  const minutes = num('minutes', values.minutes, { min: 0.1 });
  const seconds = num('seconds', values.seconds, { min: 5 });
  const seed = num('seed', values.seed, { min: 0, integer: true });
  const rs = num('render-servers', values['render-servers'], { min: 1, integer: true });
  const slots = num('slots', values.slots, { min: 1, integer: true });
  const load = num('load', values.load, { min: 0.05 });
  const pov = num('pov-frames', values['pov-frames'], { min: 0, integer: true });
  if (minutes !== undefined) o.minutes = minutes;
  if (seconds !== undefined) o.seconds = seconds;
  if (seed !== undefined) o.seed = seed;
  if (rs !== undefined) o.renderServers = rs;
  if (slots !== undefined) o.slots = slots;
  if (load !== undefined) o.load = load;
  if (pov !== undefined) o.povFrames = pov;
  if (values['no-site-kill']) o.siteKill = false;
  if (values.keep) o.keep = true;
  if (values.cluster) o.cluster = true;
  const schedulers = num('schedulers', values.schedulers, { min: 1, integer: true });
  const registries = num('registries', values.registries, { min: 1, integer: true });
  // a cluster is for a farm that must not stop: its scheduler and registry have a standby each
  const standbys = values.cluster ? 2 : undefined;
  if ((schedulers ?? standbys) !== undefined) o.schedulers = (schedulers ?? standbys)!;
  if ((registries ?? standbys) !== undefined) o.registries = (registries ?? standbys)!;

  const fuzzCases = num('fuzz-cases', values['fuzz-cases'], { min: 0, integer: true }) ?? 1000;
  const fedCases = num('fed-cases', values['fed-cases'], { min: 1, integer: true }) ?? 500;

  let fuzzOk = true;
  if (fuzzCases > 0) {
    const fuzz = await fuzzOwnFarm({ cases: fuzzCases, ...(seed !== undefined ? { seed } : {}) });
    fuzzOk = fuzzPassed(fuzz);
    if (values.json) process.stdout.write(`${JSON.stringify({ fuzz }, null, 2)}\n`);
    else process.stdout.write(`${formatFuzzReport(fuzz)}\n${fuzzOk ? '' : `fuzz: findings; replay with node --import tsx tools/chaos/fuzz-main.ts --seed ${fuzz.seed}\n`}\n`);
  }
  if (values.fed) {
    const fed = await fuzzFedSites({ cases: fedCases, ...(seed !== undefined ? { seed } : {}) });
    fuzzOk &&= fedPassed(fed);
    if (values.json) process.stdout.write(`${JSON.stringify({ fed }, null, 2)}\n`);
    else process.stdout.write(`${formatFedRun(fed)}\n\n`);
  }
  const report = await runChaos(o);
  if (values.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else process.stdout.write(`${formatReport(report)}\n`);
  if (report.interrupted) return 130;
  return report.ok && fuzzOk ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
    // a handle left open by a library must not keep a finished run alive
    setTimeout(() => process.exit(code), 3_000).unref();
  },
  (err: unknown) => {
    const dir = (err as { chaosDir?: string }).chaosDir;
    process.stderr.write(`chaos: ${(err as Error).stack ?? String(err)}\n${dir ? `run directory kept: ${dir}\n` : ''}`);
    process.exitCode = 1;
    setTimeout(() => process.exit(1), 3_000).unref();
  },
);
