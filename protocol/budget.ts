import { FarmError } from './errors.ts';

/**
 * Money as the farm counts it: a whole number of the currency's minor unit (cents), never a
 * float. `currency` is an ISO 4217 code (three capital letters), as in rate cards and bills.
 */
export interface Money {
  currency: string;
  amountMinor: number;
}

/** A budget as a user writes it: an amount with at most two decimals, a space, and the currency. */
const BUDGET = /^(\d{1,12})(?:\.(\d{1,2}))?\s+([A-Z]{3})$/;

/**
 * Parses a job's `budget` (`"12.50 EUR"`, `"40 USD"`) into minor units. Pure. A malformed one is
 * refused by name (RB_BAD_JOB): a price is never compared with a guess.
 */
export function parseBudget(text: string): Money {
  const m = BUDGET.exec(text.trim());
  if (!m) throw new FarmError('RB_BAD_JOB', `budget: '${text.slice(0, 60)}' is not an amount and a currency, e.g. "12.50 EUR" (a point for decimals, at most two; ISO 4217 code in capitals)`);
  const whole = Number(m[1]);
  const cents = Number((m[2] ?? '0').padEnd(2, '0'));
  return { currency: m[3]!, amountMinor: whole * 100 + cents };
}

/** "12.50 EUR": minor units shown with two decimals (the rate cards' and bills' convention). */
export function formatMoney(m: Money): string {
  const sign = m.amountMinor < 0 ? '-' : '';
  const a = Math.abs(m.amountMinor);
  return `${sign}${Math.floor(a / 100)}.${String(a % 100).padStart(2, '0')} ${m.currency}`;
}
