import { readBillFiles } from '../../sites/bills/index.ts';
import { billRow, billsCsv, billsJson, describeBills, filterBills } from './bills-report.ts';
import { ExitCode, UsageError } from './cli-error.ts';
import type { CommandContext } from './command-context.ts';
import { json } from './format.ts';
import { dataDirOf } from './global-options.ts';
import { parseToken } from './option-values.ts';

export interface BillsOptions {
  project?: string;
  vendor?: string;
  since?: string;
  issued?: boolean;
  csv?: boolean;
  json?: boolean;
}

/**
 * `renderbus bills`: the bills this site's vendors sent (kept by the intake under
 * `<data>/fed/bills/`), or with `--issued` those it sent its peers (`<data>/fed/bills-issued/`).
 * It reads the site's data folder rather than asking over NATS: the bills are files the intake
 * keeps (the scheduler holds only their totals), so they are listed the same whether the farm
 * runs or not, by whoever may read that folder, and no new request or permission is needed.
 */
export async function billsCommand(c: CommandContext<BillsOptions>): Promise<number> {
  if (c.opts.csv && c.opts.json) throw new UsageError('bills: --csv or --json, not both');
  const filter = {
    ...(c.opts.project !== undefined ? { project: c.opts.project } : {}),
    ...(c.opts.vendor !== undefined ? { peer: parseToken('--vendor', c.opts.vendor) } : {}),
    ...(c.opts.since !== undefined ? { since: parseSince(c.opts.since) } : {}),
  };
  const issued = c.opts.issued === true;
  const { bills, problems } = await readBillFiles(dataDirOf(c.globals), { issued });
  const rows = filterBills(bills.map(billRow), filter);
  if (c.opts.csv) c.io.stdout.write(billsCsv(rows, { issued }));
  else if (c.opts.json) c.io.stdout.write(json(billsJson(rows, problems, { issued })));
  else c.io.stdout.write(describeBills(rows, problems, { issued }));
  // a file that could not be read is named, and the listing stands (on stderr too for --csv, whose stdout is data)
  if (c.opts.csv) for (const p of problems) c.io.stderr.write(`renderbus bills: ${p.file}: ${p.error} (not counted)\n`);
  return ExitCode.Ok;
}

/** `--since`: a date (`2026-12-01`, midnight UTC) or a full ISO 8601 time. */
export function parseSince(v: string): number {
  const at = /^\d{4}-\d{2}-\d{2}$/.test(v) ? Date.parse(`${v}T00:00:00Z`) : /^\d{4}-\d{2}-\d{2}T/.test(v) ? Date.parse(v) : NaN;
  if (Number.isNaN(at)) throw new UsageError(`--since '${v}' is not a date: give YYYY-MM-DD (UTC) or an ISO 8601 time, e.g. 2026-12-01 or 2026-12-01T09:00:00Z`);
  return at;
}
