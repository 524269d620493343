import { resolve } from 'node:path';
import { DEFAULT_DATA_DIR } from '../../sites/farm-file.ts';
import { LogFormat } from '../../sites/log-format.ts';
import { UsageError } from './cli-error.ts';
import { parseServerList } from '../../protocol/cluster.ts';
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
  /** json or pretty (also RENDERBUS_LOG_FORMAT); else pretty on a terminal, JSON otherwise (sites/logger.ts). */
  logFormat?: string;
}

const LOG_FORMATS: readonly string[] = Object.values(LogFormat);

/** The global options, checked: a bad --site is a usage error before anything connects. */
export function checkGlobals(g: GlobalOptions): GlobalOptions {
  const out: GlobalOptions = {};
  if (g.data !== undefined) out.data = g.data;
  if (g.nats !== undefined && g.nats !== '') {
    try {
      parseServerList(g.nats); // a bad URL in the list is named before anything connects
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
    out.nats = g.nats;
  }
  if (g.site !== undefined) out.site = parseToken('--site', g.site);
  if (g.creds !== undefined && g.creds !== '') out.creds = g.creds;
  if (g.logFormat !== undefined && g.logFormat !== '') {
    if (!LOG_FORMATS.includes(g.logFormat)) throw new UsageError(`--log-format: '${g.logFormat}' is not a log format (${LOG_FORMATS.join(' or ')})`);
    out.logFormat = g.logFormat;
  }
  return out;
}

/** The log format asked for, if any (checked by checkGlobals). */
export function logFormatOf(g: GlobalOptions): LogFormat | undefined {
  return g.logFormat as LogFormat | undefined;
}

export function dataDirOf(g: GlobalOptions): string {
  return resolve(g.data ?? DEFAULT_DATA_DIR);
}
