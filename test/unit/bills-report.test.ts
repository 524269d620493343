import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { keepIssuedBill, readBillFiles, type BillFile } from '../../sites/bills/index.ts';
import { billRow, billsCsv, billsJson, csvField, describeBills, filterBills, sumBills, type BillRow } from '../../tools/cli/bills-report.ts';
import { parseSince } from '../../tools/cli/bills.ts';

const DAY = 86_400_000;
const T0 = Date.parse('2026-12-01T10:00:00Z');

function aBillFile(o: { job: string; from?: string; project?: string; currency?: string; amountMinor?: number; at?: number; signed?: boolean; jobName?: string }): BillFile {
  return {
    bundleId: `bill-${o.job}`, from: o.from ?? 'v1', jobRef: { site: 'studio', job: o.job }, createdAt: o.at ?? T0, receivedAt: o.at ?? T0, signed: o.signed ?? true,
    ...(o.project !== undefined ? { project: o.project } : {}), jobName: o.jobName ?? o.job, user: 'ann',
    bill: { currency: o.currency ?? 'EUR', rate: { perCoreHourMinor: 100, perGbMinor: 0, minimumMinor: 0 }, frames: [], totals: { frames: 2, wallMs: 2_000, cpuMs: 1_800_000, bytes: 2_500_000_000, amountMinor: o.amountMinor ?? 50 } },
  };
}
const row = (f: BillFile, peer = f.from): BillRow => billRow({ file: `/d/${peer}/${f.jobRef.job}.json`, peer, content: f });

test('bills-report - sums per project and per vendor, per currency: EUR is never added to USD', () => {
  const rows = [
    row(aBillFile({ job: 'j1', project: 'show-a', amountMinor: 120 })),
    row(aBillFile({ job: 'j2', project: 'show-a', amountMinor: 80, from: 'v2' })),
    row(aBillFile({ job: 'j3', project: 'show-a', currency: 'USD', amountMinor: 999 })),
    row(aBillFile({ job: 'j4', project: 'show-b', amountMinor: 5 })),
  ];
  assert.deepEqual(sumBills(rows, 'project').map((s) => [s.key, s.currency, s.bills, s.amountMinor, s.frames]), [['show-a', 'EUR', 2, 200, 4], ['show-a', 'USD', 1, 999, 2], ['show-b', 'EUR', 1, 5, 2]]);
  assert.deepEqual(sumBills(rows, 'peer').map((s) => [s.key, s.currency, s.amountMinor]), [['v1', 'EUR', 125], ['v1', 'USD', 999], ['v2', 'EUR', 80]]);
  const text = describeBills(rows, [], { issued: false });
  assert.match(text, /^vendor +job +project +frames +CPU h +GB +amount +signature +date\n/);
  assert.match(text, /v1 +j1 +show-a +2 +0\.500 +2\.500 +1\.20 EUR +signed/);
  assert.match(text, /per project\nproject .*\nshow-a +2 +4 +1\.000 +5\.000 +2\.00 EUR\nshow-a +1 +2 .* 9\.99 USD\nshow-b/);
  assert.match(text, /per vendor\nvendor .*\nv1 +2 .* 1\.25 EUR\nv1 +1 .* 9\.99 USD\nv2 +1 .* 0\.80 EUR\n/);
  assert.match(describeBills([row(aBillFile({ job: 'j9', signed: false }))], [], { issued: false }), /NOT signed/);
});

test('bills-report - filters by project, vendor and date', () => {
  const rows = [
    row(aBillFile({ job: 'j1', project: 'show-a', at: T0 - 2 * DAY })),
    row(aBillFile({ job: 'j2', project: 'show-a', from: 'v2', at: T0 })),
    row(aBillFile({ job: 'j3', project: 'show-b', at: T0 + DAY })),
  ];
  const ids = (f: Parameters<typeof filterBills>[1]) => filterBills(rows, f).map((r) => r.job);
  assert.deepEqual(ids({}), ['j1', 'j2', 'j3']);
  assert.deepEqual(ids({ project: 'show-a' }), ['j1', 'j2']);
  assert.deepEqual(ids({ peer: 'v2' }), ['j2']);
  assert.deepEqual(ids({ since: parseSince('2026-12-01') }), ['j2', 'j3']);
  assert.deepEqual(ids({ since: parseSince('2026-12-01T10:00:01Z'), project: 'show-b' }), ['j3']);
  assert.throws(() => parseSince('yesterday'), /--since 'yesterday' is not a date/);
  assert.throws(() => parseSince('2026-13-45'), /is not a date/);
});

test('bills-report - CSV is RFC 4180 (header row, CRLF, quoted fields) and JSON carries the bills and the sums', () => {
  assert.equal(csvField('plain'), 'plain');
  assert.equal(csvField('a,b'), '"a,b"');
  assert.equal(csvField('say "hi"'), '"say ""hi"""');
  assert.equal(csvField('two\nlines'), '"two\nlines"');
  const rows = [row(aBillFile({ job: 'j1', project: 'show-a', jobName: 'shot 10, "final"', amountMinor: 7 })), row(aBillFile({ job: 'j2', project: 'show-a', currency: 'JPY', amountMinor: 1200 }))];
  const csv = billsCsv(rows, { issued: false });
  const lines = csv.split('\r\n');
  assert.equal(lines.at(-1), '', 'every record ends with CRLF');
  assert.equal(lines[0], 'vendor,job,job_name,user,project,frames,cpu_hours,gb,amount,amount_minor,currency,signed,date,file');
  assert.equal(lines[1], 'v1,j1,"shot 10, ""final""",ann,show-a,2,0.500,2.500,0.07,7,EUR,true,2026-12-01T10:00:00.000Z,/d/v1/j1.json');
  assert.equal(lines[2], 'v1,j2,j2,ann,show-a,2,0.500,2.500,1200,1200,JPY,true,2026-12-01T10:00:00.000Z,/d/v1/j2.json');
  assert.equal(billsCsv(rows, { issued: true }).split(',')[0], 'customer');
  const doc = billsJson(rows, [{ file: '/d/v1/bad.json', error: 'not JSON' }], { issued: false }) as Record<string, unknown[]>;
  assert.deepEqual(doc.perProject, [
    { project: 'show-a', currency: 'EUR', bills: 1, frames: 2, cpuMs: 1_800_000, bytes: 2_500_000_000, amountMinor: 7, amount: '0.07' },
    { project: 'show-a', currency: 'JPY', bills: 1, frames: 2, cpuMs: 1_800_000, bytes: 2_500_000_000, amountMinor: 1200, amount: '1200' },
  ]);
  assert.deepEqual((doc.perVendor as { vendor: string }[]).map((s) => s.vendor), ['v1', 'v1']);
  assert.equal((doc.bills![0] as { jobName: string }).jobName, 'shot 10, "final"');
  assert.deepEqual(doc.problems, [{ file: '/d/v1/bad.json', error: 'not JSON' }]);
});

test('bills-report - a bill file that does not parse is named, and the others are still read; an issued bill is kept once', async (t) => {
  const data = await mkdtemp(join(tmpdir(), 'rb-bills-'));
  t.after(() => rm(data, { recursive: true, force: true }));
  assert.deepEqual(await readBillFiles(data), { bills: [], problems: [] }, 'no folder: no bills');
  const dir = join(data, 'fed', 'bills', 'v1');
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'j1.bill-j1.json'), JSON.stringify(aBillFile({ job: 'j1', project: 'show-a' })));
  await writeFile(join(dir, 'j2.bill-j2.json'), '{"bundleId": "bill-j2", ');
  await writeFile(join(dir, 'j3.bill-j3.json'), JSON.stringify({ ...aBillFile({ job: 'j3' }), bill: { currency: 'EUR' } }));
  await writeFile(join(dir, 'notes.txt'), 'not a bill, not looked at');
  const read = await readBillFiles(data);
  assert.deepEqual(read.bills.map((b) => [b.peer, b.content.jobRef.job]), [['v1', 'j1']]);
  assert.deepEqual(read.problems.map((p) => p.file), [join(dir, 'j2.bill-j2.json'), join(dir, 'j3.bill-j3.json')]);
  assert.match(read.problems[0]!.error, /^not JSON: /);
  assert.match(read.problems[1]!.error, /^not a bill: \/bill\//);
  assert.match(describeBills(read.bills.map(billRow), read.problems, { issued: false }), /2 bill file\(s\) could not be read \(not counted\):\n  .*j2\.bill-j2\.json: not JSON/);

  // the vendor's copy of a bill it issued: written once, then left as it is
  const issued = { ...aBillFile({ job: 'j7', from: 'v1', amountMinor: 40 }), to: 'studio', localJob: 'l-7' };
  await keepIssuedBill(data, 'studio', issued);
  await keepIssuedBill(data, 'studio', { ...issued, bill: { ...issued.bill, totals: { ...issued.bill.totals, amountMinor: 99 } } });
  const mine = await readBillFiles(data, { issued: true });
  assert.deepEqual(mine.bills.map((b) => [b.peer, b.content.jobRef.job, b.content.bill.totals.amountMinor, b.content.localJob]), [['studio', 'j7', 40, 'l-7']]);
});
