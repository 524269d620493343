import { resolve } from 'node:path';
import { FarmError, type Credentials } from '../protocol/index.ts';
import { readCredentials } from './auth/credentials-file.ts';
import { DEFAULT_DATA_DIR, pidAlive, readFarmFile, type FarmFile } from './farm-file.ts';

export interface FarmLocation {
  url: string;
  site: string;
  farm: FarmFile | null;
  creds: Credentials;
}

/**
 * Where a command finds the farm and who it is there.
 * - The credential: `--creds FILE`, else RENDERBUS_CREDS, else the operator credential that
 *   `renderbus up` wrote for whoever ran it (named in `<data>/farm.json`).
 * - The URL: `--nats URL`, else RENDERBUS_NATS, else the running farm's farm.json, else the URL
 *   the credential was issued with.
 * - The site: `--site`, else the credential's (a credential works only on its own site).
 */
export async function locateFarm(o: { nats?: string; data?: string; site?: string; creds?: string }): Promise<FarmLocation> {
  const dataDir = o.data ?? DEFAULT_DATA_DIR;
  const farm = await readFarmFile(dataDir);
  const running = farm !== null && pidAlive(farm.pid);
  const credsFile = o.creds ?? fromEnv('RENDERBUS_CREDS') ?? (running ? farm.credsFile : undefined);
  if (!credsFile) {
    const how = "pass --creds FILE or set RENDERBUS_CREDS (a farm's operator issues them with 'renderbus credentials add')";
    if (!farm) throw new FarmError('RB_FARM_NOT_FOUND', `no farm at ${resolve(dataDir)} (no farm.json): start one with 'renderbus up', or to reach another farm ${how}`);
    if (!running) throw new FarmError('RB_FARM_NOT_FOUND', `the farm in ${resolve(dataDir)} is not running (pid ${farm.pid} is gone): start it with 'renderbus up --data ${dataDir}', or to reach another farm ${how}`);
    throw new FarmError('RB_NOT_AUTHENTICATED', `no credentials: ${how}`);
  }
  const creds = await readCredentials(credsFile);
  if (o.site !== undefined && o.site !== creds.site) {
    throw new FarmError('RB_BAD_CREDENTIALS', `${credsFile} is a credential of site '${creds.site}', not '${o.site}'`);
  }
  const site = creds.site;
  const url = o.nats ?? fromEnv('RENDERBUS_NATS') ?? (running ? farm.url : undefined) ?? creds.url;
  if (url) return { url, site, farm, creds };
  if (!farm) {
    throw new FarmError('RB_FARM_NOT_FOUND', `no farm at ${resolve(dataDir)} (no farm.json): start one with 'renderbus up', or pass --nats URL / set RENDERBUS_NATS`);
  }
  throw new FarmError('RB_FARM_NOT_FOUND', `the farm in ${resolve(dataDir)} is not running (pid ${farm.pid} is gone): start it with 'renderbus up --data ${dataDir}'`);
}


/** An environment variable, unless unset or empty (`RENDERBUS_NATS= renderbus jobs` means "not set", as in a shell). */
function fromEnv(name: string): string | undefined {
  const v = process.env[name];
  return v === undefined || v === '' ? undefined : v;
}
