import { Type, type Static } from '@sinclair/typebox';
import { Millis, Reply, Token, V } from './common.ts';

const Currency = Type.String({ pattern: '^[A-Z]{3}$', description: 'ISO 4217 code, e.g. EUR' });
const Minor = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'in the currency\'s minor unit (cents)' });

/** A project's budget for outsourcing: what the vendors' bills for its jobs may come to. */
export const Budget = Type.Object({ project: Token, currency: Currency, amountMinor: Minor });
export type Budget = Static<typeof Budget>;

/**
 * Anyone → scheduler, request on `sched.budgets`: `list`; `set` and `clear` only on `op.budgets`
 * (operators). Answered once a change is journaled.
 */
export const BudgetsRequest = Type.Union([
  Type.Object({ v: V, action: Type.Literal('list') }),
  Type.Object({ v: V, action: Type.Literal('set'), budget: Budget }),
  Type.Object({ v: V, action: Type.Literal('clear'), project: Token }),
]);
export type BudgetsRequest = Static<typeof BudgetsRequest>;

/** A project's spend on outsourcing (the bills' totals, per currency), and its budget if it has one. */
export const BudgetUse = Type.Object({
  project: Type.String({ minLength: 1 }),
  budget: Type.Optional(Type.Object({ currency: Currency, amountMinor: Minor })),
  /** Spent per currency, from every bill taken in for the project's jobs (never converted). */
  spent: Type.Array(Type.Object({ currency: Currency, amountMinor: Minor, bills: Type.Integer({ minimum: 0 }) })),
  /** Budget less what was spent in its currency (≤ 0: spent; new outsourcing stops). */
  leftMinor: Type.Optional(Type.Integer()),
});
export type BudgetUse = Static<typeof BudgetUse>;
export const BudgetsReply = Reply(Type.Object({ projects: Type.Array(BudgetUse) }));
export type BudgetsReply = Static<typeof BudgetsReply>;

/** The journal record of a budget change (`currency` and `amountMinor` absent: cleared). */
export const BudgetRecord = Type.Object({ v: V, kind: Type.Literal('budget'), project: Token, currency: Type.Optional(Currency), amountMinor: Type.Optional(Minor), at: Millis });
export type BudgetRecord = Static<typeof BudgetRecord>;
