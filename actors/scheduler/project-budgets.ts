import { FarmError, formatMinor, type BudgetUse } from '../../protocol/index.ts';

/** What a budget or a spend is: an amount in one currency's minor unit. */
export interface Money {
  currency: string;
  amountMinor: number;
}

/**
 * Project budgets for outsourcing, and the ledger of what the vendors' bills spent (pure data;
 * docs/federation.md, "Bills and budgets"). The scheduler feeds it each bill once, as it applies
 * the bundle that carried it (live, and again on replay: the journal's `remote` records rebuild
 * the spend, its `budget` records the budgets). The ledger is kept here, per project, not with the
 * jobs: a job leaving memory (retention) takes nothing of the spend with it.
 *
 * Currencies are never converted: a budget counts the bills in its own currency; a bill in another
 * is shown beside it, and does not count (there is no exchange rate to trust).
 */
export class ProjectBudgets {
  private readonly budgets = new Map<string, Money>();
  /** project → currency → spend. */
  private readonly spent = new Map<string, Map<string, { amountMinor: number; bills: number }>>();

  /** Sets a project's budget, or clears it (`budget` undefined). */
  set(project: string, budget: Money | undefined): void {
    if (budget) this.budgets.set(project, { currency: budget.currency, amountMinor: budget.amountMinor });
    else this.budgets.delete(project);
  }

  has(project: string): boolean {
    return this.budgets.has(project);
  }

  /** A bill for one of the project's jobs, counted once (the caller applies each bundle once). */
  spend(project: string, bill: Money): void {
    let byCurrency = this.spent.get(project);
    if (!byCurrency) this.spent.set(project, (byCurrency = new Map()));
    const s = byCurrency.get(bill.currency) ?? { amountMinor: 0, bills: 0 };
    byCurrency.set(bill.currency, { amountMinor: s.amountMinor + bill.amountMinor, bills: s.bills + 1 });
  }

  /** What is left of the project's budget, in its currency (≤ 0: spent); undefined: no budget. */
  left(project: string): { currency: string; amountMinor: number } | undefined {
    const b = this.budgets.get(project);
    if (!b) return undefined;
    return { currency: b.currency, amountMinor: b.amountMinor - (this.spent.get(project)?.get(b.currency)?.amountMinor ?? 0) };
  }

  /** Why the project may not send work out now (its budget spent), for a wait reason; undefined when it may. */
  spentWhy(project: string): string | undefined {
    const b = this.budgets.get(project);
    const l = this.left(project);
    if (!b || !l || l.amountMinor > 0) return undefined;
    return `project '${project}' has spent ${formatMinor(b.amountMinor - l.amountMinor, b.currency)} ${b.currency} of its budget of ${formatMinor(b.amountMinor, b.currency)} ${b.currency}`;
  }

  /** RB_BUDGET_EXCEEDED when the project's budget is spent: `what` says what was refused. */
  check(project: string, what: string): void {
    const why = this.spentWhy(project);
    if (why) throw new FarmError('RB_BUDGET_EXCEEDED', `${what}: ${why} (an operator raises it with renderbus budget ${project} <amount> <currency>, or clears it)`);
  }

  /** Every project with a budget or a spend, by name. */
  uses(): BudgetUse[] {
    const names = [...new Set([...this.budgets.keys(), ...this.spent.keys()])].sort();
    return names.map((project) => {
      const b = this.budgets.get(project);
      const spent = [...(this.spent.get(project) ?? new Map<string, { amountMinor: number; bills: number }>())].sort(([a], [c]) => a.localeCompare(c)).map(([currency, s]) => ({ currency, ...s }));
      return { project, ...(b ? { budget: { ...b }, leftMinor: this.left(project)!.amountMinor } : {}), spent };
    });
  }
}
