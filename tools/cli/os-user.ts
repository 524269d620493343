import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';

/** The OS user and group a job is submitted as when the job names none. */
export function currentUser(): { user: string; group: string } {
  let user: string;
  let gid: number;
  try {
    const u = userInfo();
    user = u.username;
    gid = u.gid;
  } catch {
    // containers may run with a uid that has no passwd entry
    user = process.env.USER ?? `uid-${process.getuid?.() ?? 0}`;
    gid = process.getgid?.() ?? 0;
  }
  return { user: user || 'unknown', group: groupName(gid) };
}

/** Name of a group id from /etc/group (Node has no getgrgid); the number when not found. */
export function groupName(gid: number, groupFile = '/etc/group'): string {
  if (gid < 0) return 'unknown';
  try {
    for (const line of readFileSync(groupFile, 'utf8').split('\n')) {
      const [name, , id] = line.split(':');
      if (name && id !== undefined && Number(id) === gid) return name;
    }
  } catch {
    // no /etc/group (e.g. Windows): the number will do
  }
  return String(gid);
}
