import { FarmError } from './errors.ts';

/*
 * Amounts of money as the bills carry them: whole numbers of the currency's minor unit (cents),
 * never floats. Pure: the scheduler's budgets and the CLI's bills share it.
 */

/** An ISO 4217 code: three capital letters (the rate card refuses anything else). */
export const CURRENCY = /^[A-Z]{3}$/;

/** ISO 4217 currencies whose minor unit is not the cent: none (yen) or a thousandth (dinars); XXX has none. */
const MINOR_DIGITS: Record<string, number> = {
  BIF: 0, CLP: 0, DJF: 0, GNF: 0, ISK: 0, JPY: 0, KMF: 0, KRW: 0, PYG: 0, RWF: 0, UGX: 0, UYI: 0, VND: 0, VUV: 0, XAF: 0, XOF: 0, XPF: 0, XXX: 0,
  BHD: 3, IQD: 3, JOD: 3, KWD: 3, LYD: 3, OMR: 3, TND: 3,
};

/** How many digits the currency's minor unit has (2 for EUR: cents). */
export function minorDigits(currency: string): number {
  return MINOR_DIGITS[currency] ?? 2;
}

/** `1234` EUR → `12.34`; `1234` JPY → `1234`. */
export function formatMinor(amountMinor: number, currency: string): string {
  const d = minorDigits(currency);
  const sign = amountMinor < 0 ? '-' : '';
  const abs = Math.abs(amountMinor);
  if (d === 0) return `${sign}${abs}`;
  const unit = 10 ** d;
  return `${sign}${Math.floor(abs / unit)}.${String(abs % unit).padStart(d, '0')}`;
}

/**
 * A person's amount in the currency's major unit (`500`, `499.90`) as minor units; RB_BAD_ARGUMENT
 * for anything else: a negative amount, more decimals than the currency has, a currency that is
 * not three capital letters.
 */
export function parseAmount(text: string, currency: string): number {
  if (!CURRENCY.test(currency)) throw new FarmError('RB_BAD_ARGUMENT', `currency '${currency}' is not an ISO 4217 code (three capital letters, e.g. EUR)`);
  const d = minorDigits(currency);
  const m = /^(\d{1,13})(?:\.(\d+))?$/.exec(text);
  if (!m) throw new FarmError('RB_BAD_ARGUMENT', `amount '${text}' is not an amount of money (digits, and at most ${d} decimals for ${currency}), e.g. 500 or 499.90`);
  const decimals = m[2] ?? '';
  if (decimals.length > d) throw new FarmError('RB_BAD_ARGUMENT', `amount '${text}' has more decimals than ${currency} has (${d})`);
  return Number(m[1]) * 10 ** d + Number(decimals.padEnd(d, '0') || '0');
}
