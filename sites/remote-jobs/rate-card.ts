import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FarmError } from '../../protocol/index.ts';
import { NO_RATES, type RateCard } from './bill.ts';

export const ratesPath = (dataDir: string) => join(dataDir, 'fed', 'rates.json');

/**
 * The site's rate card from `<data>/fed/rates.json`, for `peer`: the file's own fields, with
 * `peers.<name>` overriding them for one peer. No file: NO_RATES (zero, currency XXX). A file
 * that does not parse, or a rate that is not a whole non-negative number of minor units, is
 * refused (RB_BAD_ARGUMENT naming the field): a bill is never priced from a guess.
 *
 *   { "currency": "EUR", "perCoreHourMinor": 4, "perGbMinor": 2, "minimumMinor": 100,
 *     "peers": { "studio": { "perCoreHourMinor": 3 } } }
 */
export async function loadRateCard(dataDir: string, peer: string): Promise<RateCard> {
  const path = ratesPath(dataDir);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return NO_RATES;
    throw err;
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (cause) {
    throw new FarmError('RB_BAD_ARGUMENT', `${path} is not JSON: ${(cause as Error).message}`, { cause });
  }
  return rateCardOf(doc, peer, path);
}

/** The card for `peer` from a parsed rates file (pure). */
export function rateCardOf(doc: unknown, peer: string, where = 'rates.json'): RateCard {
  const bad = (msg: string) => new FarmError('RB_BAD_ARGUMENT', `${where}: ${msg}`);
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw bad('must be an object');
  const top = doc as Record<string, unknown>;
  const peers = top.peers ?? {};
  if (typeof peers !== 'object' || peers === null || Array.isArray(peers)) throw bad('"peers" must be an object of peer name → rates');
  const own = (peers as Record<string, unknown>)[peer] ?? {};
  if (typeof own !== 'object' || own === null) throw bad(`peers.${peer} must be an object`);
  const merged = { ...NO_RATES, ...pick(top), ...pick(own as Record<string, unknown>) };
  if (typeof merged.currency !== 'string' || !/^[A-Z]{3}$/.test(merged.currency)) throw bad(`currency ${JSON.stringify(merged.currency)} is not an ISO 4217 code (three capital letters)`);
  for (const k of ['perCoreHourMinor', 'perGbMinor', 'minimumMinor', 'forwardMinor'] as const) {
    const v = merged[k];
    if (k === 'forwardMinor' && v === undefined) continue;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw bad(`${k} must be a whole number ≥ 0 of the currency's minor unit (cents), not ${JSON.stringify(v)}`);
  }
  return merged as RateCard;
}

function pick(o: Record<string, unknown>): Partial<Record<keyof RateCard, unknown>> {
  const out: Partial<Record<keyof RateCard, unknown>> = {};
  for (const k of ['currency', 'perCoreHourMinor', 'perGbMinor', 'minimumMinor', 'forwardMinor'] as const) if (k in o) out[k] = o[k];
  return out;
}
