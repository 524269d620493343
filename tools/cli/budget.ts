import { CURRENCY, FarmError, formatMinor, parseAmount, PROTOCOL_MAJOR, codecs, subjects, type BudgetsRequest, type BudgetUse } from '../../protocol/index.ts';
import { ExitCode, UsageError } from './cli-error.ts';
import type { CommandContext } from './command-context.ts';
import { ask, isOperator, openFarm } from './farm-client.ts';
import { json, table } from './format.ts';
import { parseToken } from './option-values.ts';

export interface BudgetOptions {
  clear?: boolean;
  json?: boolean;
}

/**
 * `renderbus budget`: projects' outsourcing budgets. No arguments lists every project with a
 * budget or a bill (budget, spent, left); `PROJECT AMOUNT CURRENCY` sets one; `PROJECT --clear`.
 * Changes are the scheduler's, journaled (operators only: the server refuses op.budgets to others).
 */
export async function budgetCommand(c: CommandContext<BudgetOptions>): Promise<number> {
  const [project, amount, currency, ...rest] = c.args;
  if (rest.length > 0) throw new UsageError(`budget: too many arguments (${rest.join(' ')}): give PROJECT AMOUNT CURRENCY, e.g. renderbus budget show-a 500 EUR`);
  let req: BudgetsRequest = { v: PROTOCOL_MAJOR, action: 'list' };
  if (c.opts.clear) {
    if (project === undefined || amount !== undefined) throw new UsageError('budget --clear: give the project alone, e.g. renderbus budget show-a --clear');
    req = { v: PROTOCOL_MAJOR, action: 'clear', project: parseToken('project', project) };
  } else if (project !== undefined) {
    if (amount === undefined || currency === undefined) throw new UsageError(`budget ${project}: give the amount and its currency too, e.g. renderbus budget ${project} 500 EUR`);
    if (!CURRENCY.test(currency)) throw new UsageError(`budget: currency '${currency}' is not an ISO 4217 code (three capital letters, e.g. EUR)`);
    let amountMinor: number;
    try {
      amountMinor = parseAmount(amount, currency);
    } catch (err) {
      throw new UsageError(`budget: ${(err as FarmError).message}`);
    }
    req = { v: PROTOCOL_MAJOR, action: 'set', budget: { project: parseToken('project', project), currency, amountMinor } };
  }
  const fc = await openFarm(c.globals, 'renderbus-budget');
  try {
    // a change goes to op.budgets, which only operators may publish: an artist's is refused by the server itself
    const subject = req.action !== 'list' || isOperator(fc) ? subjects.opBudgets(fc.site) : subjects.schedBudgets(fc.site);
    const reply = await ask(fc, 'scheduler', subject, codecs.budgetsRequest, req, codecs.budgetsReply);
    c.io.stdout.write(c.opts.json ? json(reply) : describeBudgets(reply.projects));
    return ExitCode.Ok;
  } finally {
    await fc.close();
  }
}

const money = (m: { currency: string; amountMinor: number }) => `${formatMinor(m.amountMinor, m.currency)} ${m.currency}`;

/** The projects' budgets: budget, spent (in its currency; other currencies beside, not counted), left. */
export function describeBudgets(projects: readonly BudgetUse[]): string {
  if (projects.length === 0) return 'no budgets set and no bills taken in (set one: renderbus budget show-a 500 EUR)\n';
  const rows = projects.map((p) => {
    const b = p.budget;
    const inBudget = b ? p.spent.find((s) => s.currency === b.currency) : undefined;
    const others = p.spent.filter((s) => s !== inBudget).map(money);
    const spent = b ? money({ currency: b.currency, amountMinor: inBudget?.amountMinor ?? 0 }) : p.spent.map(money).join(', ') || '-';
    const left = b && p.leftMinor !== undefined ? `${money({ currency: b.currency, amountMinor: p.leftMinor })}${p.leftMinor <= 0 ? ' (spent: no new outsourcing)' : ''}` : '-';
    return [p.project, b ? money(b) : '-', spent, left, b && others.length > 0 ? `also ${others.join(', ')} (other currency: not counted)` : ''];
  });
  return table(['project', 'budget', 'spent', 'left', ''], rows);
}
