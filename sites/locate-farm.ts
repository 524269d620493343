import { resolve } from 'node:path';
import { FarmError, parseServerList, type Credentials } from '../protocol/index.ts';
import { readCredentials } from './auth/credentials-file.ts';
import { DEFAULT_DATA_DIR, pidAlive, readFarmFile, type FarmFile } from './farm-file.ts';

export interface FarmLocation {
  /** The servers as one line, for messages (`nats://a:4222,nats://b:4222`). */
  url: string;
  /** Every NATS server to try: one, or each member of a cluster. */
  servers: string[];
  site: string;
  farm: FarmFile | null;
  creds: Credentials;
}

/**
 * Where a command finds the farm and who it is there.
 * - The credential: `--creds FILE`, else RENDERBUS_CREDS, else the operator credential that
 *   `renderbus up` wrote for whoever ran it (named in `<data>/farm.json`).
 * - The servers: `--nats URL[,URL…]`, else RENDERBUS_NATS (the same list), else the running
 *   farm's farm.json (`servers`, else its `url`), else the URL(s) the credential was issued with.
 *   A bad URL in a list is named in the error.
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
  const servers = serversOf(o.nats, credsFile, creds, running ? farm : null);
  if (servers) return { url: servers.join(','), servers, site, farm, creds };
  if (!farm) {
    throw new FarmError('RB_FARM_NOT_FOUND', `no farm at ${resolve(dataDir)} (no farm.json): start one with 'renderbus up', or pass --nats URL / set RENDERBUS_NATS`);
  }
  throw new FarmError('RB_FARM_NOT_FOUND', `the farm in ${resolve(dataDir)} is not running (pid ${farm.pid} is gone): start it with 'renderbus up --data ${dataDir}'`);
}

function serversOf(nats: string | undefined, credsFile: string, creds: Credentials, farm: FarmFile | null): string[] | undefined {
  if (nats !== undefined) return parseServerList(nats, '--nats');
  const env = fromEnv('RENDERBUS_NATS');
  if (env !== undefined) return parseServerList(env, 'RENDERBUS_NATS');
  if (farm) return farm.servers && farm.servers.length > 0 ? farm.servers : [farm.url];
  return creds.url ? parseServerList(creds.url, `the url in ${credsFile}`) : undefined;
}

/** An environment variable, unless unset or empty (`RENDERBUS_NATS= renderbus jobs` means "not set", as in a shell). */
function fromEnv(name: string): string | undefined {
  const v = process.env[name];
  return v === undefined || v === '' ? undefined : v;
}
