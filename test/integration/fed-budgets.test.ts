import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FarmError, Role, type BundleBill, type JobSpec } from '../../protocol/index.ts';
import { writeBundle } from '../../sites/bundles/index.ts';
import { dropFile, hotFolderDirs, type HotOutcome } from '../../sites/hotfolders/index.ts';
import { loadSiteKey, type SiteKey } from '../../sites/links/index.ts';
import { rb, rbAs, TestFarm, waitUntil, type ActorProcess } from '../helpers/farm.ts';

// Bills kept and summed, and project budgets (docs/federation.md, "Bills and budgets"). One farm
// named `studio` with peer `v1` and no link, as in fed-outsource.test.ts: real nats-server,
// scheduler, the studio's intake in this process; vendor v1 is played by hand, writing bill
// bundles (some signed with v1's site key) into incoming/v1.

let farm: TestFarm;
let scheduler: ActorProcess;
let v1Key: SiteKey;
const outcomes: HotOutcome[] = [];
const jobs: Record<string, string> = {};

before(async () => {
  farm = await TestFarm.start({ site: 'studio', peers: ['v1'], tmpBase: '/var/tmp' });
  v1Key = await loadSiteKey(join(farm.dir, 'v1-data'));
  scheduler = await farm.scheduler();
  await farm.studioIntake({ peerKey: () => v1Key.publicKey, allowUnsigned: () => true, onOutcome: (_peer, o) => outcomes.push(o) });
});
after(async () => {
  await farm?.stop();
});

/** A small job sent to v1 (a command renderer: nothing renders here). */
async function outsourced(name: string, project: string, more: Partial<JobSpec> = {}): Promise<string> {
  const scene = await farm.writeScene(`${name}.pov`);
  const spec: JobSpec = { name, scene, renderer: 'command', command: 'sh -c "echo {frame} > {output}"', frames: '1-2', output: { dir: join(farm.dir, `out-${name}`), pattern: 'f_####.txt' }, site: 'v1', project, ...more };
  return farm.submit(spec);
}

/** v1's bill for a job: written as v1 would (signed with its key, or not), dropped into incoming/v1, taken in by the intake. */
async function billFromV1(jobId: string, currency: string, amountMinor: number, o: { signed: boolean }): Promise<void> {
  const bill: BundleBill = {
    currency, rate: { perCoreHourMinor: 100, perGbMinor: 10, minimumMinor: 0 },
    frames: [1, 2].map((frame) => ({ frame, host: 'v1-node', wallMs: 1_000, cpuMs: 900_000, bytes: 250_000_000 })),
    totals: { frames: 2, wallMs: 2_000, cpuMs: 1_800_000, bytes: 500_000_000, amountMinor },
  };
  const staging = join(farm.dir, 'vendor-out');
  await mkdir(staging, { recursive: true });
  const name = `bill-${jobId}.rbb`;
  const out = join(staging, name);
  await rm(out, { force: true });
  await writeBundle({ head: { kind: 'bill', bundleId: `bill-${jobId}`, from: 'v1', to: 'studio', route: ['v1'], jobRef: { site: 'studio', job: jobId }, bill }, files: [], out, dataDir: join(farm.dir, 'v1-data'), ...(o.signed ? { sign: v1Key } : {}) });
  const seen = outcomes.length;
  await dropFile(hotFolderDirs(farm.dataDir, 'v1').incoming, name, out);
  const got = await waitUntil(`the intake's outcome of ${name}`, () => outcomes.slice(seen).find((x) => x.name === name && x.to !== 'retry'), 20_000);
  assert.equal(got.to, 'processed', got.error?.message);
}

const refusal = async (spec: Promise<string>): Promise<FarmError> => {
  try {
    await spec;
  } catch (err) {
    assert.ok(err instanceof FarmError, String(err));
    return err;
  }
  return assert.fail('not refused');
};

test('fed-budgets - renderbus bills lists and sums the vendors\' bills; a budget below the spend refuses the next job for v1, not local ones', async () => {
  jobs.a1 = await outsourced('a1', 'show-a');
  jobs.a2 = await outsourced('a2', 'show-a');
  jobs.b1 = await outsourced('b1', 'show-b');
  jobs.held = await outsourced('held', 'show-a', { hold: true }); // held: it goes out when released
  await billFromV1(jobs.a1, 'EUR', 320, { signed: true });
  await billFromV1(jobs.a2, 'USD', 900, { signed: false });
  await billFromV1(jobs.b1, 'EUR', 45, { signed: true });
  // a bill file that does not parse: named, and the listing stands
  await writeFile(join(farm.dataDir, 'fed', 'bills', 'v1', 'broken.json'), '{"bundleId": ');

  const list = rb(farm, 'bills', '--data', farm.dataDir);
  assert.equal(list.code, 0, list.stderr);
  const line = (jobId: string) => list.stdout.split('\n').find((l) => l.includes(jobId)) ?? '';
  assert.match(line(jobs.a1), /^v1 +\S+ +show-a +2 +0\.500 +0\.500 +3\.20 EUR +signed +\d{4}-/);
  assert.match(line(jobs.a2), /show-a +2 .* 9\.00 USD +NOT signed/);
  assert.match(line(jobs.b1), /show-b +2 .* 0\.45 EUR +signed/);
  assert.match(list.stdout, /per project\n.*\nshow-a +1 +2 +0\.500 +0\.500 +3\.20 EUR\nshow-a +1 +2 +0\.500 +0\.500 +9\.00 USD\nshow-b +1 .* 0\.45 EUR\n/);
  assert.match(list.stdout, /per vendor\n.*\nv1 +2 +4 +1\.000 +1\.000 +3\.65 EUR\nv1 +1 .* 9\.00 USD\n/);
  assert.match(list.stdout, /1 bill file\(s\) could not be read \(not counted\):\n  .*\/fed\/bills\/v1\/broken\.json: not JSON/);

  const csv = rb(farm, 'bills', '--data', farm.dataDir, '--project', 'show-a', '--csv');
  assert.equal(csv.code, 0, csv.stderr);
  const rows = csv.stdout.split('\r\n');
  assert.equal(rows[0], 'vendor,job,job_name,user,project,frames,cpu_hours,gb,amount,amount_minor,currency,signed,date,file');
  assert.deepEqual(rows.slice(1, -1).map((r) => r.split(',').slice(0, 13).filter((_, i) => [1, 2, 3, 4, 8, 10, 11].includes(i))).sort(), [
    [jobs.a1, 'a1', 'op', 'show-a', '3.20', 'EUR', 'true'],
    [jobs.a2, 'a2', 'op', 'show-a', '9.00', 'USD', 'false'],
  ].sort());
  assert.match(csv.stderr, /broken\.json: not JSON/);
  const none = JSON.parse(rb(farm, 'bills', '--data', farm.dataDir, '--json', '--vendor', 'v1', '--since', '2999-01-01').stdout) as { bills: unknown[] };
  assert.deepEqual(none.bills, []);

  // a budget below what show-a spent in EUR (3.20): the next job of show-a for v1 is refused, with why
  const set = rb(farm, 'budget', 'show-a', '3', 'EUR');
  assert.equal(set.code, 0, set.stderr);
  assert.match(set.stdout, /show-a +3\.00 EUR +3\.20 EUR +-0\.20 EUR \(spent: no new outsourcing\) +also 9\.00 USD \(other currency: not counted\)/);
  const err = await refusal(outsourced('a3', 'show-a'));
  assert.equal(err.code, 'RB_BUDGET_EXCEEDED');
  assert.match(err.message, /^job not sent to v1: project 'show-a' has spent 3\.20 EUR of its budget of 3\.00 EUR/);
  const cli = rb(farm, 'submit', await farm.writeScene('a4.pov'), '--frames', '1-2', '--outsource', 'v1', '--project', 'show-a', '--output', join(farm.dir, 'out-a4'));
  assert.equal(cli.code, 1, cli.stderr);
  assert.match(cli.stderr, /project 'show-a' has spent 3\.20 EUR of its budget of 3\.00 EUR/);
  // a held job for v1 is not released to it either (that would be new outsourcing); it stays held
  const release = rb(farm, 'release', jobs.held);
  assert.equal(release.code, 1, release.stderr);
  assert.match(release.stderr, new RegExp(`cannot release job ${jobs.held} to v1: project 'show-a' has spent 3\\.20 EUR`));
  assert.equal((await farm.job(jobs.held)).state, 'held');
  // local rendering is never stopped, and other projects go on sending
  const local = await farm.submit({ scene: await farm.writeScene('a5.pov'), frames: '1', project: 'show-a', hold: true, output: { dir: join(farm.dir, 'out-a5') } });
  assert.equal((await farm.job(local)).state, 'held', 'taken in, held here: never sent');
  jobs.b2 = await outsourced('b2', 'show-b');
  assert.equal((await farm.job(jobs.b2)).state, 'outsourced');

  // artists read the budgets; changing one is refused by the server itself (op.budgets is operators' only)
  const ann = await farm.credsFile(Role.Artist, 'ann');
  const read = rbAs(farm, ann, 'budget');
  assert.equal(read.code, 0, read.stderr);
  assert.match(read.stdout, /show-a +3\.00 EUR/);
  const denied = rbAs(farm, ann, 'budget', 'show-a', '1000', 'EUR');
  assert.equal(denied.code, 1);
  assert.match(denied.stderr, /the NATS server refused rb\.studio\.op\.budgets to this credential \(artist ann\)/);
  assert.match(rb(farm, 'budget').stdout, /show-a +3\.00 EUR/, 'unchanged');
});

test('fed-budgets - a restarted scheduler keeps budgets and spend; its policy keeps a spent project\'s unrenderable job here, saying why', async () => {
  await scheduler.kill('SIGKILL');
  await farm.registry();
  await farm.renderServer('node-a', 1);
  scheduler = await farm.scheduler(['--outsource-unrenderable', 'v1']);
  const listed = rb(farm, 'budget');
  assert.equal(listed.code, 0, listed.stderr);
  assert.match(listed.stdout, /show-a +3\.00 EUR +3\.20 EUR +-0\.20 EUR/);
  assert.match(listed.stdout, /show-b +- +0\.45 EUR/);
  assert.equal((await refusal(outsourced('a6', 'show-a'))).code, 'RB_BUDGET_EXCEEDED');

  // a job no host here can render: show-a's stays here with the budget's reason, show-b's goes to v1
  const blend = (name: string, project: string) => farm.submit({ name, scene: join(farm.dir, 'a1.pov'), frames: '1', project, requirements: { packages: ['houdini@*'] }, output: { dir: join(farm.dir, `out-${name}`) } });
  const kept = await blend('blend-a', 'show-a');
  const sent = await blend('blend-b', 'show-b');
  const waiting = await waitUntil('show-a\'s job to wait with the budget\'s reason', async () => {
    const j = await farm.job(kept);
    return /budget/.test(j.waiting ?? '') ? j : undefined;
  }, 20_000);
  assert.equal(waiting.state, 'queued');
  assert.match(waiting.waiting!, /no host matches the requirements .*; not outsourced by the site's policy: project 'show-a' has spent 3\.20 EUR of its budget of 3\.00 EUR, so it is not sent to v1$/);
  await waitUntil('show-b\'s job to be outsourced by the policy', async () => (await farm.job(sent)).state === 'outsourced', 20_000);
  assert.equal((await farm.job(kept)).state, 'queued', 'still here after the policy sent the other');
  assert.equal(existsSync(join(hotFolderDirs(farm.dataDir, 'v1').outgoing, `job-${kept}.rbb`)), false);

  // cleared: it goes
  assert.equal(rb(farm, 'budget', 'show-a', '--clear').code, 0);
  await waitUntil('show-a\'s job to be outsourced once the budget is cleared', async () => (await farm.job(kept)).state === 'outsourced', 20_000);
});
