import { resolve } from 'node:path';
import { DEFAULT_DATA_DIR } from '../../sites/farm-file.ts';
import { parseToken } from './option-values.ts';

/** Options every command takes (`renderbus --help`). */
export interface GlobalOptions {
  /** Farm data directory; ./.renderbus when absent. */
  data?: string;
  /** NATS URL of the farm (also RENDERBUS_NATS); else read from <data>/farm.json. */
  nats?: string;
  /** Site name (subject root); else the credential's. */
  site?: string;
  /** Credentials file (also RENDERBUS_CREDS); else the local operator's from <data>/farm.json. */
  creds?: string;
}

/** The global options, checked: a bad --site is a usage error before anything connects. */
export function checkGlobals(g: GlobalOptions): GlobalOptions {
  const out: GlobalOptions = {};
  if (g.data !== undefined) out.data = g.data;
  if (g.nats !== undefined && g.nats !== '') out.nats = g.nats;
  if (g.site !== undefined) out.site = parseToken('--site', g.site);
  if (g.creds !== undefined && g.creds !== '') out.creds = g.creds;
  return out;
}

export function dataDirOf(g: GlobalOptions): string {
  return resolve(g.data ?? DEFAULT_DATA_DIR);
}
