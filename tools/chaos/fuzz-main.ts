import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Role } from '../../protocol/index.ts';
import { keyOf, natsDir, prepareSiteAuth } from '../../sites/auth/index.ts';
import { startNatsServer } from '../../sites/nats-server.ts';
import { silentLogger } from '../../sites/logger.ts';
import { formatReport, passed, runFuzz, type FuzzReport } from './fuzz.ts';
import { FARM_OPERATOR, inProcessFarmPrincipals, seedFarmState, startInProcessFarm } from './fuzz-farm.ts';
import { fuzzPrincipals } from './fuzz-senders.ts';
import { casesAndSeed } from './fuzz-args.ts';


const USAGE = `usage: node --import tsx tools/chaos/fuzz-main.ts [--cases N] [--seed S] [--only SUBJECT#CASE]... [--json]

Starts a nats-server and a farm in this process (registry, scheduler, one render server), gives
it a finished job and a waiting one, fuzzes every request subject of protocol/catalog.ts with N
cases each (default 500), prints the report and exits 1 on any finding. --seed replays a run;
--only (with its seed) replays single cases, e.g. --only 'rb.<site>.sched.submit#17'.`;

export interface FuzzMainOptions {
  cases: number;
  seed?: number;
  only?: { subject: string; index: number }[];
  log?: (line: string) => void;
}

/** One fuzz run against a farm of its own: what `npm run chaos` calls. */
export async function fuzzOwnFarm(o: FuzzMainOptions): Promise<FuzzReport> {
  const dir = await mkdtemp(join(tmpdir(), 'rb-fuzz-'));
  const site = `fz${randomUUID().slice(0, 8)}`;
  const host = 'fuzz-node';
  // an authenticated bus, as a farm's: a credential for each actor and for each role the fuzzer sends as
  const auth = await prepareSiteAuth(dir, site, [...inProcessFarmPrincipals(host), ...fuzzPrincipals({ host, user: FARM_OPERATOR })]);
  const nats = await startNatsServer({ dir: natsDir(dir), host: '127.0.0.1', port: -1, auth: { users: auth.users } });
  try {
    const creds = async (_site: string, role: Role, name: string) => {
      const c = auth.creds.get(keyOf({ role, name }));
      if (!c) throw new Error(`fuzz-main issued no credential for ${role} ${name}`);
      return c;
    };
    const farm = await startInProcessFarm({ url: nats.url, log: silentLogger(), site, host, creds });
    try {
      await seedFarmState(farm, join(dir, 'farm'));
      return await runFuzz({
        nc: farm.nc, connectAs: farm.connectAs, user: FARM_OPERATOR, site: farm.site, host: farm.host, cases: o.cases, concurrency: 16,
        ...(o.seed !== undefined ? { seed: o.seed } : {}), ...(o.only ? { only: o.only } : {}), ...(o.log ? { log: o.log } : {}),
      });
    } finally {
      await farm.stop();
    }
  } finally {
    await nats.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      cases: { type: 'string', default: '500' },
      seed: { type: 'string' },
      only: { type: 'string', multiple: true },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const numbers = casesAndSeed(values);
  if (!numbers) {
    console.error(USAGE);
    return 2;
  }
  const { cases, seed } = numbers;
  const only = values.only?.map((s) => {
    const at = s.lastIndexOf('#');
    return { subject: s.slice(0, at), index: Number(s.slice(at + 1)) };
  });
  const report = await fuzzOwnFarm({ cases, ...(seed !== undefined ? { seed } : {}), ...(only ? { only } : {}), log: (l) => console.error(l) });
  console.log(values.json ? JSON.stringify(report, null, 2) : formatReport(report));
  if (!passed(report)) console.error(`fuzz: findings; replay with --seed ${report.seed}`);
  return passed(report) ? 0 : 1;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
