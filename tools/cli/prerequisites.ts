import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

/** Debian package that provides each program the farm drives. */
const PACKAGE_OF: Record<string, string> = { povray: 'povray povray-includes', 'nats-server': 'nats-server', bwrap: 'bubblewrap', parallel: 'parallel' };

/** Full path of a program on PATH (or NATS_SERVER_BIN for nats-server), or null. */
export function findProgram(name: string): string | null {
  if (name === 'nats-server' && process.env.NATS_SERVER_BIN) return executable(process.env.NATS_SERVER_BIN) ? process.env.NATS_SERVER_BIN : null;
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const path = join(dir, name);
    if (executable(path)) return path;
  }
  // Debian installs nats-server in /usr/sbin, which is on root's PATH only
  for (const dir of ['/usr/sbin', '/sbin']) if (executable(join(dir, name))) return join(dir, name);
  return null;
}

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Null when every program is there, else a sentence with the command that installs the missing ones. */
export function missingPrograms(names: string[]): string | null {
  const missing = names.filter((n) => findProgram(n) === null);
  if (missing.length === 0) return null;
  const pkgs = missing.map((n) => PACKAGE_OF[n] ?? n);
  return `${missing.join(' and ')} ${missing.length === 1 ? 'is' : 'are'} not installed: install with 'sudo apt-get install -y --no-install-recommends ${pkgs.join(' ')}' (or run 'npm run demo', which installs what is missing)`;
}
