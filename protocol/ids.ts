import { randomBytes } from 'node:crypto';

/** Job ids sort by submission time: 'j' + base36 millis + 4 random base36 chars. */
export function newJobId(now: number): string {
  return `j${now.toString(36)}${randomBytes(3).readUIntBE(0, 3).toString(36).padStart(4, '0').slice(-4)}`;
}

export function newInstanceId(): string {
  return randomBytes(6).toString('hex');
}

export function taskId(jobId: string, taskIndex: number): string {
  return `${jobId}.${taskIndex}`;
}
