import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import pino from 'pino';
import { LinkState, Role, subjects } from '../../protocol/index.ts';
import { newBundleId, writeBundle } from '../../sites/bundles/index.ts';
import { hotFolderDirs } from '../../sites/hotfolders/index.ts';
import { serveLinkRelease, startSiteLinks, type SiteLinksHandle } from '../../sites/links/index.ts';
import { startFedSites, waitLinkUp, type FedSite } from '../../test/helpers/fed-sites.ts';
import { formatFedReport, runFedFuzz, type FedFuzzReport } from './fuzz-fed.ts';
import { casesAndSeed } from './fuzz-args.ts';


/**
 * The federation fuzz on sites of its own (what `npm run chaos -- --fed` and
 * test/integration/fuzz-fed.test.ts run): three real nats-servers with leaf links
 * (test/helpers/fed-sites.ts), a site link on each, `link.release` served at the studio; v1 is the
 * hostile peer. Afterwards: both links up, a valid bundle crosses each way, and nothing in this
 * process threw (no unhandled rejection or exception, no error logged by a link).
 */
export interface FedFuzzRun {
  report: FedFuzzReport;
  /** Problems after the fuzzing (empty when the links and this process came through). */
  after: string[];
  /** Log lines of the studio's link about v1 that refused something (the one-way subjects' proof). */
  refusals: number;
}

interface LogLine {
  level: number;
  msg: string;
  site?: string;
  peer?: string;
  err?: { message?: string };
}

export async function fuzzFedSites(o: { cases: number; seed?: number; log?: (line: string) => void }): Promise<FedFuzzRun> {
  const src = await mkdtemp('/var/tmp/rb-fuzz-fed-');
  const f = await startFedSites();
  const conns: NatsConnection[] = [];
  const services: SiteLinksHandle[] = [];
  const logs: LogLine[] = [];
  const thrown: string[] = [];
  const onThrow = (err: unknown) => void thrown.push(String((err as Error)?.stack ?? err));
  process.on('unhandledRejection', onThrow);
  process.on('uncaughtException', onThrow);
  const connect = async (p: Promise<NatsConnection>) => {
    const nc = await p;
    conns.push(nc);
    return nc;
  };
  try {
    for (const v of f.vendors) await waitLinkUp(f.hub, v);
    const logger = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line) as LogLine) });
    let studio: SiteLinksHandle | undefined;
    for (const s of [f.hub, ...f.vendors]) {
      const farm = await connect(s.connectAs(Role.SiteLink));
      const peers = [];
      for (const p of s.links.peers) peers.push({ name: p.name, dmz: await connect(s.connectDmz(p.name)) });
      const h = await startSiteLinks({ site: s.name, dataDir: s.dir, farm, peers, log: logger, scanEveryMs: 200 });
      services.push(h);
      if (s === f.hub) {
        studio = h;
        await serveLinkRelease({ site: s.name, nc: farm, links: h, log: logger });
      }
    }
    const v1 = f.site('v1');
    const state = (peer: string) => studio!.status().find((l) => l.peer === peer)?.state;
    await until('the links up', () => state('v1') === LinkState.Up && state('v2') === LinkState.Up, 20_000);
    o.log?.('fed fuzz: links up, fuzzing');

    const report = await runFedFuzz({
      to: 'studio', from: 'v1', other: 'v2', cases: o.cases, ...(o.seed !== undefined ? { seed: o.seed } : {}),
      peerLink: await connect(v1.connectAs(Role.SiteLink)),
      peerDmz: await connect(v1.connectDmz('studio')),
      operator: await connect(f.hub.connectAs(Role.Operator)),
      wrong: [
        // an artist of v1 cannot speak for its link; v2's link cannot pose as v1
        { name: 'v1 artist', nc: await connect(v1.connectAs(Role.Artist)), subjects: [subjects.fedSvc('studio', 'v1', 'ping'), subjects.fed('studio', 'v1', 'link.hello')] },
        { name: 'v2 link', nc: await connect(f.site('v2').connectAs(Role.SiteLink)), subjects: [subjects.fedSvc('studio', 'v1', 'ping'), subjects.fed('studio', 'v1', 'link.hello')] },
        // at the studio, only operators release a quarantine and only intake feeds the scheduler a peer's work
        { name: 'studio artist', nc: await connect(f.hub.connectAs(Role.Artist)), subjects: [subjects.linkRelease('studio'), subjects.schedIntake('studio', 'v1'), subjects.schedRemote('studio', 'v1')] },
        { name: 'studio link', nc: await connect(f.hub.connectAs(Role.SiteLink)), subjects: [subjects.linkRelease('studio'), subjects.schedIntake('studio', 'v1'), subjects.schedRemote('studio', 'v1')] },
      ],
    });

    // each outbox message and hello the studio took from v1 was refused with a log line
    const oneWay = report.subjects.filter((s) => s.subject.startsWith('rbq.') || s.subject.startsWith('rb.fed.')).reduce((n, s) => n + s.sent, 0);
    const refusals = () => logs.filter((l) => l.site === 'studio' && l.peer === 'v1' && /refused/.test(l.msg)).length;
    const after: string[] = [];
    await until('the one-way messages refused', () => refusals() >= oneWay, 30_000).catch(() => after.push(`only ${refusals()} of ${oneWay} one-way messages were logged as refused`));
    const lie = () => logs.some((l) => l.site === 'studio' && l.msg === 'bundle refused' && new RegExp(`says it is from '${report.lie.claims}'`).test(l.err?.message ?? ''));
    await until('the lying manifest refused', lie, 30_000).catch(() => after.push(`v1's manifest claiming to be from ${report.lie.claims} was not refused`));
    if ((await readdir(hotFolderDirs(f.hub.dir, 'v1').incoming)).includes(`${report.lie.bundleId}.rbb`)) after.push('the lying bundle was written into incoming/v1/');
    // and the links go on: a valid bundle crosses each way
    for (const [from, to] of [[v1, f.hub], [f.hub, v1]] as const) {
      const name = await send(src, from, to.name);
      await until(`${name} at ${to.name}`, async () => (await readdir(hotFolderDirs(to.dir, from.name).incoming)).includes(name), 30_000)
        .catch(() => after.push(`a valid bundle from ${from.name} did not reach ${to.name} after the fuzzing`));
    }
    for (const peer of ['v1', 'v2']) if (state(peer) !== LinkState.Up) after.push(`the studio's link to ${peer} is ${state(peer)} after the fuzzing`);
    for (const l of logs) if (l.level >= 50) after.push(`logged an error: ${l.msg} ${l.err?.message ?? ''}`);
    for (const t of thrown) after.push(`thrown outside any handler: ${t}`);
    return { report, after, refusals: refusals() };
  } finally {
    process.off('unhandledRejection', onThrow);
    process.off('uncaughtException', onThrow);
    for (const s of services) await s.stop();
    for (const nc of conns) await nc.close().catch(() => {});
    await f.stop();
    await rm(src, { recursive: true, force: true });
  }
}

async function send(src: string, from: FedSite, to: string): Promise<string> {
  const dir = join(src, randomBytes(4).toString('hex'));
  await mkdir(dir);
  await writeFile(join(dir, 'a.bin'), randomBytes(10_000));
  const bundleId = newBundleId();
  const name = `${bundleId}.rbb`;
  await writeBundle({ head: { kind: 'status', bundleId, from: from.name, to, route: [] }, files: [join(dir, 'a.bin')], out: join(src, name), dataDir: from.dir });
  await rename(join(src, name), join(hotFolderDirs(from.dir, to).outgoing, name));
  return name;
}

async function until(what: string, ok: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const USAGE = `usage: node --import tsx tools/chaos/fuzz-fed-main.ts [--cases N] [--seed S] [--json]

Starts three nats-servers with leaf links (a studio hub, vendors v1 and v2) and a site link on
each, fuzzes the studio's federation subjects as a hostile v1 with N cases a subject (default 200),
tries wrong credentials, checks that the links came through, prints the report and exits 1 on any
finding. --seed replays a run.`;

async function main(): Promise<number> {
  const { parseArgs } = await import('node:util');
  const { values } = parseArgs({ options: { cases: { type: 'string', default: '200' }, seed: { type: 'string' }, json: { type: 'boolean', default: false }, help: { type: 'boolean', default: false } } });
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
  const run = await fuzzFedSites({ cases, ...(seed !== undefined ? { seed } : {}), log: (l) => console.error(l) });
  console.log(values.json ? JSON.stringify(run, null, 2) : formatFedRun(run));
  return fedPassed(run) ? 0 : 1;
}

export const fedPassed = (run: FedFuzzRun) => run.report.findings.length === 0 && run.after.length === 0;

export function formatFedRun(run: FedFuzzRun): string {
  return [
    formatFedReport(run.report),
    `  one-way messages logged as refused by the studio's link: ${run.refusals}`,
    ...(run.after.length ? run.after.map((a) => `  AFTER: ${a}`) : ['  after: both links up, a valid bundle crossed each way, nothing thrown']),
    ...(fedPassed(run) ? [] : [`fed fuzz: findings; replay with node --import tsx tools/chaos/fuzz-fed-main.ts --seed ${run.report.seed}`]),
  ].join('\n');
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
