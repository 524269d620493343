import { formatMinor } from '../../protocol/index.ts';
import type { BillProblem, ReadBill } from '../../sites/bills/index.ts';
import { dateTime, table } from './format.ts';

/*
 * `renderbus bills`, pure: one row per bill, the filters, the sums per project and per peer (per
 * currency: EUR is never added to USD), and the three outputs (text, CSV, JSON).
 */

/** One bill as the listing shows it. `peer` is the vendor (kept bills) or the customer (`--issued`). */
export interface BillRow {
  peer: string;
  job: string;
  jobName: string;
  user: string;
  project: string;
  frames: number;
  cpuMs: number;
  bytes: number;
  currency: string;
  amountMinor: number;
  signed: boolean;
  /** When it arrived (kept bills), or when it was issued. */
  at: number;
  file: string;
}

export interface BillFilter {
  project?: string;
  peer?: string;
  /** Bills from this time on (ms since the epoch). */
  since?: number;
}

/** A sum of bills for one project or peer in one currency. */
export interface BillSum {
  key: string;
  currency: string;
  bills: number;
  frames: number;
  cpuMs: number;
  bytes: number;
  amountMinor: number;
}

export function billRow(b: ReadBill): BillRow {
  const c = b.content;
  const t = c.bill.totals;
  return {
    peer: b.peer, job: c.jobRef.job, jobName: c.jobName ?? '', user: c.user ?? '', project: c.project ?? 'unknown',
    frames: t.frames, cpuMs: t.cpuMs, bytes: t.bytes, currency: c.bill.currency, amountMinor: t.amountMinor, signed: c.signed,
    at: c.receivedAt ?? c.createdAt, file: b.file,
  };
}

export function filterBills(rows: readonly BillRow[], f: BillFilter): BillRow[] {
  return rows
    .filter((r) => (f.project === undefined || r.project === f.project) && (f.peer === undefined || r.peer === f.peer) && (f.since === undefined || r.at >= f.since))
    .sort((a, b) => a.at - b.at || a.file.localeCompare(b.file));
}

/** Sums by `by` (project or peer) and currency, in name then currency order. */
export function sumBills(rows: readonly BillRow[], by: 'project' | 'peer'): BillSum[] {
  const sums = new Map<string, BillSum>();
  for (const r of rows) {
    const id = `${r[by]}\u0000${r.currency}`;
    const s = sums.get(id) ?? { key: r[by], currency: r.currency, bills: 0, frames: 0, cpuMs: 0, bytes: 0, amountMinor: 0 };
    s.bills += 1;
    s.frames += r.frames;
    s.cpuMs += r.cpuMs;
    s.bytes += r.bytes;
    s.amountMinor += r.amountMinor;
    sums.set(id, s);
  }
  return [...sums.values()].sort((a, b) => a.key.localeCompare(b.key) || a.currency.localeCompare(b.currency));
}

const cpuHours = (ms: number) => (ms / 3_600_000).toFixed(3);
const gb = (bytes: number) => (bytes / 1e9).toFixed(3);
const isoDate = (at: number) => new Date(at).toISOString();

/** The listing for people: the bills, then the sums per project and per peer, then the files that could not be read. */
export function describeBills(rows: readonly BillRow[], problems: readonly BillProblem[], o: { issued: boolean }): string {
  const who = o.issued ? 'customer' : 'vendor';
  let out = '';
  if (rows.length === 0) out += o.issued ? 'no bills issued to peers to list\n' : 'no bills from vendors to list\n';
  else {
    out += table([who, 'job', 'project', 'frames', 'CPU h', 'GB', 'amount', 'signature', 'date'], rows.map((r) => [
      r.peer, r.job, r.project, String(r.frames), cpuHours(r.cpuMs), gb(r.bytes), `${formatMinor(r.amountMinor, r.currency)} ${r.currency}`, r.signed ? 'signed' : 'NOT signed', dateTime(r.at),
    ]));
    const sums = (title: string, list: BillSum[]) => `\n${title}\n${table([title.split(' ')[1]!, 'bills', 'frames', 'CPU h', 'GB', 'amount'], list.map((s) => [s.key, String(s.bills), String(s.frames), cpuHours(s.cpuMs), gb(s.bytes), `${formatMinor(s.amountMinor, s.currency)} ${s.currency}`]))}`;
    out += sums('per project', sumBills(rows, 'project'));
    out += sums(`per ${who}`, sumBills(rows, 'peer'));
  }
  if (problems.length > 0) out += `\n${problems.length} bill file(s) could not be read (not counted):\n${problems.map((p) => `  ${p.file}: ${p.error}\n`).join('')}`;
  return out;
}

/** One CSV field (RFC 4180): quoted when it holds a comma, a quote or a line break; quotes doubled. */
export function csvField(v: string | number | boolean): string {
  const s = String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** The bills as CSV (RFC 4180: a header row, CRLF line ends); amounts in the major unit, as `amount_minor` too. */
export function billsCsv(rows: readonly BillRow[], o: { issued: boolean }): string {
  const head = [o.issued ? 'customer' : 'vendor', 'job', 'job_name', 'user', 'project', 'frames', 'cpu_hours', 'gb', 'amount', 'amount_minor', 'currency', 'signed', 'date', 'file'];
  const lines = rows.map((r) => [r.peer, r.job, r.jobName, r.user, r.project, r.frames, cpuHours(r.cpuMs), gb(r.bytes), formatMinor(r.amountMinor, r.currency), r.amountMinor, r.currency, r.signed, isoDate(r.at), r.file].map(csvField).join(','));
  return [head.join(','), ...lines].map((l) => `${l}\r\n`).join('');
}

/** The bills, the sums and the problems as one JSON document. */
export function billsJson(rows: readonly BillRow[], problems: readonly BillProblem[], o: { issued: boolean }): unknown {
  const peerKey = o.issued ? 'customer' : 'vendor';
  const sum = (s: BillSum, key: string) => ({ [key]: s.key, currency: s.currency, bills: s.bills, frames: s.frames, cpuMs: s.cpuMs, bytes: s.bytes, amountMinor: s.amountMinor, amount: formatMinor(s.amountMinor, s.currency) });
  return {
    bills: rows.map((r) => ({ [peerKey]: r.peer, job: r.job, jobName: r.jobName, user: r.user, project: r.project, frames: r.frames, cpuMs: r.cpuMs, bytes: r.bytes, currency: r.currency, amountMinor: r.amountMinor, amount: formatMinor(r.amountMinor, r.currency), signed: r.signed, at: isoDate(r.at), file: r.file })),
    perProject: sumBills(rows, 'project').map((s) => sum(s, 'project')),
    [o.issued ? 'perCustomer' : 'perVendor']: sumBills(rows, 'peer').map((s) => sum(s, peerKey)),
    problems,
  };
}
