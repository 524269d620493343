import { readFile, rename, writeFile, mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { FarmError } from '../protocol/errors.ts';

/** `<data>/farm.json`: how other commands find a running farm. */
export interface FarmFile {
  site: string;
  /** The first NATS server's URL (readers older than clusters know only this one). */
  url: string;
  /** Every NATS server of the farm: one, or each member of its cluster (`up --cluster 3`). */
  servers?: string[];
  pid: number;
  dataDir: string;
  outputDir: string;
  startedAt: number;
  /** The nats-server's pid: `renderbus credentials` has it reload its users. */
  natsPid?: number;
  /** Every member's pid on a cluster (`natsPid` is the first): a reload signals each. */
  natsPids?: number[];
  /** The operator credential of whoever ran `up` (<data>/auth/local/…, 0600): the CLI's default. */
  credsFile?: string;
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
