import { readFile, rename, writeFile, mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { FarmError } from '../protocol/index.ts';

/** `<data>/farm.json`: how other commands find a running farm. */
export interface FarmFile {
  site: string;
  url: string;
  pid: number;
  dataDir: string;
  outputDir: string;
  startedAt: number;
  /** The web monitor: its address, and the access token its actions need (also in <data>/monitor-token). */
  monitor?: { url: string; token: string };
}

export const DEFAULT_DATA_DIR = '.renderbus';
export const DEFAULT_SITE = 'studio';

export function farmFilePath(dataDir: string): string {
  return join(resolve(dataDir), 'farm.json');
}

export async function writeFarmFile(f: FarmFile): Promise<void> {
  await mkdir(f.dataDir, { recursive: true });
  const path = farmFilePath(f.dataDir);
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(f, null, 2)}\n`, { mode: 0o600 }); // it holds the monitor's token
  await rename(tmp, path); // atomic: readers never see half a file
}

export async function readFarmFile(dataDir: string): Promise<FarmFile | null> {
  let text: string;
  try {
    text = await readFile(farmFilePath(dataDir), 'utf8');
  } catch {
    return null;
  }
  try {
    return JSON.parse(text) as FarmFile;
  } catch (cause) {
    throw new FarmError('RB_FARM_NOT_FOUND', `${farmFilePath(dataDir)} is not valid JSON`, { cause });
  }
}

/** True when a process with that pid is alive (signal 0 only checks). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Where a command finds the farm: `--nats URL`, else RENDERBUS_NATS, else the farm.json of
 * `--data DIR` (default ./.renderbus) when its `renderbus up` is still running.
 */
export async function locateFarm(o: { nats?: string; data?: string; site?: string }): Promise<{ url: string; site: string; farm: FarmFile | null }> {
  const dataDir = o.data ?? DEFAULT_DATA_DIR;
  const farm = await readFarmFile(dataDir);
  const url = o.nats ?? process.env.RENDERBUS_NATS;
  if (url) return { url, site: o.site ?? farm?.site ?? DEFAULT_SITE, farm };
  if (!farm) {
    throw new FarmError('RB_FARM_NOT_FOUND', `no farm at ${resolve(dataDir)} (no farm.json): start one with 'renderbus up', or pass --nats URL / set RENDERBUS_NATS`);
  }
  if (!pidAlive(farm.pid)) {
    throw new FarmError('RB_FARM_NOT_FOUND', `the farm in ${resolve(dataDir)} is not running (pid ${farm.pid} is gone): start it with 'renderbus up --data ${dataDir}'`);
  }
  return { url: farm.url, site: o.site ?? farm.site, farm };
}
